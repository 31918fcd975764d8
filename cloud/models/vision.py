"""Vision bookkeeping: the AI operation log, learned baselines, owner feedback, budget notices."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base, UTCDateTime


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


class VisionBaseline(Base):
    """A device's learned picture of its empty mailbox (the offline provider's reference)."""

    __tablename__ = "vision_baselines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    signature: Mapped[dict] = mapped_column(JSON)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


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
