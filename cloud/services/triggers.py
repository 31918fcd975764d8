"""Manual triggers ("take a photo now") and their click accounting.

Every state change that ends a trigger is a guarded UPDATE (``WHERE status IN
(pending, delivered)``): whoever changes the row first wins, so a click is
refunded at most once even when several cloud processes expire triggers at
the same moment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud import events
from cloud.context import AppContext
from cloud.errors import ClickLimitExceeded, NotFound
from cloud.events import DomainEvent
from cloud.models import Device, ManualTrigger, Tier, TriggerStatus, User
from cloud.services import access, accounts, clicks, devices
from cloud.services.access import Access

OPEN = (TriggerStatus.PENDING, TriggerStatus.DELIVERED)


@dataclass(frozen=True)
class TriggerOutcome:
    trigger: ManualTrigger
    device_online: bool
    window: clicks.ClickWindow


def request_trigger(session: Session, ctx: AppContext, user: User, device: Device) -> TriggerOutcome:
    """Reserve a click (free tier) and queue a trigger for the device's next wake."""
    now = ctx.clock.now()
    tier = accounts.effective_tier(user, now)
    day, reset_at = clicks.local_day(now, user.timezone)
    click_day = None
    if tier == Tier.FREE:
        limit = ctx.settings.free_clicks_per_day
        if clicks.try_reserve(session, user.id, day, limit) is None:
            raise ClickLimitExceeded(
                "no manual triggers left today",
                clicks_used=limit,
                clicks_limit=limit,
                reset_at=reset_at.isoformat(),
            )
        click_day = day
    trigger = ManualTrigger(
        trigger_id="trg_" + secrets.token_hex(8),
        device_id=device.id,
        requested_by=user.id,
        status=TriggerStatus.PENDING,
        requested_at=now,
        expires_at=now + timedelta(seconds=ctx.settings.trigger_ttl_s),
        click_day=click_day,
    )
    session.add(trigger)
    session.flush()
    return TriggerOutcome(
        trigger,
        devices.is_online(device, now, ctx.settings),
        clicks.window(session, user, tier, now, ctx.settings.free_clicks_per_day),
    )


