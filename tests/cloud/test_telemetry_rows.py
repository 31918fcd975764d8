"""What a telemetry report leaves in the database: the history row, the device's latest values, the
gateway's last-seen time, the alert state, the live feed's event and any notification.

The route writes with plain statements built once, not the ORM's unit of work (CPU per report: a
gateway sends one per wake); these are the rows the ORM wrote, column by column, for reports through
a gateway and from a device itself, full and sparse, for a claimed box and an installer's unclaimed one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud.models import Device, DeviceAlertState, Gateway, LiveEvent, Notification, Telemetry
from tests.cloudkit import grant_installer, new_account, new_device

pytestmark = pytest.mark.db

FULL = {"serial_number": "box-1", "battery_voltage": 3.31, "rssi": -67, "wake_reason": "door", "awake_ms": 2140,
        "firmware_version": "1.4.2", "boot_count": 7, "last_error": "camera: timeout", "pending_captures": 2,
        "timestamp": "2026-09-21T12:00:00Z", "settings_version": None, "settings_error": None,
        "firmware_update": None}
SPARSE = {"serial_number": "box-1", "firmware_version": "", "timestamp": "2000-01-01T00:01:00Z"}


def _rows(ctx):
    with ctx.sessions() as session:
        telemetry = [(t.device_id, t.received_at, t.reported_at, t.battery_voltage, t.rssi, t.wake_reason, t.awake_ms,
                      t.firmware_version, t.boot_count, t.last_error, t.pending_captures)
                     for t in session.scalars(select(Telemetry).order_by(Telemetry.id))]
        devices = {d.serial: (d.id, d.last_seen_at, d.last_battery_voltage, d.last_rssi, d.last_wake_reason,
                              d.firmware_version, d.settings_applied_version, d.settings_error, d.wake_interval_s)
                   for d in session.scalars(select(Device))}
        gateways = [g.last_seen_at for g in session.scalars(select(Gateway))]
        alerts = {a.device_id: (a.battery_low, a.battery_alerts, a.offline, a.offline_alerts)
                  for a in session.scalars(select(DeviceAlertState))}
        live = [(e.user_id, e.kind, e.device_serial, e.data, e.created_at)
                for e in session.scalars(select(LiveEvent).order_by(LiveEvent.id))]
        notifications = [(n.kind, n.device_id) for n in session.scalars(select(Notification).order_by(Notification.id))]
    return telemetry, devices, gateways, alerts, live, notifications


def test_the_rows_of_reports_through_a_gateway_and_from_a_device(api, cloud_ctx, clock):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    grant_installer(api, alice)
    assert api.post("/api/devices/", json={"serial": "box-2"}, headers=alice.headers).status_code == 201  # unclaimed
    gateway = {"Authorization": "Bearer " + api.post("/api/gateways/", json={"name": "home"},
                                                     headers=alice.headers).json()["gateway_token"]}
    t0 = clock.now()
    steps = [(gateway, FULL), (gateway, SPARSE),
             (box.headers, {"serial_number": "box-1", "battery_voltage": 3.9, "rssi": -50, "wake_reason": "timer"}),
             (gateway, {"serial_number": "box-2", "battery_voltage": 3.6, "awake_ms": 0, "pending_captures": 0})]
    for headers, report in steps:
        clock.advance(timedelta(minutes=1))
        response = api.post("/api/device/telemetry/", json=report, headers=headers)
        assert response.status_code == 200 and response.json() == {"status": "recorded"}
    clock.advance(timedelta(minutes=1))
    refused = api.post("/api/device/telemetry/", json={**FULL, "serial_number": "box-9"}, headers=gateway)
    assert refused.status_code == 404

    telemetry, devices, gateways, alerts, live, notifications = _rows(cloud_ctx)
    t = [t0 + timedelta(minutes=k) for k in range(6)]
    box1, box2 = devices["box-1"][0], devices["box-2"][0]
    assert telemetry == [
        (box1, t[1], datetime(2026, 9, 21, 12, tzinfo=UTC), 3.31, -67, "door", 2140, "1.4.2", 7, "camera: timeout", 2),
        (box1, t[2], None, None, None, None, None, "", None, None, None),
        (box1, t[3], None, 3.9, -50, "timer", None, None, None, None, None),
        (box2, t[4], None, 3.6, None, None, 0, None, None, None, 0),
    ]
    assert devices == {
        "box-1": (box1, t[3], 3.9, -50, "timer", "1.4.2", None, None, 3600),
        "box-2": (box2, t[4], 3.6, None, None, None, None, None, 3600),
    }
    assert gateways == [t[4]]  # a refused report (unknown box) writes nothing, not even the gateway's last-seen
    assert alerts == {box1: (False, 1, False, 0), box2: (False, 0, False, 0)}
    alice_id = live[0][0]
    assert [e[1:] for e in live] == [
        ("low_battery", "box-1", {"device_serial": "box-1", "battery_voltage": 3.31, "threshold_v": 3.45}, t[1]),
        ("telemetry_received", "box-1", {"battery_voltage": 3.31, "device_serial": "box-1"}, t[1]),
        ("telemetry_received", "box-1", {"battery_voltage": None, "device_serial": "box-1"}, t[2]),
        ("telemetry_received", "box-1", {"battery_voltage": 3.9, "device_serial": "box-1"}, t[3]),
    ]
    assert all(e[0] == alice_id for e in live)
    assert notifications == [("low_battery", box1)]
