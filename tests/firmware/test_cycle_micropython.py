"""The real firmware under the MicroPython unix port (256 KB heap) against a real Mosquitto."""

from __future__ import annotations

import hashlib
import time
from collections import Counter

from mcam import protocol

from tests.firmware.conftest import publish_retained


def chunks(messages, cid=None):
    out = []
    for m in messages:
        if m.topic.endswith("/capture"):
            h, body = protocol.decode_chunk(m.payload)
            if cid is None or h["cid"] == cid:
                out.append((h, bytes(body), m))
    return out


def captures(messages):
    """cid -> (header, reassembled bytes) for every capture whose chunks are all there."""
    parts: dict[str, dict[int, bytes]] = {}
    heads = {}
    for h, body, _ in chunks(messages):
        parts.setdefault(h["cid"], {})[h["i"]] = body
        heads[h["cid"]] = h
    done = {}
    for cid, got in parts.items():
        h = heads[cid]
        if len(got) == h["n"]:
            done[cid] = (h, b"".join(got[i] for i in range(h["n"])))
    return done


def telemetry(messages):
    return [protocol.decode_telemetry(m.payload) for m in messages if m.topic.endswith("/telemetry")]


def test_full_cycle_publishes_chunked_capture_and_telemetry(make_device, mosquitto, serial, watch):
    dev = make_device(mosquitto, serial)
    w = watch(mosquitto, f"mailcam/v1/{serial}/#")
    result = dev.wake()
    assert result["error"] is None
    w.wait(lambda ms: len(captures(ms)) == 1 and telemetry(ms))
    (h, image), = captures(w.messages).values()
    assert image == dev.jpeg
    assert h["sha"] == hashlib.sha256(dev.jpeg).hexdigest() and h["size"] == 65536 and h["n"] == 16
    assert h["trig"] == "automatic" and h["tid"] is None and h["cid"].startswith(serial + "-")
    assert all(m.qos == 1 for m in w.messages)
    t = telemetry(w.messages)[0]
    assert t["bat"] == 3900 and t["wake"] == "timer" and t["boot"] == 1 and t["rssi"] == -67
    assert result["round_trips"] <= 4
    assert result["sleep_s"] == 1800 and dev.queued() == []
    print("heap peak", result["heap_peak"], "gc high water", result["heap_hw"])


def test_second_wake_uses_fast_wifi_and_reports_previous_awake_time(make_device, mosquitto, serial, watch):
    dev = make_device(mosquitto, serial, 5000)
    w = watch(mosquitto, f"mailcam/v1/{serial}/telemetry")
    first = dev.wake()
    second = dev.wake(wake="door")
    assert (first["wifi_mode"], second["wifi_mode"]) == ("scan", "fast")
    assert second["awake_ms"] < first["awake_ms"]
    w.wait(lambda ms: len(ms) == 2)
    t = telemetry(w.messages)[1]
    assert t["wake"] == "door" and t["boot"] == 2 and t["awake_ms"] == first["awake_ms"]


def test_retained_trigger_makes_one_manual_capture_with_its_tid(make_device, mosquitto, serial, watch):
    dev = make_device(mosquitto, serial, 20000)
    w = watch(mosquitto, f"mailcam/v1/{serial}/capture")
    tid = "trg-" + serial
    cmd = protocol.encode_cmd(tid, int(time.time()) + 600)
    publish_retained(mosquitto, protocol.topic(serial, "cmd"), cmd)
    result = dev.wake()
    assert result["manual_tid"] == tid and len(result["captures"]) == 2
    assert result["round_trips"] <= 3  # the cmd arrives with the CONNACK: no extra round trip
    w.wait(lambda ms: len(captures(ms)) == 2)
    trigs = sorted((h["trig"], h["tid"]) for h, _ in captures(w.messages).values())
    assert trigs == [("automatic", None), ("manual", tid)]
    # the cmd stays retained (the gateway clears it) but the same tid is not answered twice
    again = dev.wake()
    assert again["manual_tid"] is None and len(again["captures"]) == 1


def test_expired_trigger_is_ignored(make_device, mosquitto, serial):
    dev = make_device(mosquitto, serial, 3000)
    cmd = protocol.encode_cmd("old", int(time.time()) - 5)
    publish_retained(mosquitto, protocol.topic(serial, "cmd"), cmd)
    assert dev.wake()["manual_tid"] is None


def test_broker_down_keeps_capture_backs_off_and_delivers_later(make_device, fresh_mosquitto, serial, watch):
    dev = make_device(fresh_mosquitto, serial, 30000)
    fresh_mosquitto.stop()
    first = dev.wake()
    assert first["error"] and "broker" in first["error"]
    assert first["sleep_s"] == 60 and len(dev.queued()) == 1
    second = dev.wake()  # a retry wake: no new capture, longer backoff
    assert second["captures"] == [] and second["sleep_s"] == 120 and len(dev.queued()) == 1
    fresh_mosquitto.start()
    w = watch(fresh_mosquitto, f"mailcam/v1/{serial}/#")
    third = dev.wake()
    assert third["error"] is None and third["sleep_s"] == 1800 and dev.queued() == []
    w.wait(lambda ms: len(captures(ms)) == 1 and telemetry(ms))
    (h, image), = captures(w.messages).values()
    assert h["cid"] == first["captures"][0] and image == dev.jpeg
    t = telemetry(w.messages)[0]
    assert t["pending"] == 1 and "broker" in t["err"]


