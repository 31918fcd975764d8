"""The vision provider interface, its result, and its errors.

    ProviderError              a provider could not produce a result
    ├── TransientProviderError timeout, rate limit, 5xx, connection: worth retrying
    └── InvalidAnswer          the model answered, but not with a usable result (after one repair)

Every error carries the model calls it made (``calls``) so the pipeline can
log them, failed calls included.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field, create_model


class ImageQuality(enum.StrEnum):
    OK = "ok"
    TOO_DARK = "too_dark"
    BLURRY = "blurry"
    OBSTRUCTED = "obstructed"


class Damage(enum.StrEnum):
    NONE = "none"
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"


class MailCategory(enum.StrEnum):
    """The kinds of mail we count: the one list behind the model's schema, the API and the texts."""

    LETTER = "letter"
    PACKAGE = "package"
    MAGAZINE = "magazine"
    FLYER = "flyer"
    POSTCARD = "postcard"

    @property
    def plural(self) -> str:
        return f"{self.value}s"


CATEGORIES = tuple(category.value for category in MailCategory)


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(CATEGORIES, 0)


def counts_model(name: str, *, base: type[BaseModel] = BaseModel, most: int | None = None) -> type[BaseModel]:
    """A pydantic model with one non-negative count per category (at most ``most`` each)."""
    fields: dict[str, Any] = {c: (int, Field(default=0, ge=0, le=most)) for c in CATEGORIES}
    return create_model(name, __base__=base, **fields)


@dataclass
class VisionResult:
    mail_detected: bool | None  # None: no verdict (uncalibrated, too dark to see)
    confidence: float
    description: str
    items: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=empty_counts)
    package_present: bool = False
    package_damage: str = Damage.NONE.value
    package_damage_confidence: float = 0.0
    image_quality: str = ImageQuality.OK.value

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallRecord:
    """One model call, successful or not: what the AI operation log stores."""

    provider: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    status: str = "ok"  # ok | error
    error: str | None = None
    detail: str | None = None


@dataclass
class AnalyseRequest:
    """What a provider is asked to look at."""

    image: bytes  # the stored JPEG (the provider prepares its own copy)
    device_id: int
    model: str | None = None  # override (re-analysis with a stronger model)
    detail: str | None = None  # override (re-analysis at detail=high)
    # This box empty (cloud.vision.references.Reference): the offline provider compares with them,
    # a model is shown the closest one next to the new photo.
    references: list[Any] = field(default_factory=list)


@dataclass
class Answer:
    result: VisionResult
    model: str
    calls: list[CallRecord] = field(default_factory=list)


class ProviderError(Exception):
    def __init__(self, message: str, *, calls: list[CallRecord] | None = None) -> None:
        super().__init__(message)
        self.calls = list(calls or [])


class TransientProviderError(ProviderError):
    retry_after: float | None = None  # seconds the server asked us to wait (Retry-After)


class InvalidAnswer(ProviderError):
    pass


class VisionProvider(Protocol):
    name: str

    def analyse(self, request: AnalyseRequest) -> Answer:
        """Look at the image; raise ProviderError (with the calls made) when no result can be given."""
        ...
