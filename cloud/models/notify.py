"""Notification preferences, channels' recipients and the delivery outbox."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.jobs import JobState
from cloud.models.base import Base, UTCDateTime, str_enum


class NotificationPreference(Base):
    """One row per user; absent means the defaults (see ``cloud.notify.preferences``)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # {notification kind: [channel, ...]}; kinds not listed use the defaults.
    events: Mapped[dict] = mapped_column(JSON, default=dict)
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    email: Mapped[str | None] = mapped_column(String(254))  # None: the account's email
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "HH:MM", the user's timezone
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    min_confidence: Mapped[float | None] = mapped_column(Float)
    digest_hour: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecipientConfirmation(Base):
    """Proof that an email address or phone number belongs to the user: a code sent there, typed back.

    Only the code's HMAC is stored. Until ``confirmed_at`` is set, the address gets nothing.
    """

    __tablename__ = "recipient_confirmations"
    __table_args__ = (UniqueConstraint("user_id", "channel", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    address: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PushToken(Base):
    """An FCM registration token of one of the owner's app installs (needed as is to send)."""

    __tablename__ = "push_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(4096))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    platform: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Webhook(Base):
    """A URL that receives signed JSON events.

    The signing secret is not stored: it is HMAC(server secret, ``secret_salt``), so the
    database alone cannot forge deliveries; it is shown once, on creation.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    secret_salt: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Outcome(enum.StrEnum):
    """What happened to a notification, for its owner. Where the row is in the queue is its
    ``status`` (``cloud.jobs.JobState``, as for every durable job); the delivery log shows the
    two together as one word (``DELIVERY_WORDS``)."""

    HELD = "held"  # pending: waits for the owner's quiet hours to end, then is sent
    SENT = "sent"  # done
    SKIPPED = "skipped"  # done: nothing left to send to (recipient removed, token or subscription expired)
    FAILED = "failed"  # dead: refused for good, or every attempt used; last_error says why
    UNKNOWN = "unknown"  # dead: its worker stopped mid-send; it may have gone out, so it is never repeated


# The delivery log's word for each (queue state, outcome) an outbox row can be in; the database
# refuses any other pair (ck_notifications_outcome). The API's ``status`` field and filter say these.
# Skipped is done, not dead: nothing went wrong, the owner removed where it was going.
DELIVERY_WORDS: dict[tuple[JobState, Outcome | None], str] = {
    (JobState.PENDING, None): "pending",
    (JobState.PENDING, Outcome.HELD): "held",
    (JobState.RUNNING, None): "sending",
    (JobState.DONE, Outcome.SENT): "sent",
    (JobState.DONE, Outcome.SKIPPED): "skipped",
    (JobState.DEAD, Outcome.FAILED): "failed",
    (JobState.DEAD, Outcome.UNKNOWN): "unknown",
}
_STATE_OF_WORD = {word: pair for pair, word in DELIVERY_WORDS.items()}
# COALESCE: a comparison with NULL is unknown, and a CHECK lets an unknown pass.
_ALLOWED_PAIRS = " OR ".join(
    f"(status = '{state}' AND COALESCE(outcome, '') = '{outcome or ''}')" for state, outcome in DELIVERY_WORDS
)


class Notification(Base):
    """The durable outbox and the owner's delivery log: one row per (event, channel, recipient)."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_key", "channel", "recipient"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
        CheckConstraint(_ALLOWED_PAIRS, name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(30))
    event_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(300))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[JobState] = mapped_column(str_enum(JobState))  # the queue's (cloud.jobs)
    outcome: Mapped[Outcome | None] = mapped_column(str_enum(Outcome))  # the owner's
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_by: Mapped[str | None] = mapped_column(String(80))
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    provider_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def delivery(self) -> str:
        """The delivery log's word for this row: pending, held, sending, sent, skipped, failed, unknown."""
        return DELIVERY_WORDS[(self.status, self.outcome)]

    @classmethod
    def delivered_as(cls, word: str) -> ColumnElement[bool]:
        """The rows the delivery log calls ``word`` (one of ``DELIVERY_WORDS``' words)."""
        state, outcome = _STATE_OF_WORD[word]
        return and_(cls.status == state, cls.outcome.is_(None) if outcome is None else cls.outcome == outcome)
