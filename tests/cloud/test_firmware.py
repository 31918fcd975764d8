"""Firmware updates (issue 14 item 4), the cloud side: only releases signed with this cloud's key are
stored; a rollout targets my devices (one, a list, a percentage) in two waves, halts when the first wave
fails too often, and shows each device's state from its telemetry."""

from __future__ import annotations

import hashlib

import pytest
from mcam import protocol

from mailcam import release
from tests.cloudkit import make_settings, new_account, new_device

KEY_PEM, PUBLIC = release.new_key()
KEY = release.load_key(KEY_PEM)


def release_file(version: str, key=KEY, *, files: dict[str, bytes] | None = None, tamper: bool = False) -> bytes:
    """A release file as `mailcam release build` writes it (module bytes made up: the cloud never runs them)."""
    files = files or {"mcam/__init__.mpy": b"M\x06" + version.encode(), "mcam/cycle.mpy": b"M\x06" + bytes(range(200))}
    entries = [(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()]
    line = protocol.encode_manifest(version, entries)
    bundle = bytearray(line + b"\n" + b"".join(files.values()))
    signature = key.sign(protocol.release_message(line)).hex()
    if tamper:
        bundle[-1] ^= 0xFF
    return protocol.encode_release_file(signature, bytes(bundle))


@pytest.fixture
def cloud_settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, firmware_public_key=PUBLIC)


def upload(api, account, data: bytes):
    return api.post(
        "/api/firmware/releases", content=data, headers={**account.headers, "Content-Type": "application/octet-stream"}
    )


def report(api, gateway_token: str, serial: str, fw: str = "1.0.0", **update):
    body = {"serial_number": serial, "battery_voltage": 3.9, "firmware_version": fw}
    if update:
        body["firmware_update"] = update
    r = api.post("/api/device/telemetry/", json=body, headers={"Authorization": f"Bearer {gateway_token}"})
    assert r.status_code == 200, r.text


def offered(api, gateway_token: str) -> dict[str, str]:
    devices = api.get("/api/gateway/devices/", headers={"Authorization": f"Bearer {gateway_token}"}).json()
    return {d["serial"]: d["firmware"]["version"] for d in devices if d["firmware"]}


def fleet(api, n: int):
    alice = new_account(api, "alice@example.com")
    serials = [f"box-{i}" for i in range(n)]
    for s in serials:
        new_device(api, alice, s)
    gw = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    return alice, serials, gw


def test_only_releases_signed_with_this_clouds_key_are_stored(api):
    alice = new_account(api, "alice@example.com")
    other_key = release.load_key(release.new_key()[0])
    for data, code, words in (
        (release_file("2.0.0", other_key), 422, "not signed with this cloud's release key"),
        (release_file("2.0.0", tamper=True), 422, "hash mismatch: mcam/cycle.mpy"),
        (b"MZ\x90\x00 not a release", 422, "MCFW1"),
    ):
        r = upload(api, alice, data)
        assert r.status_code == code and words in r.json()["detail"], r.text
    assert api.get("/api/firmware/releases", headers=alice.headers).json() == []
    good = upload(api, alice, release_file("2.0.0"))
    assert good.status_code == 201 and good.json()["version"] == "2.0.0" and good.json()["files"] == 2
    again = upload(api, alice, release_file("2.0.0"))
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert api.get("/api/firmware/key", headers=alice.headers).json() == {"public_key": PUBLIC}
    assert upload(api, alice, b"x" * (protocol.MAX_BUNDLE_BYTES + 4096)).status_code == 413


def test_upload_without_a_release_key_is_409(tmp_path, database_url):
    from fastapi.testclient import TestClient

    from cloud.app import create_app

    with TestClient(create_app(make_settings(tmp_path, database_url))) as api:
        alice = new_account(api, "alice@example.com")
        r = upload(api, alice, release_file("2.0.0"))
        assert r.status_code == 409 and "MAILCAM_FIRMWARE_PUBLIC_KEY" in r.json()["detail"]


def test_a_staged_rollout_halts_when_its_first_wave_fails(api):
    alice, serials, gw = fleet(api, 4)
    assert upload(api, alice, release_file("2.0.0")).status_code == 201
    r = api.post(
        "/api/firmware/rollouts",
        json={"version": "2.0.0", "percent": 100, "first_wave": 2, "max_failure_rate": 0.4},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    rollout = r.json()
    wave1 = [d["serial"] for d in rollout["devices"] if d["wave"] == 1]
    assert len(wave1) == 2 and {d["state"] for d in rollout["devices"] if d["wave"] == 2} == {"waiting"}
    assert set(offered(api, gw)) == set(wave1)  # only the first wave is offered

    rid = api.get("/api/firmware/releases", headers=alice.headers).json()[0]["release_id"]
    report(api, gw, wave1[0], release_id=rid, version="2.0.0", state="downloading", percent=40)
    shown = api.get(f"/api/devices/{wave1[0]}/firmware", headers=alice.headers).json()
    assert shown["update"]["state"] == "downloading" and shown["update"]["progress"] == 40
    report(
        api,
        gw,
        wave1[1],
        release_id=rid,
        version="2.0.0",
        state="rolled_back",
        reason="no complete wake in 3 boots: RuntimeError('boom')",
    )
    after = api.get(f"/api/firmware/rollouts/{rollout['rollout_id']}", headers=alice.headers).json()
    assert after["status"] == "halted" and "1 of 2 first-wave devices failed" in after["halted_reason"]
    states = {d["serial"]: (d["state"], d["reason"]) for d in after["devices"]}
    assert states[wave1[1]] == ("rolled_back", "no complete wake in 3 boots: RuntimeError('boom')")
    assert offered(api, gw) == {}  # halted: nothing more is offered, not even to the first wave
    assert sorted(s for s, (st, _) in states.items() if st == "waiting") == [s for s in serials if s not in wave1]


def test_the_second_wave_opens_when_the_first_is_installed_and_only_my_devices_are_targets(api):
    alice, serials, gw = fleet(api, 3)
    upload(api, alice, release_file("2.0.0"))
    r = api.post(
        "/api/firmware/rollouts",
        json={"version": "2.0.0", "serials": serials[:3], "first_wave": 1},
        headers=alice.headers,
    )
    assert offered(api, gw) == {serials[0]: "2.0.0"}
    report(api, gw, serials[0], fw="2.0.0")  # the device runs it: installed
    assert offered(api, gw) == {serials[1]: "2.0.0", serials[2]: "2.0.0"}
    shown = api.get(f"/api/firmware/rollouts/{r.json()['rollout_id']}", headers=alice.headers).json()
    assert shown["status"] == "active" and [d["state"] for d in shown["devices"]] == ["installed", "pending", "pending"]
    cancelled = api.post(f"/api/firmware/rollouts/{r.json()['rollout_id']}/cancel", headers=alice.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert offered(api, gw) == {}  # withdrawn from everyone
    device = api.get(f"/api/devices/{serials[0]}/firmware", headers=alice.headers).json()
    assert device["running"] == "2.0.0" and device["update"]["state"] == "installed"

    for body, code in (
        ({"version": "2.0.0", "serials": ["not-my-box"]}, 404),
        ({"version": "9.9.9", "serials": serials}, 404),
        ({"version": "2.0.0"}, 422),
        ({"version": "2.0.0", "serials": serials, "percent": 50}, 422),
        ({"version": "2.0.0", "percent": 0}, 422),
    ):
        r = api.post("/api/firmware/rollouts", json=body, headers=alice.headers)
        assert r.status_code == code, (body, r.text)
