"""Devices in the field (issue 14), under the MicroPython unix port (256 KB heap) against a real Mosquitto:
true time from the gateway's retained clock, and the MQTT conformance findings.

The broker of each test is its own (``chatty_mosquitto``, ``log_type all``) so a retained clock does
not leak into other tests and the broker's log shows what the device sent, packet by packet
(DUP flags, packet ids, client ids, PINGREQs), which subscribers cannot see (§3.3.1.1: DUP is not
propagated).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcam import protocol

from tests.brokers import Mosquitto
from tests.firmware.conftest import publish_retained
from tests.firmware.test_cycle_micropython import captures, chunks, telemetry


@pytest.fixture
def chatty_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir=tmp_path / "mosquitto", extra_conf="log_type all\n").start()
    yield broker
    broker.stop()


class BrokerLog:
    """The broker's log from a mark on; waits (with a deadline) for lines it expects."""

    def __init__(self, broker: Mosquitto) -> None:
        self.path = broker.workdir / "mosquitto.log"
        self.start = 0

    def mark(self) -> None:
        self.start = len(self.text_all())

    def text_all(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""

    def text(self) -> str:
        return self.text_all()[self.start:]

    def wait_for(self, pattern: str, timeout: float = 10.0) -> list[re.Match]:
        end = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.text()))
            if found:
                return found
            if time.monotonic() > end:
                raise AssertionError(f"broker log has no {pattern!r}:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def publishes(self, client_id: str, kind: str) -> dict[int, str]:
        """packet id -> DUP flag ("0"/"1") of every PUBLISH the device sent on its ``kind`` topic."""
        pat = rf"Received PUBLISH from {client_id} \(d(\d), q1, r0, m(\d+), 'mailcam/v1/[^/]+/{kind}'"
        return {int(m.group(2)): m.group(1) for m in re.finditer(pat, self.text())}


def clock_now(broker: Mosquitto, every: int = 30) -> int:
    now = int(time.time())
    publish_retained(broker, protocol.CLOCK_TOPIC, protocol.encode_clock(now, every))
    return now


# ---------------------------------------------------------------- time


def test_first_wake_after_power_loss_takes_true_time_from_the_retained_clock(
    make_device, chatty_mosquitto, serial, watch
):
    """The RTC reads 2000-01-01 after a power loss: expected the capture and telemetry stamped with true
    time (the clock arrives in the CONNACK round trip, before any chunk goes out); before, the board
    never set its clock and stamped 2000-01-01."""
    dev = make_device(chatty_mosquitto, serial, 6000)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/#")
    t0 = clock_now(chatty_mosquitto)
    result = dev.wake(power_loss=True)
    t1 = int(time.time())
    assert result["error"] is None and result["round_trips"] <= 3
    assert result["clock_step"] > 20 * 365 * 86400  # from 2000 to now
    w.wait(lambda ms: len(captures(ms)) == 1 and telemetry(ms))
    (h, _), = captures(w.messages).values()
    assert t0 <= h["ts"] <= t1 + 35 and "tu" not in h
    t = telemetry(w.messages)[0]
    assert t0 <= t["ts"] <= t1 + 35 and t["tu"] is False


def test_clock_is_kept_across_deep_sleep_without_a_clock_message(make_device, chatty_mosquitto, serial, watch):
    """Set once, the RTC keeps true time through deep sleep: the next wake has no clock to read (the
    gateway is away) and still stamps true time, unmarked."""
    dev = make_device(chatty_mosquitto, serial, 3000)
    clock_now(chatty_mosquitto)
    assert dev.wake(power_loss=True)["error"] is None
    publish_retained(chatty_mosquitto, protocol.CLOCK_TOPIC, b"")  # the gateway stopped: clock cleared
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/#")
    before = int(time.time())
    second = dev.wake(power_loss=False)
    assert second["error"] is None and second["clock_step"] is None
    w.wait(lambda ms: len(captures(ms)) == 1 and telemetry(ms))
    (h, _), = captures(w.messages).values()
    assert before - 2 <= h["ts"] <= int(time.time()) + 2 and "tu" not in h
    assert telemetry(w.messages)[0]["tu"] is False


def test_without_any_clock_readings_are_marked_time_uncertain(make_device, chatty_mosquitto, serial, watch):
    """No clock since the power loss: the capture and the telemetry say their time is uncertain."""
    dev = make_device(chatty_mosquitto, serial, 3000)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/#")
    result = dev.wake(power_loss=True)
    assert result["error"] is None and result["clock_step"] is None
    w.wait(lambda ms: len(captures(ms)) == 1 and telemetry(ms))
    (h, _), = captures(w.messages).values()
    assert h["tu"] == 1 and not protocol.time_is_sane(h["ts"])
    t = telemetry(w.messages)[0]
    assert t["tu"] is True and not protocol.time_is_sane(t["ts"])


def test_captures_queued_before_the_clock_was_set_are_corrected_before_upload(
    make_device, chatty_mosquitto, serial, watch
):
    """A capture taken with the unset clock while Wi-Fi was down waits in flash; when a later wake
    (same power-on, so the same RTC) gets the clock, it is restamped by the same step before upload."""
    dev = make_device(chatty_mosquitto, serial, 3000)
    taken = int(time.time())
    offline = dev.wake(power_loss=True, wifi_ok=False)
    assert offline["error"].startswith("wifi") and len(dev.queued()) == 1
    t0 = clock_now(chatty_mosquitto)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/capture")
    online = dev.wake(power_loss=False, wifi_ok=True, wake="door")
    assert online["error"] is None and dev.queued() == []
    w.wait(lambda ms: len(captures(ms)) == 2)
    first = captures(w.messages)[offline["captures"][0]][0]
    assert "tu" not in first
    # its true time: `taken`, give or take the beacon's age (<= 30 s) and the seconds between wakes
    assert taken - 35 <= first["ts"] <= t0 + 5


# ---------------------------------------------------------------- MQTT findings


def test_unacknowledged_telemetry_is_resent_with_its_packet_id_and_dup(make_device, chatty_mosquitto, serial):
    """MQTT-4.4.0-1: a PUBLISH not acknowledged when the connection dropped is re-sent, same packet id,
    DUP=1, on the next connection of the persistent session. Before, each wake built a new telemetry
    with a new id and the unacknowledged one was forgotten."""
    dev = make_device(chatty_mosquitto, serial, 2000)
    log = BrokerLog(chatty_mosquitto)
    cut = dev.wake(drop_after_publishes=2)  # chunk + telemetry written, then the link dies: no PUBACK
    assert cut["error"]
    log.wait_for(rf"Client {cut['client_id']} [^\n]*(disconnected|closed)")
    log.mark()
    again = dev.wake(drop_after_publishes=0)
    assert again["error"] is None
    log.wait_for(rf"Received DISCONNECT from {cut['client_id']}")
    sent = log.publishes(cut["client_id"], "telemetry")
    assert sorted(sent.values()) == ["0", "1"]  # this wake's (new id) and the re-sent one (DUP)
    resent = [pid for pid, dup in sent.items() if dup == "1"]
    assert resent and resent[0] < max(sent)  # the earlier wake's packet id
    assert not (dev.dir / "queue" / "telemetry.json").exists()


def test_telemetry_that_never_went_out_arrives_next_wake_without_dup(make_device, chatty_mosquitto, serial, watch):
    """The link died before the telemetry was written: next wake it is delivered (DUP=0: never sent)."""
    dev = make_device(chatty_mosquitto, serial, 2000)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/telemetry")
    log = BrokerLog(chatty_mosquitto)
    cut = dev.wake(drop_after_publishes=1)  # the chunk went out, the telemetry's write failed
    assert cut["error"]
    log.mark()
    assert dev.wake(drop_after_publishes=0)["error"] is None
    w.wait(lambda ms: sorted(t["boot"] for t in telemetry(ms)) == [1, 2])
    assert set(log.publishes(cut["client_id"], "telemetry").values()) == {"0"}


def test_keepalive_shorter_than_the_wait_sends_pingreq_and_keeps_the_session(
    make_device, chatty_mosquitto, serial, watch
):
    """MQTT-3.1.2-23: with broker.keepalive 1 s and acknowledgements stalled for 3.5 s, expected PINGREQs
    while waiting; before, the device sent nothing, the broker dropped it after 1.5 x keepalive and
    published its "lost" will although every PUBACK was on its way."""
    dev = make_device(chatty_mosquitto, serial, 8192, broker={
        "host": chatty_mosquitto.host, "port": chatty_mosquitto.port, "keepalive": 1, "timeout_ms": 12000})
    log = BrokerLog(chatty_mosquitto)
    result = dev.wake(stall_after_publishes=1, stall_ms=7000)
    assert result["error"] is None and dev.queued() == []
    log.wait_for(rf"Received PINGREQ from {result['client_id']}")
    log.wait_for(rf"Received DISCONNECT from {result['client_id']}")
    assert "exceeded timeout" not in log.text()


def test_long_serial_gets_a_portable_deterministic_client_id(make_device, chatty_mosquitto, watch):
    """MQTT-3.1.3-5: brokers need only accept 1-23 of [0-9a-zA-Z]; a 32-char serial with '_'/'-' was used
    as the client id as is. Expected: a compliant id, the same on every wake (the session is found)."""
    serial = "mb_" + "x" * 24 + "-0001"
    assert len(serial) == 32
    dev = make_device(chatty_mosquitto, serial, 2000)
    log = BrokerLog(chatty_mosquitto)
    first = dev.wake()
    cid = first["client_id"]
    assert re.fullmatch(r"[0-9a-zA-Z]{1,23}", cid)
    log.wait_for(rf"New client connected from \S+ as {cid} \(p2, c0")
    log.mark()
    second = dev.wake()
    assert second["client_id"] == cid and second["error"] is None
    log.wait_for(rf"Sending CONNACK to {cid} \(1, 0\)")  # session present: same session found
    short = make_device(chatty_mosquitto, "mb0001", 2000)
    assert short.wake()["client_id"] == "mb0001"


def test_retained_trigger_is_not_answered_again_after_rtc_memory_loss(make_device, chatty_mosquitto, serial):
    """The cmd stays retained until the gateway clears it. Expected one answer; before, a power loss
    (RTC memory gone, with the answered trigger ids in it) made the device answer it a second time."""
    dev = make_device(chatty_mosquitto, serial, 2000)
    tid = "trg-" + serial
    publish_retained(chatty_mosquitto, protocol.topic(serial, "cmd"), protocol.encode_cmd(tid, int(time.time()) + 600))
    assert dev.wake()["manual_tid"] == tid
    after_loss = dev.wake(power_loss=True)
    assert after_loss["manual_tid"] is None and len(after_loss["captures"]) == 1


def test_chunk_whose_first_send_failed_goes_out_without_dup(make_device, chatty_mosquitto, serial, watch):
    """§3.3.1.1: DUP=1 only for a PUBLISH sent before. Chunk 3's write failed (link dead); expected it
    next wake with DUP=0 and chunks 0-2 (sent, unacknowledged) with DUP=1; before, chunk 3 had DUP=1."""
    dev = make_device(chatty_mosquitto, serial, 8 * 4096, chunk_size=4096)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/capture")
    log = BrokerLog(chatty_mosquitto)
    cut = dev.wake(drop_after_publishes=3)  # chunks 0-2 written, chunk 3's write fails
    assert cut["error"]
    log.wait_for(rf"Client {cut['client_id']} [^\n]*(disconnected|closed)")
    log.mark()
    assert dev.wake(drop_after_publishes=0)["error"] is None
    cid = cut["captures"][0]
    w.wait(lambda ms: cid in captures(ms))
    log.wait_for(rf"Received DISCONNECT from {cut['client_id']}")
    dups = log.publishes(cut["client_id"], "capture")  # chunk i has packet id i + 1
    assert {p: dups[p] for p in range(1, 9)} == {1: "1", 2: "1", 3: "1", 4: "0", 5: "0", 6: "0", 7: "0", 8: "0"}
    assert captures(w.messages)[cid][1] == dev.jpeg and chunks(w.messages, cid)


# ---------------------------------------------------------------- battery


def test_camera_rail_is_switched_on_for_the_photo_and_held_off_in_deep_sleep(make_device, mosquitto, serial):
    """A board with the camera rail on a transistor (camera.rail_pin): on before the sensor starts, held
    off through deep sleep (the unmodified board's camera rail draws about a milliampere asleep)."""
    dev = make_device(mosquitto, serial, 2000, camera={"rail_pin": 14, "rail_on": 1},
                      sleep={"pulldown_pins": [2, 12, 15]})
    assert dev.wake()["error"] is None
    s = dev.slept
    assert s["events"] == [["rail", 14, 1], ["camera_init"]]
    assert s["holds"] == {"32": 1, "4": 0, "14": 0} and 14 not in s["pulldowns"]


def test_camera_rail_pin_that_is_also_pulled_down_is_a_config_error(make_device, mosquitto, serial):
    dev = make_device(mosquitto, serial, 2000, camera={"rail_pin": 14})
    result = dev.wake()
    assert result["error"] == "config: camera.rail_pin 14 is also in sleep.pulldown_pins"
    assert result["sleep_s"] == 3600


def test_a_drifted_clock_is_pulled_back_and_this_wakes_capture_restamped(make_device, chatty_mosquitto, serial, watch):
    """The ESP32's RC clock drifts in deep sleep; a capture taken with an RTC 10 minutes fast is
    restamped by the step the clock takes (before its chunks go out)."""
    dev = make_device(chatty_mosquitto, serial, 3000)
    (dev.dir / "clock.json").write_text('{"offset": 600}')  # the RTC runs 10 minutes ahead
    t0 = clock_now(chatty_mosquitto)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/capture")
    result = dev.wake()
    assert result["error"] is None and -600 <= result["clock_step"] <= -560
    w.wait(lambda ms: len(captures(ms)) == 1)
    (h, _), = captures(w.messages).values()
    assert t0 - 2 <= h["ts"] <= int(time.time()) + 35


# ---------------------------------------------------------------- remote settings (device side)


def settings_now(broker: Mosquitto, serial: str, ver: int, values: dict) -> None:
    publish_retained(broker, protocol.topic(serial, protocol.SETTINGS), protocol.encode_settings(ver, values))


def test_remote_settings_are_kept_applied_next_wake_and_reported(make_device, chatty_mosquitto, serial, watch):
    dev = make_device(chatty_mosquitto, serial, 9000)
    settings_now(chatty_mosquitto, serial, 3, {"wake_interval_s": 600, "chunk_size": 2048, "camera.quality": 20})
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/#")
    first = dev.wake()
    assert first["error"] is None and first["settings_kept"] == 3 and first["round_trips"] <= 3
    assert first["sleep_s"] == 1800  # in effect from the next wake
    second = dev.wake()
    assert second["error"] is None and second["sleep_s"] == 600 and "settings_kept" not in second
    w.wait(lambda ms: len(telemetry(ms)) == 2 and len(captures(ms)) == 2)
    assert [(t["cfgv"], t["cfge"]) for t in telemetry(w.messages)] == [(None, None), (3, None)]
    ns = sorted(h["n"] for h, _ in captures(w.messages).values())
    assert ns == [3, 5]  # 9000 bytes in 4096-byte chunks, then in 2048-byte chunks


def test_bad_remote_settings_are_refused_with_the_reason_and_change_nothing(
    make_device, chatty_mosquitto, serial, watch
):
    dev = make_device(chatty_mosquitto, serial, 3000)
    settings_now(chatty_mosquitto, serial, 4, {"camera.quality": 99})
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/telemetry")
    refused = dev.wake()
    assert refused["error"] is None and "settings_kept" not in refused
    settings_now(chatty_mosquitto, serial, 5, {"broker.host": "evil.example"})
    again = dev.wake()
    assert again["sleep_s"] == 1800 and not (dev.dir / "queue" / "settings.json").exists()
    w.wait(lambda ms: len(telemetry(ms)) == 2)
    reasons = [t["cfge"] for t in telemetry(w.messages)]
    assert reasons == ["ver 4: camera.quality must be an integer in 2..63, got 99",
                       "ver 5: broker.host cannot be set remotely"]
    assert all(t["cfgv"] is None for t in telemetry(w.messages))


def test_a_settings_change_that_invalidates_a_partly_sent_capture_keeps_its_chunking(
    make_device, chatty_mosquitto, serial, watch
):
    """A capture cut off mid-upload keeps the chunk size it started with after chunk_size changes: its
    remaining chunks fit the ones the gateway already has (one header for one capture)."""
    dev = make_device(chatty_mosquitto, serial, 8 * 4096, chunk_size=4096)
    w = watch(chatty_mosquitto, f"mailcam/v1/{serial}/capture")
    cut = dev.wake(drop_after_publishes=3)
    assert cut["error"] and len(dev.queued()) == 1
    (dev.dir / "queue" / "settings.json").write_text('{"ver": 9, "set": {"chunk_size": 1024}}')
    done = dev.wake(drop_after_publishes=0)
    assert done["error"] is None and dev.queued() == []
    cid = cut["captures"][0]
    w.wait(lambda ms: cid in captures(ms))
    assert {h["n"] for h, _, _ in chunks(w.messages, cid)} == {8}
    assert captures(w.messages)[cid][1] == dev.jpeg
