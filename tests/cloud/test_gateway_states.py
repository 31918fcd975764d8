"""The gateway's view for Home Assistant: the state feed (long-poll), a photo on the owner's behalf, deletion."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from cloud.api.gateway_states import battery_percent
from cloud.app import create_app
from cloud.models import Capture
from cloud.vision.worker import process_pending
from mailcam import scenes
from tests.cloudkit import LiveServer, capture_body, grant_installer, new_account, new_device

DEADLINE_S = 15  # far below the long-poll's wait (60 s) and its safety poll (30 s): only a wake-up is this fast


@pytest.fixture
def server(cloud_ctx) -> Iterator[LiveServer]:
    cloud_ctx.settings.gateway_long_poll_safety_s = 30
    cloud_ctx.settings.free_clicks_per_day = 1
    with LiveServer(create_app(ctx=cloud_ctx)) as live:
        yield live


@pytest.fixture
def home(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        owner = new_account(client, "alice@example.com")
        device = new_device(client, owner, "box-1")
        token = client.post("/api/gateways/", json={"name": "home"}, headers=owner.headers).json()["gateway_token"]
        yield client, owner, device, {"Authorization": f"Bearer {token}"}


def states(client: httpx.Client, gateway: dict, **params) -> dict:
    response = client.get("/api/gateway/states/", params=params, headers=gateway)
    assert response.status_code == 200, response.text
    return response.json()


def post_capture(client: httpx.Client, ctx, device, image: bytes, capture_id: str) -> None:
    body = capture_body(device.serial, image, capture_id=capture_id, timestamp=ctx.clock.now().isoformat())
    response = client.post("/api/device/capture/", json=body, headers=device.headers)
    assert response.status_code == 200, response.text


def test_the_state_feed_answers_at_once_when_a_capture_is_analysed_and_carries_the_telemetry(home, cloud_ctx):
    client, owner, device, gateway = home
    first = states(client, gateway)
    [box] = first["devices"]
    assert box["serial"] == "box-1" and box["mail"]["state"] is None and box["latest_photo"] is None

    post_capture(client, cloud_ctx, device, scenes.render("empty", 5), "box-1-empty")
    assert client.post("/api/captures/box-1-empty/reference", headers=owner.headers).status_code == 201
    process_pending(cloud_ctx)
    calibrated = states(client, gateway)
    assert calibrated["devices"][0]["mail"]["state"] == "empty"
    assert calibrated["devices"][0]["latest_photo"]["capture_id"] == "box-1-empty"

    result: dict = {}
    waiting = threading.Thread(
        target=lambda: result.update(states(client, gateway, wait=60, version=calibrated["version"])), daemon=True
    )
    waiting.start()
    post_capture(client, cloud_ctx, device, scenes.render("letters", 5), "box-1-letters")
    waiting.join(DEADLINE_S)  # the capture's commit wakes it (a new photo is news)
    assert result and result["devices"][0]["latest_photo"]["capture_id"] == "box-1-letters"

    process_pending(cloud_ctx)
    [box] = states(client, gateway)["devices"]
    assert box["mail"]["state"] == "mail" and box["mail"]["confidence"] >= 0.6
    assert box["mail"]["categories"] and box["mail"]["since"]
    assert box["last_delivery"]["kind"] == "arrived"
    thumbnail = client.get(box["latest_photo"]["thumbnail"])  # the signed link needs no login
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"

    report = {
        "serial_number": "box-1",
        "battery_voltage": 3.85,
        "rssi": -71,
        "awake_ms": 1800,
        "pending_captures": 2,
        "firmware_version": "1.4.2",
        "timestamp": cloud_ctx.clock.now().isoformat(),
    }
    assert client.post("/api/device/telemetry/", json=report, headers=device.headers).status_code == 200
    [box] = states(client, gateway)["devices"]
    assert box["online"] is True and box["battery_voltage"] == pytest.approx(3.85) and box["rssi"] == -71
    assert box["battery_percent"] == battery_percent(3.85) and box["awake_ms"] == 1800
    assert box["pending_captures"] == 2 and box["firmware_version"] == "1.4.2"


@pytest.mark.parametrize("sender", ["gateway", "device"])
def test_a_telemetry_report_wakes_the_state_feed_at_once(home, cloud_ctx, sender):
    """Home Assistant's battery and signal follow each report as it comes, not at the safety poll (the
    report's rows are written by plain statements, which must still wake the feed)."""
    client, _owner, device, gateway = home
    version = states(client, gateway)["version"]
    result: dict = {}
    waiting = threading.Thread(
        target=lambda: result.update(states(client, gateway, wait=60, version=version)), daemon=True
    )
    waiting.start()
    report = {"serial_number": "box-1", "battery_voltage": 3.62, "rssi": -58,
              "timestamp": cloud_ctx.clock.now().isoformat()}
    headers = gateway if sender == "gateway" else device.headers
    assert client.post("/api/device/telemetry/", json=report, headers=headers).status_code == 200
    waiting.join(DEADLINE_S)
    assert result, "the feed was not woken by the report"
    [box] = result["devices"]
    assert box["battery_voltage"] == pytest.approx(3.62) and box["rssi"] == -58


