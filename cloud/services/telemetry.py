"""Device telemetry: history rows plus the device's latest values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from cloud import events
from cloud.context import AppContext
from cloud.events import DomainEvent
from cloud.models import Device, Telemetry
from cloud.services import device_health, device_settings, devices, firmware
from cloud.services.ingest import SANE_EPOCH


@dataclass(frozen=True)
class TelemetryIn:
    battery_voltage: float | None = None
    rssi: int | None = None
    wake_reason: str | None = None
    awake_ms: int | None = None
    firmware_version: str | None = None
    boot_count: int | None = None
    last_error: str | None = None
    pending_captures: int | None = None
    reported_at: datetime | None = None
    settings_version: int | None = None  # the remote settings version in effect (device_settings)
    settings_error: str | None = None  # why the newest remote settings were refused
    firmware_update: dict | None = None  # the device's update report (cloud.services.firmware)


def record(session: Session, ctx: AppContext, device: Device, report: TelemetryIn) -> Telemetry:
    now = ctx.clock.now()
    fields = dict(report.__dict__)
    del fields["settings_version"], fields["settings_error"], fields["firmware_update"]  # state, not history
    reported = fields["reported_at"]
    if reported is not None and (reported if reported.tzinfo else reported.replace(tzinfo=UTC)) < SANE_EPOCH:
        fields["reported_at"] = None  # an unset device clock's 2000-01-01: received_at is the truth
    row = Telemetry(device_id=device.id, received_at=now, **fields)
    session.add(row)
    devices.mark_seen(session, device, now, report.battery_voltage)
    if report.rssi is not None:
        device.last_rssi = report.rssi
    if report.wake_reason:
        device.last_wake_reason = report.wake_reason
    if report.firmware_version:
        device.firmware_version = report.firmware_version
    device_settings.on_report(device, report.settings_version, report.settings_error)
    firmware.on_report(session, device, report.firmware_update, report.firmware_version, now)
    session.flush()
    device_health.on_device_activity(session, ctx, device, report.battery_voltage)
    reported: events.TelemetryReceived = {"battery_voltage": report.battery_voltage, "device_serial": device.serial}
    events.emit(ctx.events, session, DomainEvent.TELEMETRY_RECEIVED, reported, user_id=device.owner_id,
                device_id=device.id, key=f"telemetry:{row.id}")
    return row
