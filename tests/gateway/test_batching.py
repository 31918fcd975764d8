"""The batched ingest path: chunk rows buffered per transaction, the in-memory partial index, reassembly
from memory, rollbacks, the inbox and coalesced PUBACKs (real SQLite, real Mosquitto, no mocks)."""

from __future__ import annotations

import hashlib
import threading
import tracemalloc
import uuid

import paho.mqtt.client as paho
import pytest
from mcam import protocol
from paho.mqtt.enums import CallbackAPIVersion

from gateway.inbox import Inbox, Incoming
from gateway.mqtt_link import MqttLink
from gateway.mqtt_process import ProcessLink
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, Spool
from gateway.subscriber import Ingestor
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg, subscribed, wait_until

SERIALS = [f"dev{k}" for k in range(5)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def open_store(path, clock) -> Spool:
    store = Spool(path, clock=clock)
    store.replace_devices([(serial, 3600) for serial in SERIALS])
    return store


@pytest.fixture
def store(tmp_path, clock) -> Spool:
    s = open_store(tmp_path / "gw.db", clock)
    yield s
    s.close()


def ingestor_for(store: Spool) -> Ingestor:
    return Ingestor(GatewaySettings(data_dir=store.path.parent, max_image_bytes=64 * 1024), store)


def messages(serial: str, payloads: list[bytes]) -> list[Incoming]:
    topic = protocol.topic(serial, protocol.CAPTURE).encode()
    return [Incoming(1, k + 1, 1, topic, payload) for k, payload in enumerate(payloads)]


def captures(store: Spool) -> list[tuple[str, str]]:
    return [(item.serial, item.key) for item in store.pending(1000) if item.kind == CAPTURE]


def chunk_rows(store: Spool, serial: str, cid: str) -> int:
    with store.transaction() as db:
        return db.execute("SELECT COUNT(*) FROM chunks WHERE serial = ? AND cid = ?", (serial, cid)).fetchone()[0]


def test_capture_whose_chunks_all_arrive_in_one_batch_with_repeats(store):
    image = fake_jpeg(20_000, seed=1)
    cid, payloads = chunks_of(image, chunk_size=4096)
    batch = messages("dev1", [payloads[2], payloads[0], payloads[2], *payloads[1:], payloads[0]])
    ingestor_for(store).commit_batch(batch)
    assert captures(store) == [("dev1", cid)]
    assert store.image("dev1", cid) == image
    assert chunk_rows(store, "dev1", cid) == 1  # every chunk in the completing transaction: one row, the image
    counters = store.counters()
    assert counters["ingested_messages"] == len(batch)
    assert counters["duplicate_chunks"] == 3
    assert counters["captures_assembled"] == 1
    assert store.outbox_stats()["partials"] == 0
    assert store.used_bytes == len(image) + 200  # chunk bytes + the outbox row's allowance


def test_capture_spread_over_batches_and_a_restart(tmp_path, clock):
    image = fake_jpeg(30_000, seed=2)
    cid, payloads = chunks_of(image, chunk_size=4096)  # 8 chunks
    store = open_store(tmp_path / "gw.db", clock)
    ingestor = ingestor_for(store)
    ingestor.commit_batch(messages("dev2", [payloads[5], payloads[0]]))
    ingestor.commit_batch(messages("dev2", [payloads[1], payloads[5], payloads[3]]))
    assert captures(store) == []
    store.close()

    store = open_store(tmp_path / "gw.db", clock)  # the index of stored chunks comes back from the file
    assert store.used_bytes == sum(len(protocol.decode_chunk(payloads[i])[1]) for i in (0, 1, 3, 5))
    ingestor = ingestor_for(store)
    ingestor.commit_batch(messages("dev2", [payloads[3], payloads[2], payloads[4], payloads[6], payloads[7],
                                            payloads[0]]))
    assert captures(store) == [("dev2", cid)]
    assert store.image("dev2", cid) == image
    assert chunk_rows(store, "dev2", cid) == 8
    assert store.counters()["duplicate_chunks"] == 3  # 5 again, then 3 and 0 after the restart
    ingestor.commit_batch(messages("dev2", [payloads[4]]))  # a late repeat of a completed capture
    assert captures(store) == [("dev2", cid)]
    assert store.counters()["duplicate_chunks"] == 4
    store.close()


def test_a_capture_stored_as_one_row_is_read_quarantined_and_freed_like_one_stored_by_chunk(store):
    image = fake_jpeg(20_000, seed=7)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor_for(store).commit_batch(messages("dev1", payloads))
    assert chunk_rows(store, "dev1", cid) == 1
    assert store.used_bytes == len(image) + 200
    store.recount_bytes()
    assert store.used_bytes == len(image) + 200
    ingestor_for(store).commit_batch(messages("dev1", payloads[1:3]))  # late repeats: still duplicates
    assert store.counters()["duplicate_chunks"] == 2
    (item,) = store.pending(10)
    store.quarantine(item, "test", "kept with its image")
    assert chunk_rows(store, "dev1", cid) == 0
    assert store.used_bytes == 0
    (letter,) = store.dead_letters()
    assert letter.kept_bytes == len(image)


def test_capture_whose_rows_were_written_mid_transaction_keeps_one_row_per_chunk(store):
    """A savepoint (or another capture given up) writes the buffered rows before the capture completes:
    those rows stay, the rest are added beside them, and the image reads back whole."""
    image = fake_jpeg(12_000, seed=8)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor = ingestor_for(store)
    topic = protocol.topic("dev0", protocol.CAPTURE).encode()
    with store.transaction():
        assert ingestor.handle(topic, payloads[0]) == "stored"
        with store.savepoint():  # writes chunk 0 before and chunk 1 after
            assert ingestor.handle(topic, payloads[1]) == "stored"
        assert ingestor.handle(topic, payloads[2]) == "completed"
    assert chunk_rows(store, "dev0", cid) == 3
    assert store.image("dev0", cid) == image
    assert store.used_bytes == len(image) + 200


def test_interleaved_devices_in_one_batch_each_complete(store):
    images, batch = {}, []
    per_device = []
    for k, serial in enumerate(SERIALS):
        image = fake_jpeg(12_000 + 1000 * k, seed=10 + k)
        cid, payloads = chunks_of(image, chunk_size=2048)
        images[(serial, cid)] = image
        per_device.append(messages(serial, payloads))
    for row in range(max(len(m) for m in per_device)):  # device 0 chunk 0, device 1 chunk 0, ...
        batch += [m[row] for m in per_device if row < len(m)]
    ingestor_for(store).commit_batch(batch)
    assert sorted(captures(store)) == sorted(images)
    for (serial, cid), image in images.items():
        assert store.image(serial, cid) == image


def test_bad_sha_in_one_batch_is_dead_lettered_and_frees_its_chunks(store):
    image = fake_jpeg(10_000, seed=3)
    cid, payloads = chunks_of(image, chunk_size=4096)
    body_sha = hashlib.sha256(b"something else").hexdigest()
    bad = [p.replace(hashlib.sha256(image).hexdigest().encode(), body_sha.encode()) for p in payloads]
    ingestor_for(store).commit_batch(messages("dev3", bad))
    assert captures(store) == []
    assert [letter.reason for letter in store.dead_letters()] == ["sha256_mismatch"]
    assert chunk_rows(store, "dev3", cid) == 0
    assert store.used_bytes == 0


def test_a_batch_of_whole_captures_holds_one_joined_image_at_a_time(store):
    """Memory (issue 18): a batch of 256 4 KB chunks completing 32 captures joined every image when it
    completed and kept it until the COMMIT wrote its row: a megabyte more than the batch's payloads,
    at the gateway's peak. Joined as each row is written, one image is alive at a time."""
    batch = []
    images = {}
    for k in range(32):
        serial, image = SERIALS[k % len(SERIALS)], fake_jpeg(32 * 1024, seed=k)
        cid, payloads = chunks_of(image, chunk_size=4096)
        images[serial, cid] = image
        batch += messages(serial, payloads)
    ingestor = ingestor_for(store)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ingestor.commit_batch(batch)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert len(captures(store)) == 32
    for (serial, cid), image in images.items():
        assert store.image(serial, cid) == image
    assert peak < 16 * 32 * 1024, f"{peak} bytes more during the commit"  # half the images; before: 1.2 MB


@pytest.mark.parametrize(("image", "whole"), [
    (fake_jpeg(8192, seed=7) + bytes(4096), True),  # the last chunk is padding alone: EOI ends the one before
    (fake_jpeg(8193, seed=8), True),  # EOI split over the last two chunks (FF | D9)
    (fake_jpeg(8193, seed=9)[:-1] + b"\x00", False),  # no EOI
    (fake_jpeg(8192, seed=7)[:-2] + bytes(4098), False),  # no EOI before the padding
], ids=["padding-chunk", "split-eoi", "no-eoi", "padding-without-eoi"])
def test_the_jpeg_markers_are_found_across_chunk_boundaries(store, image, whole):
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor_for(store).commit_batch(messages("dev1", payloads))
    assert captures(store) == ([("dev1", cid)] if whole else [])
    assert [letter.reason for letter in store.dead_letters()] == ([] if whole else ["not_jpeg"])


def test_rolled_back_transaction_leaves_no_trace_in_the_index(store):
    image = fake_jpeg(12_000, seed=4)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor = ingestor_for(store)
    topic = protocol.topic("dev4", protocol.CAPTURE).encode()
    with pytest.raises(RuntimeError), store.transaction():
        for payload in payloads[:2]:
            assert ingestor.handle(topic, payload) == "stored"
        raise RuntimeError("the commit never happens")
    assert chunk_rows(store, "dev4", cid) == 0
    assert store.used_bytes == 0
    with store.transaction():  # the same chunks are new again, not "duplicate"
        assert [ingestor.handle(topic, p) for p in payloads] == ["stored", "stored", "completed"]
    assert store.image("dev4", cid) == image


def test_savepoint_rollback_undoes_only_its_own_chunks(store):
    image = fake_jpeg(12_000, seed=5)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor = ingestor_for(store)
    topic = protocol.topic("dev0", protocol.CAPTURE).encode()
    with store.transaction():
        assert ingestor.handle(topic, payloads[0]) == "stored"
        with pytest.raises(RuntimeError), store.savepoint():
            assert ingestor.handle(topic, payloads[1]) == "stored"
            raise RuntimeError("this message only")
        assert ingestor.handle(topic, payloads[2]) == "stored"
    assert chunk_rows(store, "dev0", cid) == 2
    with store.transaction():
        assert ingestor.handle(topic, payloads[0]) == "duplicate"
        assert ingestor.handle(topic, payloads[1]) == "completed"
    assert store.image("dev0", cid) == image


def test_inbox_is_bounded_and_hands_over_whole_batches_in_order():
    inbox = Inbox(3)
    items = [Incoming(1, k, 1, b"t", b"p") for k in range(6)]
    assert all(inbox.put(item, timeout=0.1) for item in items[:3])
    assert not inbox.put(items[3], timeout=0.05)  # full: the producer is held back
    assert inbox.get_batch(2, timeout=0.1) == items[:2]
    assert inbox.put(items[3], timeout=0.1) and inbox.put(items[4], timeout=0.1)
    blocked = threading.Thread(target=inbox.put, args=(items[5], 5.0))
    blocked.start()  # full again: waits until the consumer takes something
    assert inbox.get_batch(10, timeout=0.1) == items[2:5]
    blocked.join(5)
    assert inbox.get_batch(10, timeout=1.0) == [items[5]]
    assert inbox.get_batch(10, timeout=0.01) == []


def test_inbox_takes_a_frame_whole_while_it_has_room_and_holds_the_producer_back_when_full():
    """Frames from the MQTT process go in whole (order kept, never split); a full inbox stops the
    reader, so the socket pair and then TCP push back on the broker."""
    inbox = Inbox(4)
    frame = [Incoming(1, k, 1, b"t", b"p") for k in range(3)]
    more = [Incoming(1, k, 1, b"t", b"p") for k in range(3, 6)]
    assert inbox.put_many(frame, timeout=0.1)
    assert inbox.put_many(more, timeout=0.1)  # 3 < 4: room, so the whole frame (6, one frame over)
    assert len(inbox) == 6
    assert not inbox.put_many([Incoming(1, 9, 1, b"t", b"p")], timeout=0.05)  # full
    assert inbox.get_batch(10, timeout=0.1) == frame + more


def test_a_lingering_consumer_takes_what_follows_the_first_item_in_the_same_batch():
    """The MQTT process's frames: a capture's chunks arrive within a millisecond of each other and
    should travel as one frame, not eight; a lone message still goes once the linger is over."""
    inbox = Inbox(16)
    items = [Incoming(1, k, 1, b"t", b"p") for k in range(5)]
    got: list[list[Incoming]] = []
    inbox.put(items[0], timeout=0.1)
    consumer = threading.Thread(target=lambda: got.append(inbox.get_batch(4, timeout=1, linger=30)))
    consumer.start()
    wait_until(lambda: inbox._getters == 1, 10, "the consumer lingering")
    for item in items[1:4]:
        inbox.put(item, timeout=0.1)
    consumer.join(10)
    assert got == [items[:4]]
    inbox.put(items[4], timeout=0.1)
    assert inbox.get_batch(4, timeout=1, linger=0.01) == [items[4]]


def test_while_the_previous_batch_syncs_the_consumer_waits_for_a_full_batch():
    """Many small transactions cost far more than one full one, and the disk is busy anyway: while the
    previous batch waits for its fsync, the ingest thread takes a full batch, or what is there once the
    fsync is done (the ack thread pokes the inbox)."""
    inbox = Inbox(16)
    items = [Incoming(1, k, 1, b"t", b"p") for k in range(7)]
    syncing = True
    got: list[list[Incoming]] = []

    def take() -> None:
        got.append(inbox.get_batch(5, timeout=30, fill_while=lambda: syncing))

    for item in items[:3]:
        inbox.put(item, timeout=0.1)
    consumer = threading.Thread(target=take)
    consumer.start()
    wait_until(lambda: inbox._getters == 1, 10, "the consumer waiting")  # 3 of 5 there: it waits
    inbox.put(items[3], timeout=0.1)
    inbox.put(items[4], timeout=0.1)
    consumer.join(10)
    assert got == [items[:5]]

    inbox.put(items[5], timeout=0.1)
    inbox.put(items[6], timeout=0.1)
    consumer = threading.Thread(target=take)
    consumer.start()
    wait_until(lambda: inbox._getters == 1, 10, "the consumer waiting")
    syncing = False
    inbox.poke()  # the fsync finished
    consumer.join(10)
    assert got[1] == items[5:]


@pytest.mark.parametrize("link_class", [MqttLink, ProcessLink], ids=["in-process", "child-process"])
def test_coalesced_pubacks_release_exactly_the_acked_messages(tmp_path, fresh_mosquitto, link_class):
    """Ack the first half as one write; the broker redelivers exactly the other half to the session."""
    mosquitto = fresh_mosquitto  # its own broker: no other test's retained messages on it
    settings = GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port, data_dir=tmp_path,
                               client_id=f"gw-acks-{uuid.uuid4().hex[:8]}")
    link = link_class(settings)
    link.start()
    try:
        assert link.connected.wait(10)
        wait_until(lambda: subscribed(link), 10, "subscription")
        publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                protocol=paho.MQTTv311)
        publisher.connect(mosquitto.host, mosquitto.port, 30)
        publisher.loop_start()
        topic = protocol.topic("dev1", protocol.STATUS)
        infos = [publisher.publish(topic, f"m{k}".encode(), qos=1) for k in range(16)]
        for info in infos:
            info.wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()
        wait_until(lambda: len(link.inbox) >= 16, 10, "16 messages in the inbox")
        received = link.inbox.get_batch(100, timeout=1)
        assert [m.payload for m in received] == [f"m{k}".encode() for k in range(16)]
        assert link.ack(received[:8]) == 8
    finally:
        link.close()
    again = link_class(settings)
    again.start()
    try:
        wait_until(lambda: len(again.inbox) >= 8, 10, "the unacked half redelivered")
        redelivered = again.inbox.get_batch(100, timeout=1)
        assert [m.payload for m in redelivered] == [f"m{k}".encode() for k in range(8, 16)]
        assert again.ack(redelivered) == 8
    finally:
        again.close()


