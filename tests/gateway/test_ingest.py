"""Validation, reassembly and dead letters: the Ingestor on a real SQLite store (no broker needed)."""

from __future__ import annotations

import random

import pytest
from mcam import protocol

from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, DELIVERED, TELEMETRY, Spool
from gateway.subscriber import Ingestor
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path, clock) -> Spool:
    s = Spool(tmp_path / "gw.db", clock=clock)
    s.replace_devices([("dev1", 3600), ("dev2", 3600)])
    yield s
    s.close()


def make_ingestor(store: Spool, **overrides) -> Ingestor:
    settings = GatewaySettings(data_dir=store.path.parent, max_image_bytes=64 * 1024, **overrides)
    return Ingestor(settings, store)


def feed(ingestor: Ingestor, topic: str, payload: bytes) -> str:
    with ingestor.store.transaction():
        return ingestor.handle(topic.encode(), payload)


def reasons(store: Spool) -> list[str]:
    return [letter.reason for letter in reversed(store.dead_letters())]


CAP = protocol.topic("dev1", protocol.CAPTURE)


def test_chunks_out_of_order_and_repeated_make_one_capture(store):
    ingestor = make_ingestor(store)
    image = fake_jpeg(20_000, seed=1)
    cid, payloads = chunks_of(image, chunk_size=4096)
    order = list(range(len(payloads))) * 2
    random.Random(7).shuffle(order)
    outcomes = [feed(ingestor, CAP, payloads[i]) for i in order]
    assert outcomes.count("completed") == 1
    assert feed(ingestor, CAP, payloads[0]) == "duplicate"  # a late repeat after completion
    items = store.pending(10)
    assert [(i.kind, i.key) for i in items] == [(CAPTURE, cid)]
    assert store.image("dev1", cid) == image
    assert items[0].meta["trigger_type"] == "automatic"
    assert store.outbox_stats()["partials"] == 0
    assert store.dead_letters() == []


def test_partial_capture_survives_a_restart(tmp_path, store, clock):
    image = fake_jpeg(10_000, seed=2)
    cid, payloads = chunks_of(image, chunk_size=4096)
    feed(make_ingestor(store), CAP, payloads[0])
    feed(make_ingestor(store), CAP, payloads[2])
    store.close()
    reopened = Spool(tmp_path / "gw.db", clock=clock)
    try:
        assert feed(make_ingestor(reopened), CAP, payloads[1]) == "completed"
        assert reopened.image("dev1", cid) == image
    finally:
        reopened.close()


def test_stale_partial_is_dead_lettered(store, clock):
    ingestor = make_ingestor(store)
    cid, payloads = chunks_of(fake_jpeg(10_000, seed=3), chunk_size=4096)
    feed(ingestor, CAP, payloads[0])
    clock.now += 50
    assert store.expire_partials(timeout_s=60) == 0
    clock.now += 20
    assert store.expire_partials(timeout_s=60) == 1
    letter = store.dead_letters()[0]
    assert (letter.reason, letter.key, letter.serial) == ("incomplete_capture", cid, "dev1")
    assert "1 of 3 chunks" in letter.detail
    assert store.outbox_stats()["partials"] == 0
    assert store.used_bytes == 0


def test_bad_messages_are_dead_lettered_with_reason_and_size_while_good_ones_flow(store):
    ingestor = make_ingestor(store)
    good_cid, good = chunks_of(fake_jpeg(5000, seed=4), chunk_size=4096)
    _, png = chunks_of(b"\x89PNG" + b"x" * 3000, chunk_size=4096)
    _, huge = chunks_of(fake_jpeg(100_000, seed=5), chunk_size=4096)
    _, tampered = chunks_of(fake_jpeg(5000, seed=6), chunk_size=4096)
    tampered[1] = tampered[1][:-3] + b"abc"
    bad = [
        ("mailcam/v1/dev1/capture/extra", b"x" * 10),
        ("other/topic", b"hello"),
        (CAP, b"no header here"),
        (CAP, b'{"v":1,"cid":"x"}\n\xff\xd8'),
        (CAP, png[0]),
        (CAP, huge[0]),
        (protocol.topic("dev1", protocol.TELEMETRY), b"{not json"),
        (CAP, tampered[0]),
        (CAP, tampered[1]),
    ]
    for topic, payload in bad:
        feed(ingestor, topic, payload)
    for payload in good:
        feed(ingestor, CAP, payload)
    assert reasons(store) == [
        "bad_topic", "bad_topic", "malformed_chunk", "malformed_chunk", "not_jpeg", "too_large",
        "malformed_telemetry", "sha256_mismatch",
    ]
    sizes = [letter.size for letter in reversed(store.dead_letters())]
    assert sizes[:3] == [10, 5, 14]
    assert [(i.kind, i.key) for i in store.pending(10)] == [(CAPTURE, good_cid)]
    assert store.counters()["dead_lettered:bad_topic"] == 2


