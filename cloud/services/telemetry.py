"""Device telemetry: history rows plus the device's latest values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
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


def record(session: Session, ctx: AppContext, device: Device, report: TelemetryIn) -> int:
    """Write the report's history row and the device's latest values; returns the row's id.

    Plain statements built once (the row's INSERT, one UPDATE of the device), not the ORM's unit of
    work: a gateway sends a report per wake, and the ORM's flush of the new row and the changed device
    cost more than the statements (bench/gateway_work.py). The rows are the ORM's, column by column
    (tests/cloud/test_telemetry_rows.py)."""
    now = ctx.clock.now()
    fields = dict(report.__dict__)
    del fields["settings_version"], fields["settings_error"], fields["firmware_update"]  # state, not history
    reported = fields["reported_at"]
    if reported is not None and (reported if reported.tzinfo else reported.replace(tzinfo=UTC)) < SANE_EPOCH:
        fields["reported_at"] = None  # an unset device clock's 2000-01-01: received_at is the truth
    row_id = session.connection().execute(_INSERT, {"device_id": device.id, "received_at": now, **fields}
                                          ).inserted_primary_key[0]
    devices.mark_reported(session, device, now, battery_voltage=report.battery_voltage, rssi=report.rssi,
                          wake_reason=report.wake_reason, firmware_version=report.firmware_version)
    device_settings.on_report(device, report.settings_version, report.settings_error)
    firmware.on_report(session, device, report.firmware_update, report.firmware_version, now)
    session.flush()
    device_health.on_device_activity(session, ctx, device, report.battery_voltage)
    reported: events.TelemetryReceived = {"battery_voltage": report.battery_voltage, "device_serial": device.serial}
    events.emit(ctx.events, session, DomainEvent.TELEMETRY_RECEIVED, reported, user_id=device.owner_id,
                device_id=device.id, key=f"telemetry:{row_id}")
    return row_id


_INSERT = insert(Telemetry.__table__)  # values as parameters: compiled once per set of columns, cached
