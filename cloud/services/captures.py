"""Reading captures for their owners: one capture with its device, a device's pages, its latest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloud.models import Capture, Device

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def with_device(session: Session, capture_id: str) -> tuple[Capture, Device] | None:
    """The capture and the device that took it (no ownership check: see ``cloud.api.deps``)."""
    row = session.execute(
        select(Capture, Device).join(Device, Capture.device_id == Device.id).where(Capture.capture_id == capture_id)
    ).first()
    return (row[0], row[1]) if row else None


def encode_cursor(capture: Capture) -> str:
    micros = (capture.received_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{capture.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    # The pattern (CURSOR_PATTERN, in the OpenAPI document) bounds both numbers: every cursor it
    # admits decodes (≤ 17 digits of µs is before the year 5138), and the id is clamped to INTEGER.
    micros, pk = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), min(int(pk), 2**31 - 1)


def page(session: Session, device: Device, limit: int, cursor: str | None) -> tuple[list[Capture], str | None]:
    """Up to ``limit`` of the device's captures, newest first, after ``cursor``; and the next cursor."""
    query = (
        select(Capture)
        .where(Capture.device_id == device.id)
        .options(selectinload(Capture.analysis))
        .order_by(Capture.received_at.desc(), Capture.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        when, pk = decode_cursor(cursor)
        query = query.where((Capture.received_at < when) | ((Capture.received_at == when) & (Capture.id < pk)))
    rows = list(session.scalars(query))
    items, more = rows[:limit], len(rows) > limit
    return items, encode_cursor(items[-1]) if more else None


def latest(session: Session, device: Device) -> Capture | None:
    query = select(Capture).where(Capture.device_id == device.id).options(selectinload(Capture.analysis))
    return session.scalar(query.order_by(Capture.received_at.desc(), Capture.id.desc()).limit(1))
