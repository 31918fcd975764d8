"""The gateway's ingest: MQTT messages committed to the spool before their PUBACK.

Threads: the MQTT connection (`gateway.mqtt_link`, possibly in its own process:
`gateway.mqtt_process`) puts each message in a bounded `Inbox`. One ingest thread drains it in
batches and writes each batch in ONE SQLite transaction; the ack thread acknowledges a batch once
its commit is on stable storage (group commit: `gateway.spool.walsync`). The asyncio side
(forwarder, trigger relay) never blocks the network loop.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from mcam import protocol

from gateway.cloudformat import telemetry_body
from gateway.inbox import AckId, Incoming, Link
from gateway.settings import GatewaySettings
from gateway.spool import MQTT, TELEMETRY, Spool

log = logging.getLogger("mailcam.gateway.ingest")  # the logger keeps its name: operators filter on it


class Ingestor:
    """Turns MQTT messages into spool rows (or dead letters); one batch = one transaction.

    A serial the cloud does not list (not claimed yet, claimed a moment ago, or a wrong list from the
    cloud) is not refused: its messages are stored as usual and its outbox rows are *held* until a
    refreshed list names it (asked for at once, rate-limited), or quarantined after a long time.
    """

    def __init__(self, settings: GatewaySettings, store: Spool, *, on_unknown_device: Callable[[], None] | None = None,
                 on_ingested: Callable[[str, str], None] | None = None,
                 on_fw_request: Callable[[str, bytes], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.on_unknown_device = on_unknown_device
        self.on_ingested = on_ingested
        self.on_fw_request = on_fw_request  # a device asks for a piece of a firmware release (gateway.firmware)
        self._known: set[str] | None = store.known_devices()
        self._topics: dict[bytes | str, tuple[str, str, str]] = {}  # valid raw topic -> (text, serial, kind)

    def refresh_known(self) -> None:
        self._known = self.store.known_devices()

    def commit_batch(self, messages: list[Incoming], *, durable: bool = True) -> None:
        """Write a batch in one transaction.

        Fast path: the whole batch at once. If a message raises (a bug, not bad input: bad input is
        a dead letter), the batch is rolled back and written again with a savepoint per message, so
        only the culprit becomes an ``internal_error`` dead letter. ``durable=False``: return after
        the COMMIT, before its fsync (see `Spool.transaction`).
        """
        try:
            with self.store.transaction(durable=durable):
                for message in messages:
                    self.handle(message.topic, message.payload)
                self.store.count("ingested_messages", len(messages))
            return
        except Exception:
            log.warning("a batch of %d messages failed; retrying message by message", len(messages))
        with self.store.transaction(durable=durable):
            for message in messages:
                try:
                    with self.store.savepoint():
                        self.handle(message.topic, message.payload)
                except sqlite3.Error:
                    raise  # the store itself failed: nothing is acked, the broker keeps the batch
                except Exception as exc:  # a bug must not lose the message: quarantine it, replayable
                    log.exception("failed to ingest a message on %r", message.topic[:100])
                    self.store.dead_letter("internal_error", size=len(message.payload),
                                           topic=_topic_text(message.topic), detail=repr(exc),
                                           kind=MQTT, payload=bytes(message.payload))
            self.store.count("ingested_messages", len(messages))

    def handle(self, raw_topic: bytes, payload: bytes) -> str:
        """Validate and store one message (inside a transaction); returns the outcome."""
        parsed = self._topics.get(raw_topic)
        if parsed is None and _topic_text(raw_topic) == protocol.CLOCK_TOPIC:
            return "ignored"  # our own retained clock, echoed back
        if parsed is None:
            topic = _topic_text(raw_topic)
            try:
                serial, kind = protocol.parse_topic(raw_topic)
            except protocol.ProtocolError as exc:
                self.store.dead_letter("bad_topic", size=len(payload), topic=topic, detail=str(exc))
                return "dead"
            if len(self._topics) >= 4096:
                self._topics.clear()
            self._topics[raw_topic] = (topic, serial, kind)
        else:
            topic, serial, kind = parsed
        if kind in (protocol.CMD, protocol.SETTINGS, protocol.OTA, protocol.FW):
            return "ignored"  # our own retained commands and firmware chunks, echoed back
        if kind == protocol.FWREQ:
            if self.on_fw_request:  # answered at once, never stored: the device asks again next wake
                self.on_fw_request(serial, bytes(payload))
            return "relayed"
        held = self.settings.validate_devices and self._known is not None and serial not in self._known
        if held and self.on_unknown_device:
            self.on_unknown_device()
        if kind == protocol.CAPTURE:
            return self._capture(topic, serial, payload, held)
        if kind == protocol.TELEMETRY:
            return self._telemetry(topic, serial, payload, held)
        return self._status(serial, payload)

    def _capture(self, topic: str, serial: str, payload: bytes, held: bool) -> str:
        try:
            header, body = protocol.decode_chunk(payload)
        except protocol.ProtocolError as exc:
            self.store.dead_letter("malformed_chunk", size=len(payload), topic=topic, serial=serial, detail=str(exc))
            return "dead"
        cid = header["cid"]
        if header.get("tu") or not protocol.time_is_sane(header["ts"]):
            # stamped by an unset clock: it was taken no later than now; keep it marked as an estimate
            header = dict(header, ts=int(self.store.clock()), tu=1)
        if header["size"] > self.settings.max_image_bytes:
            self.store.dead_letter("too_large", size=len(payload), topic=topic, serial=serial, key=cid,
                                   detail=f"image of {header['size']} bytes > {self.settings.max_image_bytes}")
            return "dead"
        if header["i"] == 0 and bytes(body[:2]) != b"\xff\xd8":
            self.store.dead_letter("not_jpeg", size=len(payload), topic=topic, serial=serial, key=cid,
                                   detail="first chunk does not start with the JPEG SOI marker")
            return "dead"
        # the body as a view of the payload, not a copy: both would live until the batch commits
        outcome = self.store.add_chunk(serial, header, body, topic, held=held)
        if outcome == "completed" and self.on_ingested:
            self.on_ingested(serial, protocol.CAPTURE)
        return outcome

    def _telemetry(self, topic: str, serial: str, payload: bytes, held: bool) -> str:
        try:
            t = protocol.decode_telemetry(payload)
        except protocol.ProtocolError as exc:
            self.store.dead_letter("malformed_telemetry", size=len(payload), topic=topic, serial=serial,
                                   detail=str(exc))
            return "dead"
        key = f"{serial}:{t['ts']}"  # the device's own stamp: a redelivered copy has the same key
        if t["tu"] or not protocol.time_is_sane(t["ts"]):
            t = dict(t, ts=int(self.store.clock()))  # sent seconds ago by a device whose clock was unset
        self.store.enqueue(TELEMETRY, serial, key, telemetry_body(serial, t), held=held)
        self.store.device_seen(serial, "awake")
        if self.on_ingested:
            self.on_ingested(serial, protocol.TELEMETRY)
        return "stored"

    def _status(self, serial: str, payload: bytes) -> str:
        status = "lost" if bytes(payload) == protocol.STATUS_LOST else bytes(payload[:16]).decode("utf-8", "replace")
        self.store.device_seen(serial, status or "unknown")
        if status == "lost":
            log.info("device %s: connection lost (last will)", serial)
        return "stored"


def _topic_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw[:200]
    return bytes(raw[:200]).decode("utf-8", "replace")


class Acker(threading.Thread):
    """Acknowledges committed batches once their commit is on stable storage (the group commit of
    `gateway.spool.walsync`): the ingest thread commits without waiting for the fsync and moves on to
    the next batch; this thread waits for one fsync covering every batch handed to it so far, then
    PUBACKs them in order. At most `max_pending` messages wait here; beyond that `submit` blocks.
    """

    def __init__(self, link: Link, store: Spool, *, max_pending: int,
                 on_committed: Callable[[int, int], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name="mailcam-ack", daemon=True)
        self.link = link
        self.store = store
        self.max_pending = max_pending
        self.on_committed = on_committed
        self.on_failure = on_failure
        self.failure: BaseException | None = None
        # (commit ticket, ack ids, payload bytes) of each batch handed over: not the messages themselves,
        # whose payloads the ack thread has no use for (memory: up to `max_pending` messages wait here)
        self._batches: collections.deque[tuple[int, list[AckId], int]] = collections.deque()
        self._waiting = 0  # messages handed over and not acked yet
        self._cond = threading.Condition(threading.Lock())
        self._closing = False

    def syncing(self) -> bool:
        """True while batches handed over wait for their fsync."""
        return self._waiting > 0

    def submit(self, ticket: int, batch: list[Incoming]) -> None:
        """Hand over a committed batch (`ticket`: `Spool.commit_ticket()` after its COMMIT)."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting < self.max_pending or self.failure is not None)
            if self.failure is not None:
                raise RuntimeError("the ack thread failed") from self.failure
            self._batches.append((ticket, [m.ack_id for m in batch], sum([len(m.payload) for m in batch])))
            self._waiting += len(batch)
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Ack what was handed over (once durable), then end."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._batches or self._closing)
                    if not self._batches:
                        return
                    batches = list(self._batches)
                    self._batches.clear()
                self.store.wait_durable(batches[-1][0])
                for _, ids, nbytes in batches:
                    self.link.ack_ids(ids)
                    if self.on_committed:  # (messages, payload bytes) now committed and durable
                        self.on_committed(len(ids), nbytes)
                with self._cond:
                    self._waiting -= sum(len(ids) for _, ids, _ in batches)
                    self._cond.notify_all()
                self.link.inbox.poke()  # the ingest thread may stop waiting for a full batch
        except BaseException as exc:
            log.critical("the ack thread failed; nothing is acked from now on", exc_info=True)
            with self._cond:
                self.failure = exc
                self._cond.notify_all()
            if self.on_failure:
                self.on_failure(exc)