def test_inconsistent_chunk_headers_are_refused(store):
    ingestor = make_ingestor(store)
    cid, first = chunks_of(fake_jpeg(9000, seed=7), chunk_size=4096, cid="same-id")
    _, other = chunks_of(fake_jpeg(9000, seed=8), chunk_size=4096, cid="same-id")
    feed(ingestor, CAP, first[0])
    assert feed(ingestor, CAP, other[1]) == "conflict"
    assert reasons(store) == ["inconsistent_chunk"]


def test_unknown_devices_accepted_until_the_cloud_list_is_known(tmp_path, clock):
    fresh = Spool(tmp_path / "fresh.db", clock=clock)
    try:
        _, payloads = chunks_of(fake_jpeg(3000, seed=9), chunk_size=4096)
        assert feed(make_ingestor(fresh), protocol.topic("anyone", protocol.CAPTURE), payloads[0]) == "completed"
    finally:
        fresh.close()


def test_manual_capture_queues_a_delivered_report_first(store):
    ingestor = make_ingestor(store)
    cid, payloads = chunks_of(fake_jpeg(9000, seed=10), chunk_size=4096, trig="manual", tid="trg_1")
    for payload in payloads + payloads[:1]:
        feed(ingestor, CAP, payload)
    items = store.pending(10)
    assert [(i.kind, i.key) for i in items] == [(DELIVERED, "trg_1"), (CAPTURE, cid)]
    assert items[1].meta["trigger_id"] == "trg_1"


def test_telemetry_becomes_a_cloud_body_in_volts(store):
    ingestor = make_ingestor(store)
    payload = protocol.encode_telemetry(ts=1_700_000_000, bat=3712, rssi=-71, wake="door", awake_ms=850,
                                        fw="1.2.0", boot=12, err=None, pending=1, cfgv=3, cfge="ver 4: no",
                                        ota={"rid": 7, "ver": "1.3.0", "st": "downloading", "pct": 40})
    feed(ingestor, protocol.topic("dev2", protocol.TELEMETRY), payload)
    (item,) = store.pending(10)
    assert item.kind == TELEMETRY
    assert item.meta == {
        "serial_number": "dev2", "battery_voltage": 3.712, "rssi": -71, "wake_reason": "door", "awake_ms": 850,
        "firmware_version": "1.2.0", "boot_count": 12, "last_error": None, "pending_captures": 1,
        "timestamp": 1_700_000_000, "settings_version": 3, "settings_error": "ver 4: no",
        "firmware_update": {"release_id": 7, "version": "1.3.0", "state": "downloading", "percent": 40, "reason": None},
    }


def test_outbox_full_drops_oldest_telemetry_never_captures(store):
    ingestor = make_ingestor(store)
    for ts in range(10):
        payload = protocol.encode_telemetry(ts=ts, bat=3700, rssi=-60, wake="timer", awake_ms=1, fw="1", boot=1,
                                            err=None, pending=0)
        feed(ingestor, protocol.topic("dev1", protocol.TELEMETRY), payload)
    cid, payloads = chunks_of(fake_jpeg(8000, seed=11), chunk_size=4096)
    for payload in payloads:
        feed(ingestor, CAP, payload)
    target = store.used_bytes - 1000
    dropped = store.drop_oldest_telemetry(target)
    kept = store.pending(100)
    assert dropped >= 1
    assert kept[0].key == f"dev1:{dropped}"  # the oldest went first
    assert any(i.key == cid for i in kept)
    assert store.drop_oldest_telemetry(0) == 10 - dropped
    assert [i.kind for i in store.pending(100)] == [CAPTURE]
    assert store.counters()["dropped_telemetry"] == 10
