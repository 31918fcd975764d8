"""The ESP32 HAL under the MicroPython unix port, against stand-ins of the hardware modules (camera in both
driver flavours, machine, esp32, network) that enforce the documented signatures, and a real Mosquitto.

A whole wake runs on ``hal_esp32.HAL`` (our cycle, our MQTT client, real sockets); only the board's
modules are stand-ins (tests/firmware/standins/README.md says where each signature comes from).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.firmware.conftest import FIRMWARE, tool
from tests.firmware.test_cycle_micropython import captures

STANDINS = Path(__file__).parent / "standins"

WAKE = """
import json, board
from mcam import cycle
from mcam.hal_esp32 import HAL
result = cycle.run(HAL(), "config.json", "queue")
print("CALLS " + json.dumps(board.CALLS))
print("RESULT " + json.dumps(result))
"""


def run_on_board(tmp: Path, camera: str, script: str) -> dict[str, object]:
    (tmp / "main_test.py").write_text(script)
    path = os.pathsep.join([str(STANDINS / "board"), str(STANDINS / camera), str(FIRMWARE / "lib")])
    proc = subprocess.run([tool("micropython"), "-X", "heapsize=256k", "main_test.py"], cwd=tmp,
                          env=dict(os.environ, MICROPYPATH=path), capture_output=True, text=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("CALLS", "RESULT", "VALUE"):
            out[key] = json.loads(value)
    assert proc.returncode == 0 and out, f"{proc.stdout}\n{proc.stderr}"
    return out


def calls_named(calls: list[list], name: str) -> list[list]:
    return [c for c in calls if c[0] == name]


def final_pins(calls: list[list]) -> dict[int, tuple]:
    pins: dict[int, tuple] = {}
    for c in calls_named(calls, "Pin"):
        pins[c[1]] = tuple(c[2:])  # (mode, value, pull, hold)
    return pins


@pytest.mark.parametrize("camera", ["camera_api", "camera_lemariva"])
def test_a_whole_wake_on_the_esp32_hal(camera, tmp_path, mosquitto, serial, watch):
    cfg = {"serial": serial, "wifi": {"ssid": "home", "password": "x"},
           "broker": {"host": mosquitto.host, "port": mosquitto.port, "timeout_ms": 3000},
           "wake_interval_s": 1800}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    w = watch(mosquitto, f"mailcam/v1/{serial}/capture")
    out = run_on_board(tmp_path, camera, WAKE)
    result, calls = out["RESULT"], out["CALLS"]
    assert result["error"] is None and result["wifi_mode"] == "scan" and len(result["captures"]) == 1
    w.wait(lambda ms: len(captures(ms)) == 1)
    (_, image), = captures(w.messages).values()
    assert image.startswith(b"\xff\xd8") and image.endswith(b"\xff\xd9")
    names = [c[0] for c in calls]
    assert names.index("ADC.read_uv") < names.index("WLAN.connect")  # battery read before Wi-Fi (ADC2 rule)
    assert calls_named(calls, "ADC.read_uv")[0][1:] == [33, 3]  # GPIO 33, ATTN_11DB
    if camera == "camera_api":
        (made,) = calls_named(calls, "Camera")
        assert made[1:] == [4, 11, 81, 32]  # JPEG, SVGA, quality 12 -> 81 %, PWDN on GPIO 32
        assert "Camera.capture" in names and "Camera.deinit" in names
    else:
        assert calls_named(calls, "camera.init")[0][1:] == [3, 1]  # JPEG in PSRAM
        assert calls_named(calls, "camera.framesize")[0][1:] == [9] and ["camera.quality", 12] in calls
        assert "camera.deinit" in names
    pins = final_pins(calls)
    assert pins[32][1:] == (1, None, True) and pins[4][1:] == (0, None, True)  # PWDN high, flash LED low, held
    assert all(pins[p][2] == 1 and pins[p][3] for p in (2, 12, 14, 15))  # pulled down and held
    assert [c for c in calls if c[0] != "Pin"][-3:] == [
        ["gpio_deep_sleep_hold", True], ["wake_on_ext0", 13, False], ["deepsleep", 1800000]]
    assert pins[13][0] == 1  # the door pin an input (RTC GPIO) for ext0


def test_time_is_set_through_rtc_datetime_in_its_documented_order(tmp_path):
    out = run_on_board(tmp_path, "camera_api", (
        "import json, board, time\n"
        "from mcam.hal_esp32 import HAL\n"
        "HAL().set_time(1800000000)\n"
        "print('CALLS ' + json.dumps(board.CALLS))\n"))
    (call,) = calls_named(out["CALLS"], "RTC.datetime")
    t = time.gmtime(1800000000)
    # (year, month, day, weekday, hours, minutes, seconds, subseconds), weekday Monday = 0 as gmtime's
    assert call[1] == [t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0]


def test_camera_api_quality_maps_back_to_the_configured_quality():
    import sys

    sys.path.insert(0, str(FIRMWARE / "lib"))
    from mcam.hal_esp32 import jpeg_percent

    for q in range(2, 64):  # config.camera.quality range
        percent = jpeg_percent(q)
        assert 0 <= percent <= 100
        assert int(percent * -63 / 100) + 63 == q  # the driver's map(quality, 0, 100, 63, 0) in C

