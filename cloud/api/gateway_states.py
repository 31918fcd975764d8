"""What a gateway shows of its owner's mailboxes (Home Assistant): the cloud's decisions, not a second opinion.

One snapshot per gateway: per device its delivery state (with what the photo that moved it showed),
the latest photo (a signed, expiring thumbnail path), the newest delivery transition, presence and
the last telemetry. The version is a digest of the snapshot, so a long-poll answers when anything a
user would see changed; the thumbnail's signature is left out of it (it is re-signed every hour and
says nothing new).
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api import schemas
from cloud.context import AppContext
from cloud.models import Analysis, DeliveryEvent, Device, Telemetry
from cloud.notify import links
from cloud.services import captures, devices
from cloud.vision import delivery

# One Li-ion cell at rest (volts → percent), the usual shape of its discharge curve; an estimate.
_LIION = ((3.30, 0), (3.60, 10), (3.70, 30), (3.80, 55), (3.90, 70), (4.00, 82), (4.10, 92), (4.20, 100))
LINK_PERIOD_S = 3600  # thumbnail links are signed per hour, so a snapshot is stable within one


def battery_percent(volts: float | None) -> int | None:
    """Percent left, estimated from the voltage of one Li-ion cell (linear between known points)."""
    if volts is None:
        return None
    xs = [v for v, _ in _LIION]
    if volts <= xs[0]:
        return 0
    if volts >= xs[-1]:
        return 100
    i = bisect_left(xs, volts)
    (v0, p0), (v1, p1) = _LIION[i - 1], _LIION[i]
    return round(p0 + (p1 - p0) * (volts - v0) / (v1 - v0))


def _mail(session: Session, device: Device) -> schemas.MailState:
    row = delivery.current(session, device.id)
    if row is None:
        return schemas.MailState(state=None)
    analysis = session.scalar(select(Analysis).where(Analysis.capture_pk == row.capture_pk)) if row.capture_pk else None
    return schemas.MailState(
        state="mail" if row.state == "mail" else "empty",
        since=row.since,
        items=(analysis.items or []) if analysis else [],
        categories=row.categories or {},
        confidence=analysis.confidence if analysis else None,
        package=row.package_present,
    )


def _link(ctx: AppContext, capture_pk: int, now: datetime) -> str:
    signed_at = datetime.fromtimestamp(int(now.timestamp()) // LINK_PERIOD_S * LINK_PERIOD_S, tz=now.tzinfo)
    return links.thumbnail_path(
        ctx.settings.secret_key, capture_pk, now=signed_at, ttl_s=ctx.settings.notify.alert_link_ttl_s + LINK_PERIOD_S
    )


def device_state(session: Session, ctx: AppContext, device: Device, now: datetime) -> schemas.GatewayDeviceState:
    report = session.scalar(
        select(Telemetry).where(Telemetry.device_id == device.id).order_by(Telemetry.id.desc()).limit(1)
    )
    latest = captures.latest(session, device)
    news = session.scalar(
        select(DeliveryEvent).where(DeliveryEvent.device_id == device.id).order_by(DeliveryEvent.id.desc()).limit(1)
    )
    return schemas.GatewayDeviceState(
        serial=device.serial,
        name=device.name,
        firmware_version=device.firmware_version,
        online=devices.is_online(device, now, ctx.settings),
        last_seen_at=device.last_seen_at,
        battery_voltage=device.last_battery_voltage,
        battery_percent=battery_percent(device.last_battery_voltage),
        rssi=device.last_rssi,
        awake_ms=report.awake_ms if report else None,
        pending_captures=report.pending_captures if report else None,
        mail=_mail(session, device),
        latest_photo=schemas.LatestPhoto(
            capture_id=latest.capture_id, taken_at=latest.taken_at, thumbnail=_link(ctx, latest.id, now)
        )
        if latest
        else None,
        last_delivery=schemas.DeliveryNews(id=news.id, kind=news.kind, at=news.at, package=news.package_present)
        if news
        else None,
    )


def snapshot(session: Session, ctx: AppContext, owner_id: int) -> schemas.GatewayStates:
    """Every device of ``owner_id`` (the gateway acts for its owner), with a version digest."""
    now = ctx.clock.now()
    items = [device_state(session, ctx, d, now) for d in devices.owned_by(session, owner_id)]
    seen = [item.model_dump(mode="json", exclude={"latest_photo": {"thumbnail"}}) for item in items]
    digest = hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:16]
    return schemas.GatewayStates(version=digest, devices=items)
