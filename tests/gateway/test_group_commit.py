"""Group commit: the spool's commits are synced to disk by one fsync of the WAL for many, and the gateway
acknowledges a message to the broker only after the fsync covering its commit (real SQLite, real Mosquitto).

The disk is stood in for at one point only: `gateway.spool.walsync.fsync`, so a test can hold an fsync
open (a slow disk) or make it fail (a dying one) and watch what the gateway does meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from mcam import protocol
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt_link import MqttLink
from gateway.settings import GatewaySettings
from gateway.spool import Spool, walsync
from gateway.subscriber import Ingestor, IngestThread
from tests.gateway.kit import subscribed, wait_until


class Disk:
    """Stands in for fsync: counts calls, can hold them until released, or fail them."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.open = threading.Event()
        self.open.set()
        self.error: OSError | None = None

    def fsync(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        assert self.open.wait(30), "the test never released the disk"
        if self.error:
            raise self.error
        os.fsync(fd)


@pytest.fixture
def disk(monkeypatch) -> Disk:
    d = Disk()
    monkeypatch.setattr(walsync, "fsync", d.fsync)
    return d


def test_a_transaction_returns_only_after_its_commit_is_synced(tmp_path, disk):
    store = Spool(tmp_path / "gw.db")
    try:
        before = disk.calls
        store.set_kv("k", "v")
        assert disk.calls == before + 1
        assert store.get_kv("k") == "v"
    finally:
        store.close()


def test_one_fsync_makes_many_deferred_commits_durable(tmp_path, disk):
    store = Spool(tmp_path / "gw.db")
    try:
        before = disk.calls
        for k in range(5):
            with store.transaction(durable=False) as db:
                db.execute("INSERT INTO kv(key, value) VALUES (?, ?)", (f"k{k}", "v"))
        assert disk.calls == before  # committed (another connection sees them), none synced yet
        other = sqlite3.connect(store.path)
        assert other.execute("SELECT COUNT(*) FROM kv WHERE key LIKE 'k%'").fetchone()[0] == 5
        other.close()
        store.wait_durable(store.commit_ticket())
        assert disk.calls == before + 1
        store.wait_durable(store.commit_ticket())  # nothing new: no second fsync
        assert disk.calls == before + 1
    finally:
        store.close()


def test_a_failed_fsync_fails_every_later_wait_too(tmp_path, disk):
    """After a failed fsync the kernel may have dropped the pages: no later commit may be called durable."""
    store = Spool(tmp_path / "gw.db")
    try:
        disk.error = OSError(5, "Input/output error")
        with pytest.raises(OSError):
            store.set_kv("k", "v")
        disk.error = None
        with pytest.raises(OSError, match="could not be synced"):
            store.set_kv("k2", "v")
    finally:
        store.close()


def test_a_commit_whose_wal_was_folded_into_the_database_by_closing_counts_as_durable(tmp_path, disk):
    """The last connection's close checkpoints the WAL into the database file, syncs it and deletes the
    WAL: a thread still waiting to sync an earlier commit then has nothing left to sync, not an error."""
    store = Spool(tmp_path / "gw.db")
    with store.transaction(durable=False) as db:
        db.execute("INSERT INTO kv(key, value) VALUES ('k', 'v')")
    ticket = store.commit_ticket()
    store.close()
    assert not (tmp_path / "gw.db-wal").exists()
    store.wait_durable(ticket)
    reopened = Spool(tmp_path / "gw.db")
    try:
        assert reopened.get_kv("k") == "v"
    finally:
        reopened.close()


def test_weaker_synchronous_settings_make_no_fsync_of_their_own(tmp_path, disk):
    store = Spool(tmp_path / "gw.db", synchronous="NORMAL")
    try:
        store.set_kv("k", "v")
        assert disk.calls == 0
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, as asked
    finally:
        store.close()


def _telemetry(ts: int) -> bytes:
    return protocol.encode_telemetry(ts=ts, bat=3900, rssi=-60, wake="timer", awake_ms=900, fw="1.0.0", boot=1)


def _publish(mosquitto, topic: str, payloads: list[bytes]) -> None:
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                            protocol=paho.MQTTv311)
    publisher.connect(mosquitto.host, mosquitto.port, 30)
    publisher.loop_start()
    try:
        for info in [publisher.publish(topic, payload, qos=1) for payload in payloads]:
            info.wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _outbox_rows(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()


def _start(settings: GatewaySettings, store: Spool, **callbacks) -> tuple[MqttLink, IngestThread]:
    link = MqttLink(settings)
    ingest = IngestThread(link, Ingestor(settings, store), batch_max=32, outbox_max_bytes=10**9, **callbacks)
    ingest.start()
    link.start()
    assert link.connected.wait(10)
    wait_until(lambda: subscribed(link), 10, "subscription")
    return link, ingest


def _stop(link: MqttLink, ingest: IngestThread) -> None:
    ingest.stop()
    ingest.join(10)
    link.stop()


def _next_delivered(mosquitto, settings: GatewaySettings, marker_topic: str) -> list[bytes]:
    """Reconnect the gateway's session and list what the broker hands it before a fresh marker message
    (a session's queued messages come first, in order)."""
    link = MqttLink(settings)
    link.start()
    try:
        assert link.connected.wait(10)
        _publish(mosquitto, marker_topic, [b"marker"])
        got: list[bytes] = []

        def marker_seen() -> bool:
            batch = link.inbox.get_batch(100, timeout=0.2)
            link.ack(batch)  # the broker's in-flight window would hold the marker back otherwise
            got.extend(m.payload for m in batch)
            return b"marker" in got

        wait_until(marker_seen, 10, "the marker message")
        return got[: got.index(b"marker")]
    finally:
        link.stop()


def test_messages_committed_but_not_yet_synced_are_not_acknowledged(tmp_path, fresh_mosquitto, disk):
    """A disk that holds its fsync: the batches are committed (another connection sees them), the
    ingest thread goes on, and the broker still holds every message unacknowledged; once the fsync
    returns, the next messages are acknowledged and never redelivered."""
    mosquitto = fresh_mosquitto
    settings = GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port, data_dir=tmp_path,
                               client_id=f"gw-gc-{uuid.uuid4().hex[:8]}", validate_devices=False)
    store = Spool.open(settings)
    topic = protocol.topic("dev1", protocol.TELEMETRY)
    try:
        link, ingest = _start(settings, store)
        disk.entered.clear()
        disk.open.clear()  # the disk hangs from now on
        payloads = [_telemetry(1_700_000_000 + k) for k in range(20)]
        _publish(mosquitto, topic, payloads)
        wait_until(lambda: _outbox_rows(store.path) == 20, 10, "20 rows committed")
        assert disk.entered.wait(10)  # the ack thread waits in the fsync
        assert ingest.is_alive() and ingest.acker.is_alive()
        link.stop()  # the gateway loses its connection before the disk answers
        disk.open.set()
        _stop(link, ingest)
        redelivered = _next_delivered(mosquitto, settings, protocol.topic("dev9", protocol.STATUS))
        assert redelivered == payloads  # none was acknowledged before its commit was on disk

        acked: list[int] = []
        link, ingest = _start(settings, store, on_committed=lambda messages, nbytes: acked.append(messages))
        more = [_telemetry(1_700_001_000 + k) for k in range(20)]
        _publish(mosquitto, topic, more)
        wait_until(lambda: sum(acked) == 20, 10, "20 more messages committed, synced and acked")
        assert _outbox_rows(store.path) == 40
        _stop(link, ingest)
        assert _next_delivered(mosquitto, settings, protocol.topic("dev9", protocol.STATUS)) == []
    finally:
        store.close()


def test_a_failing_disk_stops_the_gateway_acknowledging(tmp_path, fresh_mosquitto, disk):
    mosquitto = fresh_mosquitto
    settings = GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port, data_dir=tmp_path,
                               client_id=f"gw-gc-{uuid.uuid4().hex[:8]}", validate_devices=False)
    store = Spool.open(settings)
    failures: list[BaseException] = []
    try:
        link, ingest = _start(settings, store, on_failure=failures.append)
        disk.error = OSError(5, "Input/output error")
        payloads = [_telemetry(1_700_000_000 + k) for k in range(4)]
        _publish(mosquitto, protocol.topic("dev1", protocol.TELEMETRY), payloads)
        wait_until(lambda: failures, 10, "the failure reported")
        assert isinstance(failures[0], OSError)
        _stop(link, ingest)
        disk.error = None
        store.close()
        store = Spool.open(settings)  # the restarted gateway (a new WAL sync)
        assert _next_delivered(mosquitto, settings, protocol.topic("dev9", protocol.STATUS)) == payloads
    finally:
        store.close()
