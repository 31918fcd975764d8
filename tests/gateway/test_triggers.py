"""Trigger relay: a click in the cloud becomes a retained `cmd`, cleared once answered or withdrawn."""

from __future__ import annotations

import pytest
from mcam import protocol

from tests.cloudkit import jpeg_bytes
from tests.gateway.kit import Publisher, wait_until
from tests.gateway.test_end_to_end import start_gateway

pytestmark = pytest.mark.slow


def retained_cmd(broker, serial: str) -> bytes | None:
    """What a device that wakes now finds on its cmd topic (None: nothing retained)."""
    probe = Publisher(broker.host, broker.port)
    try:
        probe.subscribe(protocol.topic(serial, protocol.CMD))
        try:
            wait_until(lambda: probe.received, 1.0, "retained message")
        except AssertionError:
            return None
        message = probe.received[0]
        return message.payload if message.retain else None
    finally:
        probe.close()


def trigger(cloud, serial: str) -> str:
    with cloud.client() as client:
        response = client.post("/api/device/trigger/", json={"device_serial": serial}, headers=cloud.account.headers)
        assert response.status_code in (200, 202), response.text
        return response.json()["trigger_id"]


def trigger_state(cloud, serial: str, tid: str) -> dict:
    with cloud.client() as client:
        response = client.get(f"/api/devices/{serial}/triggers/", headers=cloud.account.headers)
        assert response.status_code == 200, response.text
        return next(t for t in response.json() if t["trigger_id"] == tid)


def test_trigger_is_relayed_retained_and_cleared_after_the_capture(tmp_path, cloud, mosquitto, gateway_proc):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    serial = cloud.serials[0]
    tid = trigger(cloud, serial)
    payload = wait_until(lambda: retained_cmd(mosquitto, serial), 15, "retained cmd")
    cmd = protocol.decode_cmd(payload)
    assert cmd["tid"] == tid and cmd["exp"] > 0
    assert retained_cmd(mosquitto, cloud.serials[1]) is None  # the other device has nothing pending

    device = Publisher(mosquitto.host, mosquitto.port)
    try:
        cid = device.capture(serial, jpeg_bytes(seed=70), trig="manual", tid=tid)
    finally:
        device.close()
    wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "manual capture in the cloud")
    state = wait_until(lambda: (s := trigger_state(cloud, serial, tid))["status"] == "fulfilled" and s, 10, "fulfilled")
    assert state["delivered_at"] is not None  # the gateway reported the pick-up
    assert state["capture_id"] == cid
    wait_until(lambda: retained_cmd(mosquitto, serial) is None, 15, "retained cmd cleared")
    wait_until(lambda: gw.read(lambda s: s.cmds()) == {}, 10, "the gateway recorded the cleared command")


def test_cancelled_trigger_clears_the_retained_command(tmp_path, cloud, mosquitto, gateway_proc):
    start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    serial = cloud.serials[1]
    tid = trigger(cloud, serial)
    wait_until(lambda: retained_cmd(mosquitto, serial), 15, "retained cmd")
    with cloud.client() as client:
        response = client.post(f"/api/device/trigger/{tid}/cancel/", headers=cloud.account.headers)
        assert response.status_code == 200, response.text
    wait_until(lambda: retained_cmd(mosquitto, serial) is None, 15, "retained cmd cleared")
    assert trigger_state(cloud, serial, tid)["status"] == "cancelled"
