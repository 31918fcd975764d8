"""Remote settings end to end (issue 14 item 3): the owner's settings in the real cloud → the gateway
(subprocess) publishes each version once, retained, on a real Mosquitto → the real firmware under the
MicroPython unix port applies it from its next wake (or refuses it, saying why) → its telemetry
brings the version in effect back to the cloud, whose "offline" then uses the applied wake interval."""

from __future__ import annotations

import json

import pytest
from mcam import protocol

from tests.firmware.conftest import make_device, watch  # noqa: F401  (fixtures)
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import GatewayProcess, wait_until

pytestmark = pytest.mark.slow


def test_settings_reach_the_device_once_per_version_and_its_report_reaches_the_cloud(
    tmp_path, cloud, mosquitto, gateway_proc, make_device, watch  # noqa: F811
):
    serial = cloud.serials[0]
    url = f"/api/devices/{serial}/settings"
    headers = cloud.account.headers

    def put(values: dict) -> None:
        with cloud.client() as client:
            response = client.put(url, json={"settings": values}, headers=headers)
        assert response.status_code == 200, response.text

    def shown() -> dict:
        with cloud.client() as client:
            return client.get(url, headers=headers).json()

    put({"wake_interval_s": 600, "camera.quality": 20})
    published = watch(mosquitto, protocol.topic(serial, protocol.SETTINGS))
    gw = GatewayProcess(tmp_path / "gw", env=gateway_env(cloud, mosquitto, devices_refresh_s=0.3))
    gateway_proc.append(gw)
    gw.start()
    wait_until(lambda: gw.kv(f"settings:{serial}") == "1", 20, "settings ver 1 published")

    dev = make_device(mosquitto, serial, 3000, door=None)  # no door pin: door.level cannot apply
    first = dev.wake()
    assert first["error"] is None and first["settings_kept"] == 1
    second = dev.wake()
    assert second["sleep_s"] == 600  # in effect from the next wake
    wait_until(lambda: shown()["applied"], 20, "the cloud sees version 1 in effect")
    assert cloud.device(serial).wake_interval_s == 600  # what "offline" is measured against

    put({"wake_interval_s": 600, "door.level": 1})  # valid in general, not for this device
    wait_until(lambda: gw.kv(f"settings:{serial}") == "2", 20, "settings ver 2 published")
    third = dev.wake()
    assert third["error"] is None and "settings_kept" not in third
    report = wait_until(lambda: (s := shown())["error"] and s, 20, "the refusal reaches the cloud")
    assert (report["version"], report["applied_version"], report["applied"]) == (2, 1, False)
    assert "door.level" in report["error"]

    versions = [json.loads(m.payload)["ver"] for m in published.messages if m.payload]
    assert versions == [1, 2]  # each version once, although the device list was refreshed many times
    late = watch(mosquitto, protocol.topic(serial, protocol.SETTINGS))  # a subscriber from now on...
    late.wait(lambda ms: len(ms) == 1, 10)
    assert late.messages[0].retain and json.loads(late.messages[0].payload)["ver"] == 2  # ...gets the retained copy
