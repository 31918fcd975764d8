"""Capture ingest: validate, store, record, queue analysis — idempotent on ``capture_id``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from mcam.protocol import SANE_EPOCH as _SANE_EPOCH_S
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud import events, wakeups
from cloud.context import AppContext
from cloud.errors import Conflict, ImageRejected, ImageTooLarge
from cloud.events import DomainEvent
from cloud.jobs import JobState
from cloud.models import Analysis, AnalysisJob, AnalysisStatus, Capture, Device, Gateway, TriggerType
from cloud.services import device_health, devices, gateways, triggers
from cloud.services.images import CheckedJpeg, check_jpeg, hold_image

SANE_EPOCH = datetime.fromtimestamp(_SANE_EPOCH_S, UTC)  # the wire protocol's: earlier = unset clock


@dataclass(frozen=True)
class CaptureIn:
    image_b64: str
    trigger_type: TriggerType
    battery_voltage: float | None
    taken_at: datetime
    capture_id: str | None = None
    trigger_id: str | None = None
    time_uncertain: bool = False
    wake_reason: str | None = None  # timer | door | power_on | manual, when the device says


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


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    jpeg: CheckedJpeg


@dataclass(frozen=True)
class KnownCapture:
    capture_id: str
    device_id: int


def check_image(ctx: AppContext, image_b64: str) -> CheckedImage:
    """Decode and validate an uploaded image (no database, no files): CPU work, safe outside a transaction."""
    settings = ctx.settings
    data = decode_image(image_b64, settings.max_image_bytes)
    checked = check_jpeg(data, min_side=settings.min_image_side, max_side=settings.max_image_side)
    return CheckedImage(data, checked)


def ingest_capture(
    session: Session, ctx: AppContext, device: Device, capture: CaptureIn, *, via_gateway: Gateway | None = None
) -> IngestResult:
    """Validate, store and record a capture, idempotent on ``capture_id``; commits ``session``.

    ``session``'s open transaction must not have written (the route authenticates in a read-only
    one); the gateway that forwarded the capture, if any, is marked seen with the capture's rows.

    The caller's open transaction (the token lookup) is committed first, so no database lock is
    held while the image is decoded, hashed and stored durably. The rows are then written in one
    short transaction shared with the other captures arriving at that moment (``ctx.group_commit``:
    one commit for all of them); this returns once it has committed.
    """
    known = lookup(session, capture.capture_id) if capture.capture_id else None
    session.commit()
    image = check_image(ctx, capture.image_b64)  # bad images are rejected before anything else
    if known is not None:
        return _known_result(known, device)
    capture_id = capture.capture_id or derive_capture_id(device.serial, _aware(capture.taken_at), image.jpeg.sha256)
    ctx.images.put(image.jpeg.sha256, image.data, None)  # the thumbnail is made on its first read
    if image.jpeg.decoded is not None:  # for its analysis, which starts as soon as the rows commit
        ctx.decoded.put(image.jpeg.sha256, image.jpeg.decoded)
    try:
        result = ctx.group_commit.run(
            lambda batch: _store(batch, ctx, device, capture, capture_id, image, via_gateway)
        )
    except IntegrityError:
        # Another request stored the same capture_id since the lookup above.
        known = lookup(session, capture_id)
        if known is None:
            raise
        result = _known_result(known, device)
        session.commit()
    return result


def _store(session: Session, ctx: AppContext, device: Device, capture: CaptureIn, capture_id: str,
           image: CheckedImage, via_gateway: Gateway | None) -> IngestResult:
    """The capture's rows, inside the shared transaction. The device as the request read it is brought
    into this session without reading it again (the other captures of the batch find it there): what
    ingest changes on it is decided in SQL (``devices.mark_seen``), not from the loaded copy, and a
    device gone since fails the capture's insert on its foreign key."""
    device = session.merge(device, load=False)
    # A delete of another capture of the same image may have removed the file since the put
    # above; holding the file's lock, put it back before we commit.
    hold_image(session, image.jpeg.sha256, ctx.clock.now())
    if not ctx.images.exists(image.jpeg.sha256):
        ctx.images.put(image.jpeg.sha256, image.data, None)
    if via_gateway is not None:
        gateways.mark_seen(session, via_gateway, ctx.clock.now())
    return _record(session, ctx, device, capture, capture_id, image)


