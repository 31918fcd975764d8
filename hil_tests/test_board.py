"""End-to-end checks of one board (real or virtual): what a wake puts on the broker, and that it sleeps."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from mcam import protocol

from hil_tests.boards import BrokerAddress, RealBoard, VirtualBoard, Watcher, publish_retained

Board = RealBoard | VirtualBoard
Watch = Callable[[str], Watcher]

# A single Li-ion cell behind the divider: anything outside this is a wiring or calibration fault.
BATTERY_MV = tuple(int(v) for v in os.environ.get("MAILCAM_HIL_BATTERY_MV", "3000-4400").split("-"))


def complete_captures(messages: list[paho.MQTTMessage]) -> dict[str, tuple[dict, bytes]]:
    """cid -> (header, reassembled image) for every capture whose chunks have all arrived."""
    parts: dict[str, dict[int, bytes]] = {}
    heads: dict[str, dict] = {}
    for m in messages:
        if m.topic.endswith("/capture"):
            header, body = protocol.decode_chunk(m.payload)
            parts.setdefault(header["cid"], {})[header["i"]] = bytes(body)
            heads[header["cid"]] = header
    return {
        cid: (heads[cid], b"".join(got[i] for i in range(heads[cid]["n"])))
        for cid, got in parts.items()
        if len(got) == heads[cid]["n"]
    }


def telemetry(messages: list[paho.MQTTMessage]) -> list[dict]:
    return [protocol.decode_telemetry(m.payload) for m in messages if m.topic.endswith("/telemetry")]


def test_wake_publishes_a_complete_chunked_capture_whose_sha256_matches(board: Board, watch: Watch) -> None:
    w = watch(protocol.topic(board.serial, protocol.CAPTURE))
    board.wake()
    w.wait(lambda ms: len(complete_captures(ms)) == 1, timeout=60)
    (header, image), = complete_captures(w.messages).values()
    assert hashlib.sha256(image).hexdigest() == header["sha"]
    assert len(image) == header["size"] and image.startswith(b"\xff\xd8") and image.rstrip(b"\0").endswith(b"\xff\xd9")
    chunk = board.config.get("chunk_size", protocol.DEFAULT_CHUNK_SIZE)
    assert header["n"] == protocol.chunk_count(header["size"], chunk) > 1
    assert header["cid"].startswith(board.serial + "-") and header["trig"] == protocol.AUTOMATIC
    assert all(m.qos == 1 for m in w.messages)
    if board.kind == "virtual":
        assert image == board.jpeg


def test_telemetry_arrives_with_a_plausible_battery_voltage(board: Board, watch: Watch) -> None:
    w = watch(protocol.topic(board.serial, protocol.TELEMETRY))
    board.wake()
    w.wait(lambda ms: len(telemetry(ms)) >= 1, timeout=60)
    report = telemetry(w.messages)[0]
    low, high = BATTERY_MV
    assert low <= report["bat"] <= high, f"battery {report['bat']} mV is outside {low}..{high} mV"
    assert report["wake"] == "power_on" and report["err"] is None and report["pending"] == 0
    assert report["boot"] >= 1 and report["fw"]


def test_retained_trigger_produces_a_manual_capture_with_its_tid(
    board: Board, watch: Watch, broker: BrokerAddress
) -> None:
    cmd_topic = protocol.topic(board.serial, protocol.CMD)
    tid = "hil-" + board.serial[-8:]
    user, password = os.environ.get("MAILCAM_HIL_WATCH_USER"), os.environ.get("MAILCAM_HIL_WATCH_PASSWORD")
    publish_retained(broker, cmd_topic, protocol.encode_cmd(tid, int(time.time()) + 600), user=user, password=password)
    try:
        w = watch(protocol.topic(board.serial, protocol.CAPTURE))
        board.wake()
        w.wait(lambda ms: any(h["tid"] == tid for h, _ in complete_captures(ms).values()), timeout=90)
        manual = [(h, image) for h, image in complete_captures(w.messages).values() if h["tid"] == tid]
        assert len(manual) == 1
        header, image = manual[0]
        assert header["trig"] == protocol.MANUAL and hashlib.sha256(image).hexdigest() == header["sha"]
    finally:
        publish_retained(broker, cmd_topic, b"", user=user, password=password)  # what the gateway does


def test_board_goes_to_deep_sleep_after_the_upload(board: Board, watch: Watch) -> None:
    w = watch(f"{protocol.TOPIC_ROOT}/{board.serial}/#")
    board.wake()
    w.wait(lambda ms: complete_captures(ms) and telemetry(ms), timeout=60)
    sleep = board.wait_asleep()
    assert sleep.asleep, f"the board is still awake: {sleep.details}"
    if board.kind == "virtual":
        assert sleep.ms == board.config["wake_interval_s"] * 1000
        assert not sleep.details["camera_on"] and not sleep.details["wifi_on"]
        assert sleep.details["holds"] == {"32": 1, "4": 0}  # OV2640 powered down, flash LED held off
    # No LWT: a planned sleep ends with a clean DISCONNECT.
    assert not [m for m in w.messages if m.topic.endswith("/" + protocol.STATUS)]
