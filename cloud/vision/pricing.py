"""Token prices and image token counts."""

from __future__ import annotations

import math

from cloud.vision.config import ModelPrice, VisionSettings


def price_for(settings: VisionSettings, model: str) -> ModelPrice:
    if model in settings.pricing:
        return settings.pricing[model]
    # Dated snapshots ("gpt-4o-2024-11-20") price like their family, longest prefix first.
    for name in sorted(settings.pricing, key=len, reverse=True):
        if model.startswith(name + "-"):
            return settings.pricing[name]
    return settings.unknown_model_price


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
