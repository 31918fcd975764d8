"""Vision: is there mail in the box? Said correctly, and cheaply.

    config.py           VisionSettings (MAILCAM_VISION__*): providers, pricing, budget, thresholds, retries
    base.py             the provider interface, VisionResult, CallRecord, the error tree
    offline.py          default provider: judges each frame against the box's empty references
    change.py           what changed since a reference: camera shift, light, noise removed; regions, kinds
    references.py       a device's empty-mailbox references (set by people, refined from sure empties)
    delivery.py         the mailbox's delivery state: empty → arrived → more → collected, one alert each
    openai_provider.py  OpenAI or any OpenAI-compatible server (base_url), JSON-schema output
    prep.py             downscale + strip EXIF before a model sees an image; perceptual hash
    pricing.py          USD from the usage block and the settings' price table; image token rules
    pipeline.py         one job: cache → unchanged → offline pre-filter → budget → model → fallback
    worker.py           claiming (SKIP LOCKED / guarded UPDATE, leases), process_pending, VisionWorker
    owner.py, schemas.py  re-analysis, feedback, usage and accuracy reports (routes: api/routes/vision.py)
"""