def _end(
    session: Session, trigger_pk: int, status: TriggerStatus, now: datetime, *,
    only: tuple[TriggerStatus, ...] = OPEN, **values,
) -> bool:
    result = session.execute(
        update(ManualTrigger)
        .where(ManualTrigger.id == trigger_pk, ManualTrigger.status.in_(only))
        .values(status=status, ended_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _refund(session: Session, trigger: ManualTrigger) -> None:
    if trigger.click_day is not None and trigger.requested_by is not None:
        clicks.refund(session, trigger.requested_by, trigger.click_day)


def cancel(session: Session, ctx: AppContext, user: User, trigger_id: str) -> ManualTrigger:
    trigger = session.scalar(select(ManualTrigger).where(ManualTrigger.trigger_id == trigger_id))
    device = session.get(Device, trigger.device_id) if trigger else None
    if trigger is None or access.access_of(device, user) < Access.MANAGE:
        raise NotFound("no such trigger", trigger_id=trigger_id)
    now = ctx.clock.now()
    # Only a trigger still pending gives its click back: once delivered, the device has it and
    # the photo still arrives. Each guarded UPDATE names the state it ends, so a delivery
    # report racing this cancel cannot turn into a refund.
    refunded = trigger.click_day is not None
    if _end(session, trigger.id, TriggerStatus.CANCELLED, now, only=(TriggerStatus.PENDING,),
            click_refunded=refunded):
        _refund(session, trigger)
    else:
        _end(session, trigger.id, TriggerStatus.CANCELLED, now, only=(TriggerStatus.DELIVERED,),
             click_refunded=False)
    session.refresh(trigger)
    return trigger


def expire_overdue(session: Session, ctx: AppContext) -> int:
    """Expire open triggers past their TTL and refund their clicks; returns how many."""
    now = ctx.clock.now()
    overdue = session.scalars(
        select(ManualTrigger).where(ManualTrigger.status.in_(OPEN), ManualTrigger.expires_at <= now)
    ).all()
    expired = 0
    for trigger in overdue:
        refunded = trigger.click_day is not None
        if _end(session, trigger.id, TriggerStatus.EXPIRED, now, click_refunded=refunded):
            _refund(session, trigger)
            expired += 1
            device = session.get(Device, trigger.device_id)
            expiry: events.TriggerExpired = {"trigger_id": trigger.trigger_id,
                                             "device_serial": device.serial if device else None,
                                             "click_refunded": refunded}
            events.emit(ctx.events, session, DomainEvent.TRIGGER_EXPIRED, expiry, user_id=trigger.requested_by,
                        device_id=trigger.device_id, key=f"trigger-expired:{trigger.trigger_id}")
    return expired


def mark_delivered(session: Session, ctx: AppContext, device_ids: list[int], trigger_id: str) -> ManualTrigger:
    trigger = session.scalar(select(ManualTrigger).where(ManualTrigger.trigger_id == trigger_id))
    if trigger is None or trigger.device_id not in device_ids:
        raise NotFound("no such trigger", trigger_id=trigger_id)
    moved = session.execute(
        update(ManualTrigger)
        .where(ManualTrigger.id == trigger.id, ManualTrigger.status == TriggerStatus.PENDING)
        .values(status=TriggerStatus.DELIVERED, delivered_at=ctx.clock.now())
        .execution_options(synchronize_session=False)
    )
    session.refresh(trigger)
    if moved.rowcount == 1:
        serial = devices.serials(session, [trigger.device_id])[trigger.device_id]
        delivered: events.TriggerFulfilled = {"trigger_id": trigger.trigger_id, "device_serial": serial}
        events.emit(ctx.events, session, DomainEvent.TRIGGER_DELIVERED, delivered, user_id=trigger.requested_by,
                    device_id=trigger.device_id, key=f"trigger_delivered:{trigger.trigger_id}")
    return trigger


def fulfil_with_capture(
    session: Session, ctx: AppContext, device: Device, trigger_id: str | None, capture_pk: int
) -> None:
    """A manual capture arrived: it answers its trigger and any earlier open ones of the device.

    Requests made before the photo are all answered by it; the clicks of the extra
    ones are refunded, so a double tap never costs two clicks for one photo.
    """
    now = ctx.clock.now()
    answered = None
    if trigger_id:
        answered = session.scalar(
            select(ManualTrigger).where(
                ManualTrigger.trigger_id == trigger_id, ManualTrigger.device_id == device.id
            )
        )
    if answered is None:
        return
    open_ones = session.scalars(
        select(ManualTrigger).where(
            ManualTrigger.device_id == device.id,
            ManualTrigger.status.in_(OPEN),
            ManualTrigger.requested_at <= answered.requested_at,
        )
    ).all()
    for trigger in open_ones:
        extra = trigger.id != answered.id and trigger.click_day is not None
        values = {"capture_pk": capture_pk, "click_refunded": extra}
        if trigger.delivered_at is None:
            values["delivered_at"] = now
        if _end(session, trigger.id, TriggerStatus.FULFILLED, now, **values):
            if extra:
                _refund(session, trigger)
            fulfilled: events.TriggerFulfilled = {"trigger_id": trigger.trigger_id, "device_serial": device.serial}
            events.emit(ctx.events, session, DomainEvent.TRIGGER_FULFILLED, fulfilled, user_id=trigger.requested_by,
                        device_id=device.id, capture_pk=capture_pk, key=f"trigger-fulfilled:{trigger.trigger_id}")


def latest_for_device(session: Session, device: Device, limit: int) -> list[ManualTrigger]:
    """The device's manual triggers, newest first."""
    query = select(ManualTrigger).where(ManualTrigger.device_id == device.id).order_by(ManualTrigger.id.desc())
    return list(session.scalars(query.limit(limit)))


def open_for_devices(session: Session, device_ids: list[int], now: datetime) -> list[ManualTrigger]:
    if not device_ids:
        return []
    return list(
        session.scalars(
            select(ManualTrigger)
            .where(
                ManualTrigger.device_id.in_(device_ids),
                ManualTrigger.status.in_(OPEN),
                ManualTrigger.expires_at > now,
            )
            .order_by(ManualTrigger.id)
        )
    )
