"""Vision: analyses and their work queue, the AI operation log, empty-mailbox references,
delivery state, feedback, budget notices."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.jobs import JobState
from cloud.models.base import Base, UTCDateTime, str_enum

if TYPE_CHECKING:
    from cloud.models.core import Capture


class AnalysisStatus(enum.StrEnum):
    """What the owner is shown for a capture's analysis (its job's queue state is ``cloud.jobs.JobState``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Analysis(Base):
    """The vision result of one capture. ``status`` failed is never read as "no mail"."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_pk: Mapped[int] = mapped_column(ForeignKey("captures.id", ondelete="CASCADE"), unique=True)
    status: Mapped[AnalysisStatus] = mapped_column(str_enum(AnalysisStatus), default=AnalysisStatus.QUEUED)
    mail_detected: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str | None] = mapped_column(Text)
    items: Mapped[list | None] = mapped_column(JSON)
    categories: Mapped[dict | None] = mapped_column(JSON)
    package_present: Mapped[bool | None] = mapped_column(Boolean)
    package_damage: Mapped[str | None] = mapped_column(String(20))
    package_damage_confidence: Mapped[float | None] = mapped_column(Float)
    image_quality: Mapped[str | None] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(String(20))  # model | cache | unchanged | prefilter | budget
    # 64-bit perceptual hash of the analysed image (vision: "unchanged scene" detection).
    phash: Mapped[str | None] = mapped_column(String(16))
    # The mailbox's state change this frame caused: arrived | more | collected (None: no change).
    delivery: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    capture: Mapped[Capture] = relationship(back_populates="analysis")


class AnalysisJob(Base):
    """A durable work item for the vision worker: a ``cloud.jobs`` queue row."""

    __tablename__ = "analysis_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_pk: Mapped[int] = mapped_column(ForeignKey("captures.id", ondelete="CASCADE"), index=True)
    status: Mapped[JobState] = mapped_column(str_enum(JobState), default=JobState.PENDING, index=True)
    kind: Mapped[str] = mapped_column(String(20), default="initial")  # initial | reanalyse
    options: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    locked_by: Mapped[str | None] = mapped_column(String(80))
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AIOperation(Base):
    """One row per model call or per cache / skip decision: what the AI cost, and why not more.

    ``kind``: call (a model was asked), cache (same SHA-256 seen), unchanged (pHash close to the
    previous capture), budget (over the monthly budget: offline answered), offline (offline provider).
    The capture link is SET NULL on delete so retention never rewrites last month's bill.
    """

    __tablename__ = "ai_operations"
    __table_args__ = (Index("ix_ai_operations_device_month", "device_id", "month"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM (UTC)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[str | None] = mapped_column(String(10))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20))  # ok | error
    error: Mapped[str | None] = mapped_column(Text)


class MailboxReference(Base):
    """A photo of this device's mailbox empty: what the offline analyser compares every frame with.

    ``source``: owner / installer (someone said "this is empty"), feedback ("wrong, it was empty"),
    learned (a frame the analyser was very sure was empty, kept for a new lighting, e.g. night).
    The prepared frame is stored in the row itself, so retention deleting the capture (link SET
    NULL) never takes the device's calibration with it.
    """

    __tablename__ = "mailbox_references"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(20))
    picture_png: Mapped[bytes] = mapped_column(LargeBinary)  # the 160×120 working frame
    image_jpeg: Mapped[bytes] = mapped_column(LargeBinary)  # 512 px, for a vision model ("the box empty")
    mean: Mapped[float] = mapped_column(Float)
    sharpness: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MailboxState(Base):
    """A mailbox's delivery state: empty → mail (alert) → still there (silence) → more (alert) → collected.

    Updated only by frames newer than ``capture_pk``'s (a guarded UPDATE), so two workers finishing
    out of order cannot move the state backwards or announce one delivery twice.
    """

    __tablename__ = "mailbox_states"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # empty | mail
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # of the last frame applied
    categories: Mapped[dict | None] = mapped_column(JSON)
    package_present: Mapped[bool] = mapped_column(Boolean, default=False)
    calibration_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    calibrated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # first reference from a person
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryEvent(Base):
    """One transition of a mailbox's state: arrived, more, collected (the dashboard's history)."""

    __tablename__ = "delivery_events"
    __table_args__ = (Index("ix_delivery_events_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    capture_pk: Mapped[int | None] = mapped_column(ForeignKey("captures.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20))  # arrived | more | collected
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    categories: Mapped[dict | None] = mapped_column(JSON)
    package_present: Mapped[bool] = mapped_column(Boolean, default=False)


class AnalysisFeedback(Base):
    """The owner's verdict on one analysis, with the provider that produced it."""

    __tablename__ = "analysis_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_pk: Mapped[int] = mapped_column(ForeignKey("captures.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(String(20))
    predicted_mail: Mapped[bool | None] = mapped_column(Boolean)
    correct: Mapped[bool] = mapped_column(Boolean)
    true_mail_detected: Mapped[bool | None] = mapped_column(Boolean)
    true_package_present: Mapped[bool | None] = mapped_column(Boolean)
    true_categories: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AIBudgetNotice(Base):
    """Inserted once per device and month when the AI budget is reached: the owner is told once."""

    __tablename__ = "ai_budget_notices"
    __table_args__ = (UniqueConstraint("device_id", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))
    spent_usd: Mapped[float] = mapped_column(Float)
    budget_usd: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
