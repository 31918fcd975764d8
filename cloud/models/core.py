"""Accounts, devices (with their alert state), captures, manual triggers and click usage."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.models.base import Base, UTCDateTime, str_enum

if TYPE_CHECKING:
    from cloud.models.vision import Analysis, MailboxState


class Tier(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"


class Role(enum.StrEnum):
    """What an account may do beyond its own devices; granted by an operator (`mailcam set-role`)."""

    HOMEOWNER = "homeowner"
    INSTALLER = "installer"  # may register devices (and sees them until they are claimed)


class TriggerType(enum.StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class TriggerStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FULFILLED = "fulfilled"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in (TriggerStatus.PENDING, TriggerStatus.DELIVERED)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    role: Mapped[Role] = mapped_column(str_enum(Role), default=Role.HOMEOWNER, server_default=Role.HOMEOWNER.value)

    subscription: Mapped[Subscription | None] = relationship(back_populates="user", uselist=False)


class AuthToken(Base):
    """An opaque bearer token; only its SHA-256 is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Subscription(Base):
    """A user's tier: what ``accounts.effective_tier`` reads (``tier`` while ``active``, until ``ends_at``).

    ``mailcam set-tier`` writes it by hand; with Stripe configured the webhooks write it
    (``cloud.billing.webhooks``) and the ``stripe_*`` columns, ``status`` and the period say why.
    """

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    tier: Mapped[Tier] = mapped_column(str_enum(Tier), default=Tier.FREE)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Stripe's view (None without a Stripe subscription): its status (active, trialing, past_due,
    # canceled, unpaid, incomplete, …), ids, the paid period and whether it ends with that period.
    status: Mapped[str | None] = mapped_column(String(30))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # past_due: premium goes on until here while Stripe retries the card (set once per failure).
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When Stripe created the newest subscription event applied: an older one arriving late is skipped.
    stripe_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="subscription")


class TierChange(Base):
    """The audit of tier changes: who or what (Stripe event, the CLI) changed a subscription, from what to what."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(20))  # stripe | cli
    stripe_event_id: Mapped[str | None] = mapped_column(String(255))
    old_tier: Mapped[Tier | None] = mapped_column(str_enum(Tier))
    new_tier: Mapped[Tier] = mapped_column(str_enum(Tier))
    old_status: Mapped[str | None] = mapped_column(String(30))
    new_status: Mapped[str | None] = mapped_column(String(30))
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StripeEvent(Base):
    """Each Stripe event id once: inserting this row is how one replica claims the event.

    ``outcome`` says what came of it (applied, stale, unknown_customer, ignored); an event for a
    customer we do not know keeps its payload, so an operator can see what Stripe sent.
    """

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())  # Stripe's time of the event
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(30))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict | None] = mapped_column(JSON)


class Gateway(Base):
    """An edge gateway; it may act for the devices of its owner."""

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the gateway last reported about its spool (``POST /api/gateway/status/``), and when.
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    backlog: Mapped[int | None] = mapped_column(Integer)  # items waiting for the cloud
    backlog_oldest_s: Mapped[float | None] = mapped_column(Float)
    held: Mapped[int | None] = mapped_column(Integer)  # items of devices not (yet) this gateway's
    dead_letters: Mapped[int | None] = mapped_column(Integer)
    broker_connected: Mapped[bool | None] = mapped_column(Boolean)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    installer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The owner lets the installer keep read-only access after the claim (cloud.services.access).
    installer_access: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    claim_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    wake_interval_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_battery_voltage: Mapped[float | None] = mapped_column(Float)
    last_rssi: Mapped[int | None] = mapped_column(Integer)
    last_wake_reason: Mapped[str | None] = mapped_column(String(20))
    firmware_version: Mapped[str | None] = mapped_column(String(40))
    # Remote settings (cloud.services.device_settings): what the owner wants ({path: value}) at which
    # version, and what the device last reported (the version in effect, why a version was refused).
    settings_desired: Mapped[dict | None] = mapped_column(JSON)
    settings_version: Mapped[int | None] = mapped_column(Integer)
    settings_applied_version: Mapped[int | None] = mapped_column(Integer)
    settings_error: Mapped[str | None] = mapped_column(String(200))

    # The delivery state and calibration (cloud.vision.delivery), if the device has been judged yet.
    mailbox: Mapped[MailboxState | None] = relationship(lazy="select", uselist=False, viewonly=True)


class DeviceAlertState(Base):
    """Per-device alert state: hysteresis for battery, one alert per offline spell."""

    __tablename__ = "device_alert_state"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    battery_low: Mapped[bool] = mapped_column(Boolean, default=False)
    battery_alerts: Mapped[int] = mapped_column(Integer, default=0)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    offline_alerts: Mapped[int] = mapped_column(Integer, default=0)


class Telemetry(Base):
    """One row per device report: the history behind battery and presence alerts."""

    __tablename__ = "telemetry"
    # A device's rows over a time range (the device page's history); also serves lookups by device alone.
    __table_args__ = (Index("ix_telemetry_device_received", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    battery_voltage: Mapped[float | None] = mapped_column(Float)
    rssi: Mapped[int | None] = mapped_column(Integer)
    wake_reason: Mapped[str | None] = mapped_column(String(20))
    awake_ms: Mapped[int | None] = mapped_column(Integer)
    firmware_version: Mapped[str | None] = mapped_column(String(40))
    boot_count: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    pending_captures: Mapped[int | None] = mapped_column(Integer)


class Capture(Base):
    __tablename__ = "captures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    trigger_type: Mapped[TriggerType] = mapped_column(str_enum(TriggerType))
    trigger_id: Mapped[str | None] = mapped_column(String(64))
    battery_voltage: Mapped[float | None] = mapped_column(Float)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # taken_at is an estimate (the receive time): the device's clock was unset when it took the photo
    taken_at_uncertain: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    wake_reason: Mapped[str | None] = mapped_column(String(20))  # timer | door | power_on | manual
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    analysis: Mapped[Analysis | None] = relationship(
        back_populates="capture", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )


class ImageFile(Base):
    """The lock row of one content-addressed image file (``cloud.services.images.hold_image``).

    An ingest that will reference the file and a delete that would remove it both lock this
    row first, so a file is never unlinked while a capture (committed or being ingested) uses it.
    """

    __tablename__ = "image_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ManualTrigger(Base):
    __tablename__ = "manual_triggers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[TriggerStatus] = mapped_column(str_enum(TriggerStatus), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"))
    # The click this trigger reserved: which local day it counted against (None: premium, no click).
    click_day: Mapped[date | None] = mapped_column(Date)
    click_refunded: Mapped[bool] = mapped_column(Boolean, default=False)


class ClickUsage(Base):
    """Clicks used by a user on one local day; updated only by atomic upserts."""

    __tablename__ = "click_usage"
    __table_args__ = (UniqueConstraint("user_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    used: Mapped[int] = mapped_column(Integer, default=0)


class JobRun(Base):
    """One row per (periodic job, period): inserting it is how one process claims the run."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(60))
    period: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    owner: Mapped[str] = mapped_column(String(80))
    result: Mapped[dict | None] = mapped_column(JSON)