def test_each_capture_says_what_woke_the_device_even_when_sent_on_a_later_wake(
        make_device, fresh_mosquitto, serial, watch):
    """The cloud's delivery rules trust a door wake more than a timer wake. Before, the wake reason went
    only into telemetry, so a photo taken when the door opened reached the cloud as "why unknown"."""
    dev = make_device(fresh_mosquitto, serial, 6000)
    fresh_mosquitto.stop()
    door = dev.wake(wake="door")  # the photo is taken, the broker is away: queued on flash
    assert door["error"] and len(dev.queued()) == 1
    fresh_mosquitto.start()
    w = watch(fresh_mosquitto, f"mailcam/v1/{serial}/capture")
    later = dev.wake(wake="timer")  # a timer wake after the backoff: no new photo, the door's goes out
    assert later["error"] is None and later["captures"] == []
    w.wait(lambda ms: len(captures(ms)) == 1)
    (h, _), = captures(w.messages).values()
    assert (h["cid"], h["wake"]) == (door["captures"][0], "door")


def test_wifi_failure_keeps_capture_and_rescans_next_time(make_device, mosquitto, serial, watch):
    dev = make_device(mosquitto, serial, 8000)
    dev.wake()  # remembers channel/BSSID
    failed = dev.wake(wifi_ok=False, wake="door")
    assert failed["error"].startswith("wifi") and failed["sleep_s"] == 60 and len(dev.queued()) == 1
    w = watch(mosquitto, f"mailcam/v1/{serial}/capture")
    ok = dev.wake(wifi_ok=True, wake="timer")
    assert ok["wifi_mode"] == "scan" and ok["error"] is None and dev.queued() == []
    w.wait(lambda ms: failed["captures"][0] in captures(ms))


def test_interrupted_upload_resumes_without_resending_acknowledged_chunks(
    make_device, mosquitto, serial, watch
):
    """Regression: a chunk whose PUBLISH failed half-way was recorded as acknowledged and never re-sent."""
    dev = make_device(mosquitto, serial, 65536, chunk_size=4096, broker={
        "host": mosquitto.host, "port": mosquitto.port, "timeout_ms": 3000, "window": 4})
    w = watch(mosquitto, f"mailcam/v1/{serial}/capture")
    cut = dev.wake(drop_after_publishes=10)  # windows 0-3 and 4-7 acknowledged, then the link dies
    assert cut["error"] and len(dev.queued()) == 1
    resumed = dev.wake(drop_after_publishes=0)
    assert resumed["error"] is None and dev.queued() == []
    cid = cut["captures"][0]
    w.wait(lambda ms: cid in captures(ms))
    seen = Counter(h["i"] for h, _, _ in chunks(w.messages, cid))
    assert all(seen[i] == 1 for i in range(8)), seen
    assert all(seen[i] >= 1 for i in range(16))
    redelivered = [m for h, _, m in chunks(w.messages, cid) if h["i"] >= 8]
    assert captures(w.messages)[cid][1] == dev.jpeg and redelivered


def test_bad_config_sleeps_safely_and_reports_the_error_later(make_device, mosquitto, serial, watch):
    dev = make_device(mosquitto, serial, 2000, chunk_size="big")
    bad = dev.wake()
    assert bad["error"].startswith("config: chunk_size") and bad["sleep_s"] == 3600
    assert dev.slept["holds"] == {"32": 1, "4": 0}
    (dev.dir / "config.json").write_text("{not json")
    dev.sim["quiet"] = False
    dev.write = lambda: None  # keep the broken file
    assert dev.wake()["error"].startswith("config: config.json is not valid JSON")


def test_low_battery_sleeps_longer_without_flash(make_device, mosquitto, serial):
    dev = make_device(mosquitto, serial, 2000, camera={"flash": True},
                      low_battery={"mv": 3500, "interval_s": 43200})
    low = dev.wake(battery_mv=3300)
    assert low["low_battery"] and low["sleep_s"] == 43200 and not dev.slept["flash_used"]
    normal = dev.wake(battery_mv=4000, wake="door")
    assert not normal["low_battery"] and normal["sleep_s"] == 1800 and dev.slept["flash_used"]


def test_deep_sleep_powers_camera_down_and_holds_flash_low(make_device, mosquitto, serial):
    dev = make_device(mosquitto, serial, 2000, door={"pin": 13, "level": 0})
    dev.wake()
    s = dev.slept
    assert s["holds"] == {"32": 1, "4": 0}  # PWDN high = OV2640 off; flash LED gate held low
    assert s["pulldowns"] == [2, 12, 14, 15] and s["wake_pin"] == 13 and s["wake_level"] == 0
    assert not s["camera_on"] and not s["wifi_on"] and s["ms"] == 1800 * 1000 and s["wdt_ms"] == 60000