def test_battery_estimate_stays_within_bounds_and_rises_with_the_voltage():
    volts = [2.5 + i * 0.01 for i in range(200)]
    estimates = [battery_percent(v) for v in volts]
    assert estimates[0] == 0 and estimates[-1] == 100 and battery_percent(None) is None
    assert all(a <= b for a, b in zip(estimates, estimates[1:], strict=False))


def test_a_photo_from_the_gateway_costs_the_owners_click_and_only_for_the_owners_devices(home):
    client, owner, _device, gateway = home
    # Another installer's mailbox, not claimed: nothing this gateway acts for.
    other = new_account(client, "other-installer@example.com")
    grant_installer(client, other)
    assert client.post("/api/devices/", json={"serial": "box-9"}, headers=other.headers).status_code == 201
    assert client.post("/api/gateway/devices/box-9/trigger/", headers=gateway).status_code == 404
    assert client.post("/api/gateway/devices/box-1/trigger/", headers=owner.headers).status_code == 401
    assert client.post("/api/gateway/devices/bad%20serial/trigger/", headers=gateway).status_code == 422
    pressed = client.post("/api/gateway/devices/box-1/trigger/", headers=gateway)
    assert pressed.status_code == 202, pressed.text  # never heard from: queued for its next wake
    assert pressed.json()["status"] == "queued" and pressed.json()["clicks_used"] == 1
    mine = client.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=owner.headers)
    assert mine.status_code == 429  # one limit for the owner, however the click arrives
    again = client.post("/api/gateway/devices/box-1/trigger/", headers=gateway)
    assert again.status_code == 429
    body = again.json()
    assert body["error"] == "click_limit_exceeded" and body["clicks_limit"] == 1 and body["reset_at"]
    triggers = client.get("/api/devices/box-1/triggers/", headers=owner.headers).json()
    assert [t["trigger_id"] for t in triggers] == [pressed.json()["trigger_id"]]


def test_deleting_a_device_removes_it_with_its_photos_from_every_list(home, cloud_ctx):
    client, owner, device, gateway = home
    post_capture(client, cloud_ctx, device, scenes.render("letters", 6), "box-1-gone")
    with cloud_ctx.sessions() as session:
        sha = session.scalar(select(Capture.image_sha256).where(Capture.capture_id == "box-1-gone"))
    assert cloud_ctx.images.read(sha) is not None
    assert client.delete("/api/devices/box-1/", headers=owner.headers).status_code == 204
    assert states(client, gateway)["devices"] == []
    assert client.get("/api/gateway/devices/", headers=gateway).json() == []
    assert client.get("/api/devices/box-1/", headers=owner.headers).status_code == 404
    assert (
        client.post("/api/device/telemetry/", json={"serial_number": "box-1"}, headers=device.headers).status_code
        == 401
    )
    with pytest.raises(FileNotFoundError):
        cloud_ctx.images.read(sha)
    assert client.delete("/api/devices/box-1/", headers=owner.headers).status_code == 404
