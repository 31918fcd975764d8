"""Vision settings (nested under ``MAILCAM_VISION__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class VisionSettings(BaseModel):
    provider: Literal["offline", "openai"] = "offline"
    fallback_provider: Literal["offline", "openai", "none"] = "offline"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o"
    openai_detail: Literal["low", "high", "auto"] = "low"
    openai_timeout_s: float = 30.0
    worker_poll_interval_s: float = 0.5
    max_attempts: int = 5
