"""What comes in and goes out of the notification and API-key endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from cloud.api.schemas import Email, Strict
from cloud.notify import kinds

Kind = Literal[
    "mail_arrived", "package_arrived", "package_damaged", "more_mail", "mailbox_empty", "calibration_needed",
    "retake_needed", "analysis_failed",
    "low_battery", "device_offline", "trigger_fulfilled", "trigger_expired", "ai_budget_reached", "daily_digest",
]
ChannelName = Literal["console", "push", "webpush", "apprise", "sms", "email", "webhook"]
# The delivery log's words (cloud.models.DELIVERY_WORDS: a row's queue state and outcome in one word).
Status = Literal["pending", "held", "sending", "sent", "failed", "skipped", "unknown"]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


# What the server checks of a webhook URL, both stated in the OpenAPI document:
# - its shape (``pattern``): http(s), optional user info, a host (a name, an IPv4 address in any
#   spelling, or a bracketed IPv6 literal), an optional port 1..65535, then a path/query of printable
#   ASCII (explicit classes, not \s: regex engines disagree on which characters are spaces);
# - its target (``format: webhook-url``): cloud.netguard must allow every address the host has
#   (public, or allow-listed by the operator). That depends on DNS and settings, which no regex can
#   say, so the pattern admits every host netguard judges and netguard gives its own reason (422).
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_USERINFO = r"[A-Za-z0-9._~%!$&'()*+,;=:-]+@"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
WEBHOOK_URL_PATTERN = rf"^https?://({_USERINFO})?{_HOST}(:{_PORT})?([/?#][!-~]*)?$"
WEBHOOK_URL_FORMAT = "webhook-url"
WebhookUrl = Annotated[
    str,
    StringConstraints(max_length=2000, strip_whitespace=True, pattern=WEBHOOK_URL_PATTERN),
    Field(
        description="http(s) URL whose host this server may call: every address it resolves to must be "
        "public or on the operator's allow-list (MAILCAM_NOTIFY__OUTBOUND_ALLOW); otherwise 422, "
        "\"the webhook URL is not allowed: <reason>\"",
        json_schema_extra={"format": WEBHOOK_URL_FORMAT},
    ),
]
# E.164: "+", a country code not starting with 0, at most 15 digits in all. The shape is what is
# enforced; whether the number exists is proven by the confirmation code (cloud.notify.confirmations).
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"




class QuietHoursIn(Strict):
    start: HHMM = Field(description="local time, HH:MM (24 h)")
    end: HHMM


class PreferencesUpdate(Strict):
    """Fields left out keep their value; ``events`` is merged kind by kind."""

    events: dict[Kind, list[ChannelName]] | None = None
    phone: str | None = Field(
        default=None, pattern=E164_PATTERN, description="E.164, e.g. +14155552671; null removes it"
    )
    email: Email | None = Field(default=None, description="null: the account's email")
    quiet_hours: QuietHoursIn | None = None
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    digest_hour: int | None = Field(default=None, ge=0, le=23)


class PreferencesPublic(BaseModel):
    events: dict[str, list[str]]
    phone: str | None
    phone_confirmed: bool = Field(description="SMS goes out only to a confirmed number")
    email: str
    email_confirmed: bool = Field(description="Email goes out only to a confirmed address")
    quiet_hours: QuietHoursIn | None
    timezone: str
    min_confidence: float
    digest_hour: int
    available_channels: list[str]
    kinds: list[str] = Field(default_factory=lambda: list(kinds.ALL_KINDS))


class NotificationPublic(BaseModel):
    id: int
    kind: str
    channel: str
    recipient: str
    title: str
    body: str
    status: Status
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    device_serial: str | None
    capture_id: str | None


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    next_before_id: int | None


class PushTokenCreate(Strict):
    token: str = Field(min_length=8, max_length=4096)
    platform: Literal["android", "ios", "web"] | None = None


class PushTokenPublic(BaseModel):
    id: int
    platform: str | None
    created_at: datetime


class WebhookCreate(Strict):
    url: WebhookUrl
    description: str | None = Field(default=None, max_length=200)


class WebhookUpdate(Strict):
    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class WebhookPublic(BaseModel):
    id: int
    url: str
    description: str | None
    active: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Shown once: verify X-Mailcam-Signature with it")


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    scope: Literal["read", "trigger"] = "read"


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="Shown once; send it as `Authorization: Bearer mck_…`")


ConfirmChannel = Literal["email", "sms"]


class ConfirmationSent(BaseModel):
    channel: ConfirmChannel
    address: str
    expires_at: datetime


class ConfirmationCode(Strict):
    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code sent to the address")


class RecipientConfirmed(BaseModel):
    channel: ConfirmChannel
    address: str
    confirmed: Literal[True] = True
