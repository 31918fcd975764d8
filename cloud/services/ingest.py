"""Capture ingest: validate, store, record, queue analysis — idempotent on ``capture_id``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.errors import Conflict, ImageRejected, ImageTooLarge
from cloud.events import Event, EventKind
from cloud.models import Analysis, AnalysisJob, Capture, Device, JobStatus, TriggerType
from cloud.services import devices, triggers
from cloud.services.images import check_jpeg


@dataclass(frozen=True)
class CaptureIn:
    image_b64: str
    trigger_type: TriggerType
    battery_voltage: float | None
    taken_at: datetime
    capture_id: str | None = None
    trigger_id: str | None = None


@dataclass(frozen=True)
class IngestResult:
    capture_id: str
    analysis_queued: bool
    created: bool


def decode_image(image_b64: str, max_bytes: int) -> bytes:
    # Reject by the encoded length first: never allocate 50 MB to say "too big".
    if len(image_b64) > (max_bytes * 4) // 3 + 8:
        raise ImageTooLarge(f"image exceeds {max_bytes} bytes", max_bytes=max_bytes)
    payload = image_b64.split(",", 1)[1] if image_b64.startswith("data:") else image_b64
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected("image is not valid base64") from exc
    if not data:
        raise ImageRejected("image is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image exceeds {max_bytes} bytes", max_bytes=max_bytes)
    return data


def derive_capture_id(serial: str, taken_at: datetime, image_sha: str) -> str:
    """A stable id for clients of the seed contract that send none: a retry maps to the same id."""
    digest = hashlib.sha256(f"{serial}|{taken_at.isoformat()}|{image_sha}".encode()).hexdigest()
    return f"{serial[:24]}-{digest[:24]}"


def ingest_capture(session: Session, ctx: AppContext, device: Device, capture: CaptureIn) -> IngestResult:
    settings = ctx.settings
    data = decode_image(capture.image_b64, settings.max_image_bytes)
    checked = check_jpeg(
        data,
        min_side=settings.min_image_side,
        max_side=settings.max_image_side,
        thumbnail_side=settings.thumbnail_side,
    )
    taken_at = capture.taken_at if capture.taken_at.tzinfo else capture.taken_at.replace(tzinfo=UTC)
    capture_id = capture.capture_id or derive_capture_id(device.serial, taken_at, checked.sha256)

    existing = _existing(session, device, capture_id)
    if existing is not None:
        return existing

    # Files first: content-addressed, so a crash before the commit leaves only a reusable file.
    ctx.images.put(checked.sha256, data, checked.thumbnail)
    now = ctx.clock.now()
    row = Capture(
        capture_id=capture_id,
        device_id=device.id,
        trigger_type=capture.trigger_type,
        trigger_id=capture.trigger_id,
        battery_voltage=capture.battery_voltage,
        taken_at=taken_at,
        received_at=now,
        image_sha256=checked.sha256,
        image_bytes=len(data),
        width=checked.width,
        height=checked.height,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another request stored the same capture_id a moment ago.
        existing = _existing(session, device, capture_id)
        if existing is None:
            raise
        return existing

    devices.mark_seen(device, now, capture.battery_voltage)
    session.add(Analysis(capture_pk=row.id, status=JobStatus.QUEUED, created_at=now, updated_at=now))
    session.add(
        AnalysisJob(
            capture_pk=row.id,
            status=JobStatus.QUEUED,
            kind="initial",
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    if capture.trigger_type == TriggerType.MANUAL:
        triggers.fulfil_with_capture(session, ctx, device, capture.trigger_id, row.id)
    ctx.events.emit(
        session,
        Event(
            EventKind.CAPTURE_RECEIVED,
            user_id=device.owner_id,
            device_id=device.id,
            capture_pk=row.id,
            key=f"capture:{capture_id}",
            data={"capture_id": capture_id, "device_serial": device.serial, "trigger_type": capture.trigger_type},
        ),
    )
    session.flush()
    return IngestResult(capture_id=capture_id, analysis_queued=True, created=True)


def _existing(session: Session, device: Device, capture_id: str) -> IngestResult | None:
    found = session.scalar(select(Capture).where(Capture.capture_id == capture_id))
    if found is None:
        return None
    if found.device_id != device.id:
        raise Conflict("capture_id already used by another device", capture_id=capture_id)
    return IngestResult(capture_id=capture_id, analysis_queued=True, created=False)