def telemetry(serial: str, ts: int) -> Incoming:
    payload = protocol.encode_telemetry(ts=ts, bat=3900, rssi=-60, wake="timer", awake_ms=900, fw="1.0.0", boot=1)
    return Incoming(1, 1, 1, protocol.topic(serial, protocol.TELEMETRY).encode(), payload)


def test_outbox_rows_buffered_in_a_batch_keep_their_order_and_readers_inside_it_see_them(store):
    """The outbox rows of a batch are written together before COMMIT, in the order they were enqueued
    (a device's items never overtake each other); anything reading the outbox inside the transaction
    sees them already."""
    image = fake_jpeg(9000, seed=11)
    cid, payloads = chunks_of(image, chunk_size=4096, trig="manual", tid="t-1")
    batch = [telemetry("dev1", 1_800_000_000), *messages("dev1", payloads), telemetry("dev1", 1_800_000_060)]
    ingestor = ingestor_for(store)
    with store.transaction():
        for message in batch:
            ingestor.handle(message.topic, message.payload)
        inside = [(item.kind, item.key) for item in store.pending(10)]
    expected = [("telemetry", "dev1:1800000000"), ("delivered", "t-1"), ("capture", cid),
                ("telemetry", "dev1:1800000060")]
    assert inside == expected
    assert [(item.kind, item.key) for item in store.pending(10)] == expected
    assert [item.id for item in store.pending(10)] == sorted(item.id for item in store.pending(10))