class IngestThread(threading.Thread):
    """Drains the MQTT inbox: batch → one transaction → commit → its `Acker` acks every message of the
    batch once the commit is durable, while this thread goes on with the next batch.

    Supervised: any exception ends the thread with `failure` set and `on_failure` called (the
    service then exits non-zero, so systemd restarts it: everything unacked is redelivered), and
    `beat` (monotonic) shows it still turns.
    """

    def __init__(self, link: Link, ingestor: Ingestor, *, batch_max: int,
                 outbox_max_bytes: int, on_paused: Callable[[bool], None] | None = None,
                 on_committed: Callable[[int, int], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name="mailcam-ingest", daemon=True)
        self.link = link
        self.ingestor = ingestor
        self.batch_max = batch_max
        self.outbox_max_bytes = outbox_max_bytes
        self.on_paused = on_paused
        self.on_committed = on_committed
        self.on_failure = on_failure
        self.paused = False
        self.failure: BaseException | None = None
        self.beat = time.monotonic()
        self._resume_at = 0.0
        self._stopping = threading.Event()
        self.acker = Acker(link, ingestor.store, max_pending=2 * batch_max, on_committed=on_committed,
                           on_failure=on_failure)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self.acker.start()
        try:
            self._loop()
        except BaseException as exc:
            self.failure = exc
            if self.acker.failure is None:
                log.critical("the ingest thread failed; nothing is acked from now on", exc_info=True)
                if self.on_failure:
                    self.on_failure(exc)
        finally:
            self.acker.close()

    def _loop(self) -> None:
        inbox = self.link.inbox
        while not self._stopping.is_set():
            self.beat = time.monotonic()
            batch = inbox.get_batch(self.batch_max, timeout=0.5, fill_while=self.acker.syncing)
            if not batch:
                self._maybe_resume()
                continue
            if not self._has_room():
                continue  # not committed, not acked: the broker redelivers after we resume
            try:
                self.ingestor.commit_batch(batch, durable=False)
            except sqlite3.Error:
                log.exception("the store failed to commit %d messages; pausing ingest for 5 s", len(batch))
                self._pause(resume_in_s=5.0)
                continue
            self.acker.submit(self.ingestor.store.commit_ticket(), batch)

    def _has_room(self) -> bool:
        """Spool-full policy: drop the oldest telemetry; if still full, stop taking messages."""
        store = self.ingestor.store
        if store.used_bytes < self.outbox_max_bytes:
            return True
        dropped = store.drop_oldest_telemetry(int(self.outbox_max_bytes * 0.9))
        if dropped:
            log.warning("outbox full: dropped the %d oldest telemetry reports", dropped)
        if store.used_bytes < self.outbox_max_bytes:
            return True
        if not self.paused:
            log.error("outbox full (%d bytes of captures): pausing MQTT ingest; the broker keeps the rest",
                      store.used_bytes)
            self._pause(resume_in_s=0.0)
        return False

    def _pause(self, resume_in_s: float) -> None:
        """Disconnect: what we hold unacked is redelivered by the broker when we come back."""
        self.paused = True
        self._resume_at = time.monotonic() + resume_in_s
        self.link.stop()
        if self.on_paused:
            self.on_paused(True)

    def _maybe_resume(self) -> None:
        if not self.paused or time.monotonic() < self._resume_at:
            return
        if self.ingestor.store.used_bytes < int(self.outbox_max_bytes * 0.9):
            log.warning("resuming MQTT ingest")
            self.paused = False
            self.link.start()
            if self.on_paused:
                self.on_paused(False)
