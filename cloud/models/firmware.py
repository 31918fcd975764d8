"""Firmware releases and their rollouts (cloud.services.firmware)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models.base import Base, UTCDateTime, str_enum


class FirmwareRelease(Base):
    """A signed release: the bundle the devices download (mcam.protocol), checked on upload."""

    __tablename__ = "firmware_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True)
    signature: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    files: Mapped[int] = mapped_column(Integer)
    bundle: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutStatus(enum.StrEnum):
    ACTIVE = "active"  # first wave offered; the rest once the first wave is through
    HALTED = "halted"  # the first wave failed too often: nothing more is offered
    CANCELLED = "cancelled"


class UpdateState(enum.StrEnum):
    WAITING = "waiting"  # in a later wave, not offered yet
    PENDING = "pending"  # offered, the device has not started
    DOWNLOADING = "downloading"
    STAGED = "staged"  # checked and in its slot: runs from the next boot
    INSTALLED = "installed"  # the device runs it
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"  # bad signature or hash on the device

    @property
    def failed(self) -> bool:
        return self in (UpdateState.ROLLED_BACK, UpdateState.REFUSED)

    @property
    def done(self) -> bool:
        return self.failed or self is UpdateState.INSTALLED


class Rollout(Base):
    __tablename__ = "firmware_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("firmware_releases.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[RolloutStatus] = mapped_column(str_enum(RolloutStatus))
    first_wave: Mapped[int] = mapped_column(Integer)  # how many targets the first wave has
    max_failure_rate: Mapped[float] = mapped_column(Float)
    halted_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutDevice(Base):
    """One device of a rollout, in wave 1 or 2, and where its update stands."""

    __tablename__ = "firmware_rollout_devices"
    __table_args__ = (UniqueConstraint("rollout_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("firmware_rollouts.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[UpdateState] = mapped_column(str_enum(UpdateState))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
