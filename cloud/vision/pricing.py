"""Token prices and image token counts; the allow-list of models the cloud may call.

A model is allowed only with a known price: a key of ``pricing`` (exactly: a dated snapshot
is priced only when listed, since a family prefix could match a dearer variant), or one of
``local_models``, which the operator runs and prices at 0. Anything else is refused before a
call, never counted as $0 (``o1-pro`` once was).
"""

from __future__ import annotations

import math

from cloud.vision.config import ModelPrice, VisionSettings

FREE = ModelPrice(input_per_m=0.0, output_per_m=0.0)


class UnpricedModel(ValueError):
    """A model with no price in the settings: the cloud does not call it."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} has no price in this cloud's settings, so it is not used")
        self.model = model


def allowed_models(settings: VisionSettings) -> list[str]:
    return sorted({*settings.pricing, *settings.local_models})


def price_for(settings: VisionSettings, model: str) -> ModelPrice:
    """The model's price; UnpricedModel when it has none."""
    if model in settings.pricing:
        return settings.pricing[model]
    if model in settings.local_models:
        return FREE
    raise UnpricedModel(model)


def cost_usd(settings: VisionSettings, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price = price_for(settings, model)
    return (prompt_tokens * price.input_per_m + completion_tokens * price.output_per_m) / 1_000_000


# OpenAI's image accounting (gpt-4o family): a flat base at detail=low, plus tiles at high.
# gpt-4o-mini bills images at ~33x the tokens (2833 base, 5667 per tile), so it is not cheaper per image.
_IMAGE_TOKENS = {"gpt-4o-mini": (2833, 5667)}
_DEFAULT_IMAGE_TOKENS = (85, 170)


def image_tokens(model: str, detail: str, width: int, height: int) -> int:
    """Estimated input tokens for one image (used by the benchmark, not for billing)."""
    base, per_tile = next(
        (v for k, v in _IMAGE_TOKENS.items() if model == k or model.startswith(k + "-")), _DEFAULT_IMAGE_TOKENS
    )
    if detail == "low":
        return base
    # detail=high: fit in 2048x2048, then shortest side to 768, count 512 px tiles.
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return base + per_tile * math.ceil(w / 512) * math.ceil(h / 512)