def lookup(session: Session, capture_id: str) -> KnownCapture | None:
    """The stored capture with this id, if any."""
    row = session.connection().execute(_LOOKUP, {"capture_id": capture_id}).first()
    return KnownCapture(capture_id, row.device_id) if row is not None else None


def _known_result(known: KnownCapture, device: Device) -> IngestResult:
    if known.device_id != device.id:
        raise Conflict("capture_id already used by another device", capture_id=known.capture_id)
    return IngestResult(capture_id=known.capture_id, analysis_queued=True, created=False)


def _aware(taken_at: datetime) -> datetime:
    return taken_at if taken_at.tzinfo else taken_at.replace(tzinfo=UTC)


def _taken_at(capture: CaptureIn, now: datetime) -> dict[str, object]:
    """A stamp from before the sane epoch came from an unset device clock (the ESP32 RTC starts at
    2000-01-01): store our receive time instead, and mark it an estimate, as for a ``time_uncertain`` one."""
    taken_at = _aware(capture.taken_at)
    sane = taken_at >= SANE_EPOCH
    return {"taken_at": taken_at if sane else now, "taken_at_uncertain": capture.time_uncertain or not sane}


def _record(
    session: Session,
    ctx: AppContext,
    device: Device,
    capture: CaptureIn,
    capture_id: str,
    image: CheckedImage,
) -> IngestResult:
    now = ctx.clock.now()
    values = {
        "capture_id": capture_id,
        "device_id": device.id,
        "trigger_type": capture.trigger_type,
        "trigger_id": capture.trigger_id,
        "wake_reason": capture.wake_reason,
        "battery_voltage": capture.battery_voltage,
        **_taken_at(capture, now),
        "received_at": now,
        "image_sha256": image.jpeg.sha256,
        "image_bytes": len(image.data),
        "width": image.jpeg.width,
        "height": image.jpeg.height,
    }
    capture_pk = _insert_capture(session, values)

    devices.mark_seen(session, device, now, capture.battery_voltage)
    # Plain Core inserts: nothing here needs the ORM objects, and the unit of work costs more
    # than the statements themselves (this runs while SQLite's write lock is held). The values go
    # as parameters, not ``.values(...)``: the statement is then compiled once and cached, instead
    # of being rebuilt and re-keyed for every capture (cProfile: the largest share of its Python time).
    conn = session.connection()
    conn.execute(
        _INSERT_ANALYSIS,
        {"capture_pk": capture_pk, "status": AnalysisStatus.QUEUED, "created_at": now, "updated_at": now},
    )
    conn.execute(
        _INSERT_JOB,
        {
            "capture_pk": capture_pk,
            "status": JobState.PENDING,
            "kind": "initial",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    wakeups.mark(session, wakeups.VISION)  # the vision workers start on it as soon as this commits
    if capture.trigger_type == TriggerType.MANUAL:
        triggers.fulfil_with_capture(session, ctx, device, capture.trigger_id, capture_pk)
    device_health.on_device_activity(session, ctx, device, device.last_battery_voltage)
    received: events.CaptureReceived = {"capture_id": capture_id, "device_serial": device.serial,
                                        "trigger_type": capture.trigger_type}
    events.emit(ctx.events, session, DomainEvent.CAPTURE_RECEIVED, received, user_id=device.owner_id,
                device_id=device.id, capture_pk=capture_pk, key=f"capture:{capture_id}")
    session.flush()
    return IngestResult(capture_id=capture_id, analysis_queued=True, created=True)


# Built once, as the inserts below: every capture with an id looks it up first.
_LOOKUP = select(Capture.__table__.c.device_id).where(Capture.__table__.c.capture_id == bindparam("capture_id"))
_INSERT_CAPTURE = insert(Capture.__table__).returning(Capture.__table__.c.id)
_INSERT_ANALYSIS = insert(Analysis.__table__)
_INSERT_JOB = insert(AnalysisJob.__table__)


def _insert_capture(session: Session, values: dict) -> int:
    return session.connection().execute(_INSERT_CAPTURE, values).scalar_one()
