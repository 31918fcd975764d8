"""Installer registration, claiming, listing and ownership."""

from sqlalchemy import select

from cloud.models import Device
from tests.cloudkit import capture_body, grant_installer, new_account, new_device


def test_installer_registers_and_homeowner_claims(api, cloud_ctx):
    installer = new_account(api, "installer@example.com")
    grant_installer(api, installer)
    owner = new_account(api, "owner@example.com")
    reg = api.post("/api/devices/", json={"serial": "MB-0001", "name": "Front gate"}, headers=installer.headers)
    assert reg.status_code == 201
    token, code = reg.json()["device_token"], reg.json()["claim_code"]
    assert token.startswith("mcd_")
    with cloud_ctx.sessions() as session:
        device = session.scalar(select(Device))
        assert token not in (device.token_hash, device.claim_code_hash)

    claim = api.post("/api/devices/claim/", json={"claim_code": code.lower()}, headers=owner.headers)
    assert claim.status_code == 200
    assert claim.json()["serial"] == "MB-0001" and claim.json()["name"] == "Front gate"
    assert [d["serial"] for d in api.get("/api/devices/", headers=owner.headers).json()] == ["MB-0001"]
    assert api.get("/api/devices/", headers=installer.headers).json() == []

    # The claim code is one-time.
    again = api.post("/api/devices/claim/", json={"claim_code": code}, headers=installer.headers)
    assert again.status_code == 404


def test_duplicate_serial_is_409(api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "dup-1")
    assert api.post("/api/devices/", json={"serial": "dup-1"}, headers=alice.headers).status_code == 409


def test_other_peoples_devices_are_404(api):
    alice, mallory = new_account(api, "alice@example.com"), new_account(api, "mallory@example.com")
    new_device(api, alice, "alice-box")
    for path in ("/api/devices/alice-box/", "/api/devices/alice-box/captures/", "/api/devices/alice-box/triggers/"):
        response = api.get(path, headers=mallory.headers)
        assert response.status_code == 404, path
    status = api.get("/api/device/status/", params={"device_serial": "alice-box"}, headers=mallory.headers)
    assert status.status_code == 404
    missing = api.get("/api/device/status/", params={"device_serial": "no-such"}, headers=mallory.headers)
    assert missing.status_code == 404 and missing.json()["error"] == status.json()["error"]


def test_update_device_and_presence(api, clock):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1", wake_interval_s=600)
    assert api.get("/api/devices/box-1/", headers=alice.headers).json()["status"] == "offline"
    api.post("/api/device/telemetry/", json={"serial_number": "box-1", "battery_voltage": 3.7, "rssi": -61,
                                              "wake_reason": "timer", "firmware_version": "1.0.0"},
             headers=box.headers)
    device = api.get("/api/devices/box-1/", headers=alice.headers).json()
    assert device["status"] == "online" and device["battery_voltage"] == 3.7 and device["rssi"] == -61
    assert device["firmware_version"] == "1.0.0"
    clock.advance(600 * 2)
    assert api.get("/api/devices/box-1/", headers=alice.headers).json()["status"] == "offline"
    renamed = api.patch("/api/devices/box-1/", json={"name": "Back door", "wake_interval_s": 3600},
                        headers=alice.headers)
    assert renamed.json()["name"] == "Back door" and renamed.json()["status"] == "online"


def test_device_token_acts_only_for_its_own_serial(api):
    alice = new_account(api, "alice@example.com")
    box1, _box2 = new_device(api, alice, "box-1"), new_device(api, alice, "box-2")
    response = api.post("/api/device/capture/", json=capture_body("box-2"), headers=box1.headers)
    assert response.status_code == 403


def test_gateway_acts_for_its_owners_devices_only(api):
    alice, bob = new_account(api, "alice@example.com"), new_account(api, "bob@example.com")
    new_device(api, alice, "alice-box")
    new_device(api, bob, "bob-box")
    gw = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    headers = {"Authorization": f"Bearer {gw}"}
    assert [d["serial"] for d in api.get("/api/gateway/devices/", headers=headers).json()] == ["alice-box"]
    assert api.post("/api/device/capture/", json=capture_body("alice-box"), headers=headers).status_code == 200
    assert api.post("/api/device/capture/", json=capture_body("bob-box"), headers=headers).status_code == 404


def test_last_seen_and_battery_never_move_back_to_an_older_upload(api, cloud_ctx, clock):
    """Two uploads of one device in flight: the one received later commits first. The earlier one,
    committing after it from a copy of the device loaded before, once wrote that copy's view (its
    own, older time) over the newer one; the row as committed decides now."""
    from datetime import timedelta

    from cloud.db import read_only_transaction
    from cloud.services import devices

    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    earlier = clock.now() + timedelta(minutes=1)
    later = earlier + timedelta(seconds=5)
    with cloud_ctx.sessions() as slow:
        read_only_transaction(slow)
        stale = devices.by_serial(slow, "box-1")  # loaded before the later upload committed
        slow.commit()
        with cloud_ctx.sessions() as fast:
            devices.mark_seen(fast, devices.by_serial(fast, "box-1"), later, 3.7)
            fast.commit()
        devices.mark_seen(slow, stale, earlier)  # no battery reading in this one
        slow.commit()
    with cloud_ctx.sessions() as session:
        device = devices.by_serial(session, "box-1")
        assert (device.last_seen_at, device.last_battery_voltage) == (later, 3.7)
