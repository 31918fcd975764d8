"""What the vision endpoints take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.schemas import Strict
from cloud.vision.base import counts_model

Month = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")


class ReanalyseIn(Strict):
    model_config = ConfigDict(protected_namespaces=())  # merged with Strict's: a field may be called model

    provider: Literal["offline", "openai"] | None = Field(default=None, description="Default: the configured one")
    model: str | None = Field(
        default=None, min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._:/-]+$",
        description="One of the models this cloud prices (the 422 body lists them in `allowed_models`)",
    )
    detail: Literal["low", "high", "auto"] | None = None


class ReanalyseQueued(BaseModel):
    status: Literal["queued"] = "queued"
    capture_id: str
    job_id: int


CategoryCounts = counts_model("CategoryCounts", base=Strict, most=100)


class FeedbackIn(Strict):

    correct: bool
    mail_detected: bool | None = Field(default=None, description="The true answer (default: the opposite when wrong)")
    package_present: bool | None = None
    categories: CategoryCounts | None = None
    note: str | None = Field(default=None, max_length=1000)


class FeedbackPublic(BaseModel):
    capture_id: str
    correct: bool
    provider: str | None
    model: str | None
    predicted_mail: bool | None
    true_mail_detected: bool | None
    true_package_present: bool | None
    true_categories: dict | None
    note: str | None
    updated_at: datetime


class DeviceUsage(BaseModel):
    device_serial: str
    month: str
    model_calls: int = 0
    failed_calls: int = 0
    offline_analyses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    unchanged_skips: int = 0
    budget_skips: int = 0
    prefilter_skips: int = 0  # answered offline before a paid call: too dark, or surely empty
    budget_usd: float
    budget_reached: bool = False


class UsageOut(BaseModel):
    month: str
    devices: list[DeviceUsage]
    total_cost_usd: float
    total_model_calls: int


class ProviderAccuracy(BaseModel):
    provider: str
    feedback: int
    correct: int
    accuracy: float | None
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int


class AccuracyOut(BaseModel):
    providers: list[ProviderAccuracy]
