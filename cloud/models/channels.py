"""Recipients of the channels that reach a phone without an app: browsers (Web Push) and Apprise URLs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base, UTCDateTime


class WebPushSubscription(Base):
    """One browser's push subscription (a phone, a laptop): the push service's endpoint and the
    browser's keys the payload is encrypted to. Several per user; named by the browser's user agent."""

    __tablename__ = "webpush_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(2000))
    endpoint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))  # the browser's public key (base64url)
    auth: Mapped[str] = mapped_column(String(100))  # the browser's auth secret (base64url)
    name: Mapped[str] = mapped_column(String(200))  # "Chrome on Android", from the user agent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AppriseTarget(Base):
    """An Apprise URL ("ntfy://…", "tgram://…") of the user's. URLs carry tokens and passwords:
    stored encrypted with a key derived from the server secret; shown only as ``label``."""

    __tablename__ = "apprise_targets"
    __table_args__ = (UniqueConstraint("user_id", "url_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url_encrypted: Mapped[str] = mapped_column(Text)
    url_sha256: Mapped[str] = mapped_column(String(64))  # keyed hash: the same URL is not added twice
    label: Mapped[str] = mapped_column(String(200))  # scheme and host only, e.g. "ntfy://ntfy.sh/…"
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SendCount(Base):
    """Messages that cost money or reach a stranger (email, SMS, confirmation codes), counted per key
    (a user, a recipient) in a fixed window; taken by an atomic upsert (``cloud.notify.send_limits``)."""

    __tablename__ = "send_counts"
    __table_args__ = (UniqueConstraint("key", "window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120))
    window: Mapped[int] = mapped_column(BigInteger)  # epoch seconds // window length
    count: Mapped[int] = mapped_column(Integer, default=0)
