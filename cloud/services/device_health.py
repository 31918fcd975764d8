"""Device health: low battery with hysteresis, offline after N missed wakes.

Ingest and telemetry report activity here (``on_device_activity``); the offline check is a
core periodic job. Both raise events; notifications are one consumer of them.

Battery: a device alerts once when its voltage falls to ``low_battery_v`` and is re-armed
only when it climbs back to ``battery_recovered_v`` (a charged or new battery). Readings
in between change nothing, so a battery hovering at the threshold raises one alert, not one
per wake. Offline: one alert per silent spell; any capture or telemetry ends the spell.

Both use guarded UPDATEs on ``device_alert_state`` (``WHERE battery_low = false``): of two
concurrent reports, exactly one flips the flag and raises the alert. A report first reads the
device's flags and runs only the UPDATEs that can change something: most reports change nothing,
and one read is then all they cost (ingest runs this for every capture).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from cloud import events
from cloud.context import AppContext
from cloud.db import upsert
from cloud.events import DomainEvent
from cloud.models import Device, DeviceAlertState


def _ensure_state(session: Session, device_id: int) -> None:
    session.execute(
        upsert(session, DeviceAlertState)
        .values(device_id=device_id, battery_low=False, battery_alerts=0, offline=False, offline_alerts=0)
        .on_conflict_do_nothing(index_elements=[DeviceAlertState.device_id])
    )


_FLAGS = select(DeviceAlertState.__table__.c.offline, DeviceAlertState.__table__.c.battery_low).where(
    DeviceAlertState.__table__.c.device_id == bindparam("device_id")
)


def on_device_activity(session: Session, ctx: AppContext, device: Device, voltage: float | None) -> None:
    """A capture or telemetry arrived: the device is back, and its battery reading (if any) counts."""
    flags = session.execute(_FLAGS, {"device_id": device.id}).first()
    offline: bool | None = None  # None: not known, let the guarded UPDATE decide
    battery_low: bool | None = None
    if flags is None:
        _ensure_state(session, device.id)
    else:
        offline, battery_low = bool(flags.offline), bool(flags.battery_low)
    if offline is not False:
        session.execute(
            update(DeviceAlertState)
            .where(DeviceAlertState.device_id == device.id, DeviceAlertState.offline.is_(True))
            .values(offline=False)
            .execution_options(synchronize_session=False)
        )
    if voltage is not None:
        check_battery(session, ctx, device, float(voltage), battery_low=battery_low)


def check_battery(
    session: Session, ctx: AppContext, device: Device, voltage: float, *, battery_low: bool | None = None
) -> bool:
    """Apply one reading; True when it raised a low-battery alert. ``battery_low``: the flag as just
    read in this transaction, if known (the UPDATE that could not change it is then skipped)."""
    settings = ctx.settings.notify
    if voltage >= settings.battery_recovered_v:
        if battery_low is False:
            return False
        session.execute(
            update(DeviceAlertState)
            .where(DeviceAlertState.device_id == device.id, DeviceAlertState.battery_low.is_(True))
            .values(battery_low=False)
            .execution_options(synchronize_session=False)
        )
        return False
    if voltage > settings.low_battery_v or battery_low is True:
        return False
    alert_no = session.execute(
        update(DeviceAlertState)
        .where(DeviceAlertState.device_id == device.id, DeviceAlertState.battery_low.is_(False))
        .values(battery_low=True, battery_alerts=DeviceAlertState.battery_alerts + 1)
        .returning(DeviceAlertState.battery_alerts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if alert_no is None:
        return False
    low: events.LowBattery = {"device_serial": device.serial, "battery_voltage": voltage,
                              "threshold_v": settings.low_battery_v}
    events.emit(ctx.events, session, DomainEvent.LOW_BATTERY, low, user_id=device.owner_id, device_id=device.id,
                key=f"low-battery:{device.id}:{alert_no}")
    return True


def offline_since(device: Device) -> datetime | None:
    return device.last_seen_at or device.claimed_at or device.created_at


def detect_offline(session: Session, ctx: AppContext) -> int:
    """Alert owners of devices that missed ``offline_missed_wakes`` expected wakes; returns how many."""
    now = ctx.clock.now()
    missed = ctx.settings.notify.offline_missed_wakes
    alerted = 0
    for device in session.scalars(select(Device).where(Device.owner_id.is_not(None)).order_by(Device.id)):
        since = offline_since(device)
        allowed = timedelta(seconds=device.wake_interval_s * missed + ctx.settings.online_slack_s)
        if since is None or now - since <= allowed:
            continue
        _ensure_state(session, device.id)
        alert_no = session.execute(
            update(DeviceAlertState)
            .where(DeviceAlertState.device_id == device.id, DeviceAlertState.offline.is_(False))
            .values(offline=True, offline_alerts=DeviceAlertState.offline_alerts + 1)
            .returning(DeviceAlertState.offline_alerts)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if alert_no is None:
            continue
        alerted += 1
        offline: events.DeviceOffline = {
            "device_serial": device.serial,
            "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
            "missed_wakes": int((now - since).total_seconds() // device.wake_interval_s),
        }
        events.emit(ctx.events, session, DomainEvent.DEVICE_OFFLINE, offline, user_id=device.owner_id,
                    device_id=device.id, key=f"device-offline:{device.id}:{alert_no}")
    return alerted
