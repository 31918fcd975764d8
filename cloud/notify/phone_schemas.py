"""What comes in and goes out of the Web Push and Apprise endpoints."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from cloud.api.schemas import Strict
from cloud.notify.schemas import WebhookUrl


def _b64url_bytes(size: int) -> AfterValidator:
    def check(value: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError as exc:
            raise ValueError("must be base64url") from exc
        if len(raw) != size:
            raise ValueError(f"must be {size} bytes")
        return value

    return AfterValidator(check)


# The browser's P-256 public key (an uncompressed point, 65 bytes) and its 16-byte auth secret, base64url:
# the patterns are exactly the lengths those sizes encode to (the validators check the decoding too).
P256dh = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{87}=?$"), _b64url_bytes(65)]
AuthSecret = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{22}(==)?$"), _b64url_bytes(16)]


class WebPushKeys(Strict):
    p256dh: P256dh
    auth: AuthSecret


class WebPushSubscriptionCreate(Strict):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    endpoint: WebhookUrl = Field(description="The push service's URL for this browser")
    keys: WebPushKeys
    expirationTime: int | None = Field(default=None, ge=0, description="ignored (browsers send null)")


class WebPushSubscriptionPublic(BaseModel):
    id: int
    name: str = Field(description="The browser and system, from its user agent, e.g. 'Chrome on Android'")
    created_at: datetime
    last_sent_at: datetime | None


class WebPushKey(BaseModel):
    public_key: str = Field(description="VAPID public key: pushManager.subscribe's applicationServerKey")


class AppriseTargetCreate(Strict):
    url: str = Field(min_length=6, max_length=2000, pattern=r"^[a-z][a-z0-9+.-]{1,20}://[!-~]+$",
                     description="An Apprise URL, e.g. ntfy://ntfy.sh/my-mailbox or tgram://bot-token/chat-id")


class AppriseTargetPublic(BaseModel):
    id: int
    label: str = Field(description="The URL with its secrets masked: the full URL is never shown again")
    active: bool
    created_at: datetime


class AppriseTestResult(BaseModel):
    sent: bool
    detail: str