def test_a_rolled_back_batch_leaves_no_outbox_or_completed_row(store):
    image = fake_jpeg(9000, seed=12)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor = ingestor_for(store)
    topic = protocol.topic("dev2", protocol.CAPTURE).encode()
    with pytest.raises(RuntimeError), store.transaction():
        assert [ingestor.handle(topic, p) for p in payloads][-1] == "completed"
        ingestor.handle(telemetry("dev2", 1_800_000_000).topic, telemetry("dev2", 1_800_000_000).payload)
        raise RuntimeError("the commit never happens")
    assert store.pending(10) == []
    assert store.used_bytes == 0
    with store.transaction() as db:
        assert db.execute("SELECT COUNT(*) FROM completed").fetchone()[0] == 0
    ingestor.commit_batch(messages("dev2", payloads))  # not "duplicate": nothing of it was kept
    assert captures(store) == [("dev2", cid)]
    assert store.image("dev2", cid) == image


def test_a_repeat_of_a_capture_completed_earlier_in_the_same_batch_is_a_duplicate(store):
    """Its ``completed`` row is still buffered when the repeat comes: the repeat must not start a new capture."""
    image = fake_jpeg(9000, seed=13)
    cid, payloads = chunks_of(image, chunk_size=4096)
    ingestor_for(store).commit_batch(messages("dev3", [*payloads, payloads[1], payloads[0]]))
    assert captures(store) == [("dev3", cid)]
    assert store.counters()["duplicate_chunks"] == 2
    assert store.outbox_stats()["partials"] == 0
    store.close()
    reopened = open_store(store.path, ManualClock())  # and after a restart, from the table
    try:
        ingestor_for(reopened).commit_batch(messages("dev3", [payloads[2]]))
        assert reopened.counters()["duplicate_chunks"] == 3
        assert reopened.outbox_stats()["partials"] == 0
    finally:
        reopened.close()
