"""The one interface every notification channel implements, and its errors.

    ChannelError                 a send failed
    ├── TemporaryFailure         retry later with backoff (timeouts, 5xx, 429, connection refused)
    └── PermanentFailure         never retry (bad recipient, 4xx, channel not configured)
        └── RecipientGone        the address no longer exists (an FCM token reported unregistered):
                                 the recipient is removed

A channel does no database work: the delivery worker resolves the recipient's address
before calling ``send`` and records the outcome after it, each in a short transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class ChannelError(Exception):
    def __init__(self, detail: str, *, channel: str = "", recipient: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.channel = channel
        self.recipient = recipient


class TemporaryFailure(ChannelError):
    pass


class PermanentFailure(ChannelError):
    pass


class RecipientGone(PermanentFailure):
    pass


@dataclass(frozen=True)
class OutgoingMessage:
    """One notification for one recipient on one channel."""

    notification_id: int
    kind: str
    event_key: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    # The resolved address: an email address, an E.164 number, an FCM token, a webhook URL.
    address: str
    # Channel-specific extras the worker resolved (a webhook's signing secret).
    extras: dict[str, str] = field(default_factory=dict)
    # Loads the capture's thumbnail JPEG, or None when there is no capture (or it is gone).
    thumbnail: Callable[[], bytes | None] = field(default=lambda: None, repr=False)


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None = None


class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message or raise a ``ChannelError``."""
        ...

    def close(self) -> None: ...


def short(text: object, limit: int = 300) -> str:
    """An error text fit for the delivery log (bounded; never the message body)."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"
