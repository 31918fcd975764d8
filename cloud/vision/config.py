"""Vision settings (nested under ``MAILCAM_VISION__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class ModelPrice(BaseModel):
    """USD per one million tokens."""

    input_per_m: float
    output_per_m: float


def _default_pricing() -> dict[str, ModelPrice]:
    # Public list prices (USD / 1M tokens). These keys and `local_models` are the only models
    # the cloud will call: a model without a price is refused, never counted as free.
    return {
        "gpt-4o": ModelPrice(input_per_m=2.50, output_per_m=10.00),
        "gpt-4o-2024-08-06": ModelPrice(input_per_m=2.50, output_per_m=10.00),
        "gpt-4o-mini": ModelPrice(input_per_m=0.15, output_per_m=0.60),
        "gpt-4.1": ModelPrice(input_per_m=2.00, output_per_m=8.00),
        "gpt-4.1-mini": ModelPrice(input_per_m=0.40, output_per_m=1.60),
        "gpt-4-vision-preview": ModelPrice(input_per_m=10.00, output_per_m=30.00),
    }


class VisionSettings(BaseModel):
    provider: Literal["offline", "openai"] = "offline"
    fallback_provider: Literal["offline", "openai", "none"] = "offline"

    # OpenAI or any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio) via base_url.
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o"
    openai_detail: Literal["low", "high", "auto"] = "low"
    openai_timeout_s: float = 30.0
    openai_max_tokens: int = 300
    # Structured output with a JSON schema; turn off for servers that reject response_format.
    openai_json_schema: bool = True

    # Image preparation: long side for detail=low (and for high / auto).
    low_detail_long_side: int = 512
    high_detail_long_side: int = 1536
    jpeg_quality: int = 85

    # Cost control
    pricing: dict[str, ModelPrice] = Field(default_factory=_default_pricing)
    local_models: list[str] = Field(
        default_factory=list,
        description="Models on the operator's own OpenAI-compatible server (Ollama, vLLM, …): allowed, priced at 0",
    )
    monthly_budget_usd: float = Field(default=0.50, ge=0, description="Per device and calendar month (UTC)")
    # Per owner as well, so that more devices do not mean more budget.
    user_monthly_budget_usd: float = Field(default=2.00, ge=0, description="Per user and calendar month (UTC)")
    dedupe_exact: bool = True
    # Perceptual hash (64-bit pHash) distance at or below which the scene counts as unchanged.
    unchanged_phash_distance: int = Field(default=4, ge=-1, le=64, description="-1 disables")
    # An unchanged result is reused only if the previous analysis is at most this old.
    unchanged_max_age_s: int = 7 * 24 * 3600
    max_reanalyses_per_capture: int = 3
    # Offline pre-filter before a paid call: a frame the offline analyser finds too dark is not sent
    # (no model sees in the dark), nor, on a calibrated device, one it is at least this sure shows the
    # box unchanged from empty (>1 disables). An uncalibrated device is never pre-filtered as empty.
    skip_dark_frames: bool = True
    offline_gate_confidence: float = Field(default=0.9, ge=0, le=1.01)

    # Retries inside one attempt (tenacity): timeouts, 429, 5xx, connection errors.
    retry_attempts: int = Field(default=3, ge=1)
    retry_wait_initial_s: float = 1.0
    retry_wait_max_s: float = 20.0
    # Job level: a job whose attempt failed transiently is retried later; then it fails for good.
    max_attempts: int = 5
    job_backoff_initial_s: float = 30.0
    job_backoff_max_s: float = 3600.0
    lease_timeout_s: float = 300.0
    # A new job wakes the worker at once (cloud.wakeups); this poll is only the safety net (retries, leases).
    worker_poll_interval_s: float = 10.0
    # Worker threads per cloud process; they share the queue through the job lease, never doubling up.
    workers: int = Field(default=2, ge=1, le=16)

    # Offline analyser (cloud/vision/change.py compares each frame with the box's empty references)
    offline_dark_mean: float = 35.0  # mean grey level (0..255) below which a frame is too dark
    offline_change_threshold: float = Field(default=0.01, gt=0, lt=1,
                                            description="Share of the frame new objects must cover to be mail")
    # A calibrated, surely-empty frame (at least this confident) may refine the references.
    offline_learn_min_confidence: float = 0.9
    # The workers keep the boxes' empty references decoded, with what the comparison derives from them
    # (cloud.vision.frames, ~1.1 MB each): decoding them again costs ~2 ms a job. Size it for the boxes a
    # process serves (a box has 1-8 references, usually 1-2); 256 MB keeps 232: 100 boxes with 2 each.
    decoded_references_mb: float = Field(default=256.0, ge=0,
                                         description="Memory for the decoded references the workers keep")

    @model_validator(mode="after")
    def _configured_model_has_a_price(self) -> VisionSettings:
        uses_openai = "openai" in (self.provider, self.fallback_provider)
        if uses_openai and self.openai_model not in self.pricing and self.openai_model not in self.local_models:
            raise ValueError(
                f"openai_model {self.openai_model!r} has no price: add it to pricing, or to local_models "
                "if it runs on your own server"
            )
        return self
