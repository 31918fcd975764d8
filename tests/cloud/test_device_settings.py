"""Remote settings (issue 14 item 3), the cloud side: desired settings checked with the device's rules,
versioned, shown against what the device reports; the reported wake interval decides "offline"."""

from tests.cloudkit import grant_installer, new_account, new_device


def _telemetry(api, box, **extra):
    response = api.post("/api/device/telemetry/", json={"serial_number": box.serial, "battery_voltage": 3.7, **extra},
                        headers=box.headers)
    assert response.status_code == 200, response.text


def test_owner_sets_settings_and_each_change_gets_the_next_version(api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    url = "/api/devices/box-1/settings"
    fresh = api.get(url, headers=alice.headers).json()
    assert (fresh["desired"], fresh["version"], fresh["applied_version"]) == ({}, None, None)
    first = api.put(url, json={"settings": {"wake_interval_s": 900, "camera.quality": 20}}, headers=alice.headers)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1 and first.json()["desired"] == {"wake_interval_s": 900, "camera.quality": 20}
    same = api.put(url, json={"settings": {"wake_interval_s": 900, "camera.quality": 20}}, headers=alice.headers)
    assert same.json()["version"] == 1  # nothing changed: nothing new to send to the device
    second = api.put(url, json={"settings": {"wake_interval_s": 1200}}, headers=alice.headers)
    assert second.json()["version"] == 2 and second.json()["applied"] is False
    assert api.get(url, headers=alice.headers).json()["desired"] == {"wake_interval_s": 1200}


def test_a_whole_number_written_as_a_float_is_taken_as_the_integer(api):
    """Schemathesis found it: JSON Schema's "integer" admits 900.0, which the firmware's rules refused (422)."""
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    response = api.put("/api/devices/box-1/settings", json={"settings": {"wake_interval_s": 77197.0}},
                       headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["desired"] == {"wake_interval_s": 77197}
    assert isinstance(response.json()["desired"]["wake_interval_s"], int)  # the device gets 77197, not 77197.0
    half = api.put("/api/devices/box-1/settings", json={"settings": {"wake_interval_s": 900.5}}, headers=alice.headers)
    assert half.status_code == 422


def test_values_the_device_would_refuse_are_422_and_change_nothing(api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    url = "/api/devices/box-1/settings"
    api.put(url, json={"settings": {"wake_interval_s": 900}}, headers=alice.headers)
    for bad, named in (({"camera.quality": 99}, "camera.quality"), ({"wake_interval_s": 5}, "wake_interval_s"),
                       ({"camera.framesize": "8K"}, "camera.framesize"), ({"broker.host": "evil"}, "broker.host"),
                       ({"camera.flash": 1}, "camera.flash")):
        response = api.put(url, json={"settings": bad}, headers=alice.headers)
        assert response.status_code == 422, bad
        assert response.json()["error"] == "invalid_request" and named in response.json()["detail"]
    assert api.put(url, json={"settings": [1]}, headers=alice.headers).status_code == 422
    kept = api.get(url, headers=alice.headers).json()
    assert (kept["version"], kept["desired"]) == (1, {"wake_interval_s": 900})


def test_settings_of_other_peoples_devices_are_404_and_the_installer_may_set_them_before_the_claim(api):
    installer, mallory = new_account(api, "installer@example.com"), new_account(api, "mallory@example.com")
    new_device(api, new_account(api, "alice@example.com"), "alice-box")
    assert api.get("/api/devices/alice-box/settings", headers=mallory.headers).status_code == 404
    body = {"settings": {"wake_interval_s": 60}}
    assert api.put("/api/devices/alice-box/settings", json=body, headers=mallory.headers).status_code == 404
    assert api.get("/api/devices/no-such/settings", headers=mallory.headers).status_code == 404
    grant_installer(api, installer)
    assert api.post("/api/devices/", json={"serial": "new-box"}, headers=installer.headers).status_code == 201
    put = api.put("/api/devices/new-box/settings", json={"settings": {"door.level": 1}}, headers=installer.headers)
    assert put.status_code == 200 and put.json()["version"] == 1


def test_desired_vs_reported_and_offline_uses_the_interval_the_device_applied(api, clock):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1", wake_interval_s=600)
    url = "/api/devices/box-1/settings"
    api.put(url, json={"settings": {"wake_interval_s": 7200}}, headers=alice.headers)
    _telemetry(api, box)  # a wake before the device received version 1: the old interval still holds
    clock.advance(600 * 2)
    assert api.get("/api/devices/box-1/", headers=alice.headers).json()["status"] == "offline"

    _telemetry(api, box, settings_version=1)
    shown = api.get(url, headers=alice.headers).json()
    assert shown["applied"] is True and shown["applied_version"] == 1 and shown["wake_interval_s"] == 7200
    clock.advance(7200)  # silent for longer than the old interval, within the applied one
    assert api.get("/api/devices/box-1/", headers=alice.headers).json()["status"] == "online"

    api.put(url, json={"settings": {"wake_interval_s": 60, "camera.quality": 40}}, headers=alice.headers)
    _telemetry(api, box, settings_version=1, settings_error="ver 2: camera.quality must be an integer in 2..63")
    shown = api.get(url, headers=alice.headers).json()
    assert (shown["version"], shown["applied_version"], shown["applied"]) == (2, 1, False)
    assert shown["error"].startswith("ver 2:") and shown["wake_interval_s"] == 7200


def test_the_settings_schema_offers_exactly_what_the_firmware_takes():
    """Before: the body was a free {path: value} object, so schema-valid requests (any key) got a 422."""
    from mcam.protocol import SETTABLE

    from cloud.api.schemas import RemoteSettings

    assert sorted(field.alias or name for name, field in RemoteSettings.model_fields.items()) == sorted(SETTABLE)
