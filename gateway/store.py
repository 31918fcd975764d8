"""The gateway's durable store: one SQLite file in WAL mode.

Tables
- ``partials`` / ``chunks``: captures being reassembled, keyed (serial, cid) and (serial, cid, i);
  a repeated chunk is an ``INSERT OR IGNORE`` no-op. A complete capture keeps its chunks (the image
  is written once) until the cloud has it; its ``partials`` row is replaced by an outbox row.
- ``completed``: capture ids already assembled, so a late repeat does not start a new partial.
- ``outbox``: what waits for the cloud (capture, telemetry, delivered report); autoincrement id,
  read ``ORDER BY id`` per device, removed with DELETE after the cloud's 2xx.
- ``dead_letters``: what was refused, with the reason and the size (never the image bytes).
- ``devices``: the cloud's device list, cached so validation works while the cloud is away.
- ``cmds`` / ``done_triggers``: retained trigger commands published per device, and triggers answered.
- ``counters`` / ``kv``: totals and state for `mailcam gateway status`.

One connection guarded by a lock: SQLite serialises writers anyway, and the ingest thread,
the forwarder and the trigger relay each hold it only for one short transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mailcam.gateway.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS partials (
    serial TEXT NOT NULL, cid TEXT NOT NULL, n INTEGER NOT NULL, size INTEGER NOT NULL, sha TEXT NOT NULL,
    trig TEXT NOT NULL, tid TEXT, ts INTEGER NOT NULL, bat INTEGER NOT NULL, first_at REAL NOT NULL,
    PRIMARY KEY (serial, cid)
);
CREATE TABLE IF NOT EXISTS chunks (
    serial TEXT NOT NULL, cid TEXT NOT NULL, i INTEGER NOT NULL, data BLOB NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (serial, cid, i)
);
CREATE TABLE IF NOT EXISTS completed (
    serial TEXT NOT NULL, cid TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (serial, cid)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, serial TEXT NOT NULL, key TEXT NOT NULL, meta TEXT NOT NULL, body BLOB,
    bytes INTEGER NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_kind ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, reason TEXT NOT NULL, detail TEXT,
    topic TEXT, serial TEXT, key TEXT, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    serial TEXT PRIMARY KEY, wake_interval_s INTEGER, last_seen REAL, status TEXT
);
CREATE TABLE IF NOT EXISTS cmds (serial TEXT PRIMARY KEY, tid TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS done_triggers (tid TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

CAPTURE = "capture"
TELEMETRY = "telemetry"
DELIVERED = "delivered"

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"

PARTIALS_CACHED = 10_000  # partial captures kept in memory between transactions at most


class _Partial:
    """A capture being reassembled: its first chunk's header fields and the chunk indexes stored."""

    __slots__ = ("wanted", "ts", "bat", "received", "bodies")

    def __init__(self, wanted: tuple[Any, ...], ts: int, bat: int, received: set[int]) -> None:
        self.wanted = wanted  # (n, size, sha, trig, tid)
        self.ts = ts
        self.bat = bat
        self.received = received
        self.bodies: dict[int, bytes] | None = None  # chunks added in the current transaction


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    serial: str
    key: str
    meta: dict[str, Any]
    body: bytes | None
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    id: int
    at: float
    reason: str
    detail: str | None
    topic: str | None
    serial: str | None
    key: str | None
    size: int


class Store:
    """The SQLite file; every method is one short transaction (or runs inside `transaction()`)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        # 16 KiB pages for a new file (no effect on an existing one): a 4 KB chunk then fits in its leaf
        # page instead of spilling into overflow pages, about a third less work per chunk row
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._depth = 0
        # (serial, cid) -> _Partial: the partial captures touched lately, with the set of chunk indexes
        # already in `chunks` (loaded from the table on first use, so it survives restarts). Exact while
        # cached: a repeat is recognised without a statement. Cleared on any rollback, trimmed between
        # transactions only (a transaction's buffered rows always belong to cached entries).
        self._partials: dict[tuple[str, str], _Partial] = {}
        # chunk rows added in the current transaction, written with one executemany before COMMIT (or
        # before anything reads `chunks`); counters bumped in the current transaction, likewise.
        self._pending_chunks: list[tuple[str, str, int, bytes, float]] = []
        self._pending_counts: dict[str, int] = {}
        self._touched: list[_Partial] = []
        self.used_bytes = self._scalar("SELECT COALESCE(SUM(bytes),0) FROM outbox") + self._scalar(
            "SELECT COALESCE(SUM(length(data)),0) FROM chunks"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _scalar(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            used_before = self.used_bytes
            if len(self._partials) > PARTIALS_CACHED:
                self._partials.clear()
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
                self.flush()
                self._db.execute("COMMIT")
            except BaseException:
                self._undo(used_before)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
                for state in self._touched:
                    state.bodies = None
                self._touched.clear()

    def _undo(self, used_before: int) -> None:
        self.used_bytes = used_before
        self._partials.clear()
        self._pending_chunks.clear()
        self._pending_counts.clear()

    def flush(self) -> None:
        """Write the chunk rows and counters buffered in this transaction (inside `transaction()`)."""
        if self._pending_chunks:
            rows, self._pending_chunks = self._pending_chunks, []
            inserted = self._db.executemany(
                "INSERT OR IGNORE INTO chunks(serial, cid, i, data, at) VALUES (?,?,?,?,?)", rows
            ).rowcount
            if inserted != len(rows):  # the cache said new, the table disagrees: never ack on that
                raise sqlite3.IntegrityError(f"{len(rows) - inserted} of {len(rows)} chunk rows already stored")
        if self._pending_counts:
            counts, self._pending_counts = self._pending_counts, {}
            self._db.executemany(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                list(counts.items()),
            )

    def count(self, name: str, by: int = 1) -> None:
        """Like `bump` but buffered until the end of the current transaction (inside `transaction()`)."""
        self._pending_counts[name] = self._pending_counts.get(name, 0) + by

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside `transaction()`: undone alone if it raises."""
        self.flush()
        used_before = self.used_bytes
        self._db.execute("SAVEPOINT msg")
        try:
            yield
            self.flush()
        except BaseException:
            self._db.execute("ROLLBACK TO msg")
            self._db.execute("RELEASE msg")
            self._undo(used_before)
            raise
        self._db.execute("RELEASE msg")

    def bump(self, name: str, by: int = 1) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def set_kv(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

    def get_kv(self, key: str) -> str | None:
        with self._lock:
            return self._scalar("SELECT value FROM kv WHERE key = ?", key)

    # -- dead letters -----------------------------------------------------------------------------
    def dead_letter(
        self, reason: str, *, size: int, detail: str | None = None, topic: str | None = None,
        serial: str | None = None, key: str | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dead_letters(at, reason, detail, topic, serial, key, size) VALUES (?,?,?,?,?,?,?)",
                (self.clock(), reason, (detail or "")[:500] or None, topic, serial, key, size),
            )
            self.bump(f"dead_lettered:{reason}")
        log.warning(
            "dead letter: reason=%s serial=%s key=%s topic=%s size=%d detail=%s",
            reason, serial, key, topic, size, (detail or "")[:200],
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, reason, detail, topic, serial, key, size FROM dead_letters ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    # -- devices ----------------------------------------------------------------------------------
    def replace_devices(self, devices: list[tuple[str, int | None]]) -> None:
        with self.transaction() as db:
            wanted = {serial for serial, _ in devices}
            for (serial,) in db.execute("SELECT serial FROM devices").fetchall():
                if serial not in wanted:
                    db.execute("DELETE FROM devices WHERE serial = ?", (serial,))
            for serial, interval in devices:
                db.execute(
                    "INSERT INTO devices(serial, wake_interval_s) VALUES (?, ?) "
                    "ON CONFLICT(serial) DO UPDATE SET wake_interval_s = excluded.wake_interval_s",
                    (serial, interval),
                )
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('devices_loaded_at', ?)", (str(self.clock()),))

    def known_devices(self) -> set[str] | None:
        """The cached device list, or None if the cloud has never been asked successfully."""
        with self._lock:
            if self._scalar("SELECT value FROM kv WHERE key = 'devices_loaded_at'") is None:
                return None
            return {row[0] for row in self._db.execute("SELECT serial FROM devices")}

    def device_seen(self, serial: str, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO devices(serial, last_seen, status) VALUES (?, ?, ?) "
                "ON CONFLICT(serial) DO UPDATE SET last_seen = excluded.last_seen, status = excluded.status",
                (serial, self.clock(), status),
            )

    # -- reassembly -------------------------------------------------------------------------------
    def add_chunk(self, serial: str, header: dict[str, Any], body: bytes, topic: str) -> str:
        """Store one chunk; returns what happened: duplicate | stored | completed | dead | conflict.

        Must run inside `transaction()`. Completing a capture checks it and turns its partial into an
        outbox row in the same transaction. The chunk row itself is buffered and written (one
        executemany per transaction) before COMMIT; repeats are recognised from the cached indexes.
        """
        cid = header["cid"]
        key = (serial, cid)
        wanted = (header["n"], header["size"], header["sha"], header["trig"], header["tid"])
        state = self._partials.get(key)
        if state is None:
            state = self._load_partial(key)
            if state is None:
                if self._db.execute("SELECT 1 FROM completed WHERE serial = ? AND cid = ?", key).fetchone():
                    self.count("duplicate_chunks")
                    return "duplicate"
                self._db.execute(
                    "INSERT INTO partials(serial, cid, n, size, sha, trig, tid, ts, bat, first_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (serial, cid, *wanted, header["ts"], header["bat"], self.clock()),
                )
                if header["tid"]:
                    self._enqueue(DELIVERED, serial, header["tid"], {"trigger_id": header["tid"]}, None)
                state = _Partial(wanted, header["ts"], header["bat"], set())
            self._partials[key] = state
        if state.wanted != wanted:
            self.dead_letter(
                "inconsistent_chunk", size=len(body), topic=topic, serial=serial, key=cid,
                detail=f"chunk {header['i']} header differs from the capture's first chunk",
            )
            return "conflict"
        i = header["i"]
        if i in state.received:
            self.count("duplicate_chunks")
            return "duplicate"
        self._pending_chunks.append((serial, cid, i, body, self.clock()))
        state.received.add(i)
        if state.bodies is None:
            state.bodies = {}
            self._touched.append(state)
        state.bodies[i] = body
        self.used_bytes += len(body)
        if len(state.received) < wanted[0]:
            return "stored"
        return self._assemble(serial, cid, topic, state)

    def _load_partial(self, key: tuple[str, str]) -> _Partial | None:
        row = self._db.execute(
            "SELECT n, size, sha, trig, tid, ts, bat FROM partials WHERE serial = ? AND cid = ?", key
        ).fetchone()
        if row is None:
            return None
        received = {i for (i,) in self._db.execute("SELECT i FROM chunks WHERE serial = ? AND cid = ?", key)}
        return _Partial(tuple(row[:5]), row[5], row[6], received)

    def _drop_chunks(self, serial: str, cid: str) -> int:
        self.flush()
        freed = self._scalar("SELECT COALESCE(SUM(length(data)),0) FROM chunks WHERE serial = ? AND cid = ?",
                             serial, cid)
        self._db.execute("DELETE FROM chunks WHERE serial = ? AND cid = ?", (serial, cid))
        self.used_bytes -= freed
        return freed

    def _drop_partial(self, serial: str, cid: str) -> None:
        self._db.execute("DELETE FROM partials WHERE serial = ? AND cid = ?", (serial, cid))
        self._partials.pop((serial, cid), None)

    def image(self, serial: str, cid: str) -> bytes:
        """The reassembled image of a capture (its chunks in order)."""
        with self._lock:
            if self._depth:
                self.flush()
            rows = self._db.execute("SELECT data FROM chunks WHERE serial = ? AND cid = ? ORDER BY i", (serial, cid))
            return b"".join(row[0] for row in rows)

    def _assemble(self, serial: str, cid: str, topic: str, state: _Partial) -> str:
        db = self._db
        n, size, sha, trig, tid = state.wanted
        ts, bat = state.ts, state.bat
        bodies = state.bodies or {}
        if len(bodies) < n:  # some chunks came in earlier transactions: read those back
            bodies = dict(bodies)
            for i, data in db.execute("SELECT i, data FROM chunks WHERE serial = ? AND cid = ?", (serial, cid)):
                bodies.setdefault(i, data)
        image = b"".join(bodies[i] for i in range(n))
        self._drop_partial(serial, cid)
        reason = None
        if len(image) != size:
            reason, detail = "size_mismatch", f"chunks hold {len(image)} bytes, header says {size}"
        elif hashlib.sha256(image).hexdigest() != sha:
            reason, detail = "sha256_mismatch", "reassembled image does not match the header's sha"
        elif not (image.startswith(SOI) and image.rstrip(b"\x00").endswith(EOI)):
            reason, detail = "not_jpeg", "no JPEG SOI/EOI markers"
        if reason:
            self._drop_chunks(serial, cid)
            self.dead_letter(reason, size=len(image), topic=topic, serial=serial, key=cid, detail=detail)
            return "dead"
        meta = {"capture_id": cid, "trigger_type": trig, "trigger_id": tid, "ts": ts, "bat_mv": bat, "size": size}
        self._enqueue(CAPTURE, serial, cid, meta, None)  # the image stays in `chunks` until forwarded
        db.execute("INSERT OR REPLACE INTO completed(serial, cid, at) VALUES (?,?,?)", (serial, cid, self.clock()))
        self.count("captures_assembled")
        return "completed"

    def expire_partials(self, timeout_s: float) -> int:
        """Dead-letter captures whose chunks stopped arriving more than `timeout_s` ago."""
        cutoff = self.clock() - timeout_s
        with self.transaction() as db:
            stale = db.execute(
                "SELECT p.serial, p.cid, p.n, COUNT(c.i) FROM partials p "
                "LEFT JOIN chunks c ON c.serial = p.serial AND c.cid = p.cid "
                "GROUP BY p.serial, p.cid HAVING COALESCE(MAX(c.at), p.first_at) < ?",
                (cutoff,),
            ).fetchall()
            for serial, cid, n, received in stale:
                self._drop_partial(serial, cid)
                size = self._drop_chunks(serial, cid)
                self.dead_letter(
                    "incomplete_capture", size=size, serial=serial, key=cid,
                    detail=f"{received} of {n} chunks, none for {timeout_s:.0f}s",
                )
        return len(stale)

    def prune_completed(self, retention_s: float) -> None:
        cutoff = self.clock() - retention_s
        with self.transaction() as db:
            db.execute("DELETE FROM completed WHERE at < ?", (cutoff,))
            db.execute("DELETE FROM done_triggers WHERE at < ?", (cutoff,))

    # -- outbox -----------------------------------------------------------------------------------
    def _enqueue(self, kind: str, serial: str, key: str, meta: dict[str, Any], body: bytes | None) -> None:
        size = len(body or b"") + 200
        self._db.execute(
            "INSERT INTO outbox(kind, serial, key, meta, body, bytes, created_at) VALUES (?,?,?,?,?,?,?)",
            (kind, serial, key, json.dumps(meta), body, size, self.clock()),
        )
        self.used_bytes += size

    def enqueue(self, kind: str, serial: str, key: str, meta: dict[str, Any], body: bytes | None = None) -> None:
        with self.transaction():
            self._enqueue(kind, serial, key, meta, body)

    def pending(self, limit: int) -> list[OutboxItem]:
        """The oldest `limit` outbox rows, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, serial, key, meta, body, attempts FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def done(self, item: OutboxItem, counter: str | None = None) -> None:
        """The cloud took it: delete it and a capture's chunks (and count it under `counter`)."""
        with self.transaction() as db:
            size = self._scalar("SELECT bytes FROM outbox WHERE id = ?", item.id)
            if size is not None:
                db.execute("DELETE FROM outbox WHERE id = ?", (item.id,))
                self.used_bytes -= size
                if item.kind == CAPTURE:
                    self._drop_chunks(item.serial, item.key)
                if counter:
                    self.bump(counter)

    def failed(self, item_id: int, error: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error[:300], item_id))
            self.bump("retried")

    def reject(self, item: OutboxItem, reason: str, detail: str) -> None:
        """The cloud refused it (4xx): move it to dead letters with the cloud's reason."""
        with self.transaction():
            size = item.meta.get("size") or len(item.body or b"")
            self.done(item)
            self.dead_letter(f"cloud_{reason}", size=size, serial=item.serial, key=item.key, detail=detail)

    def drop_oldest_telemetry(self, target_bytes: int) -> int:
        """Free space by deleting the oldest queued telemetry until `used_bytes <= target_bytes`."""
        dropped = 0
        with self.transaction() as db:
            while self.used_bytes > target_bytes:
                rows = db.execute(
                    "SELECT id, bytes FROM outbox WHERE kind = ? ORDER BY id LIMIT 100", (TELEMETRY,)
                ).fetchall()
                if not rows:
                    break
                for row_id, size in rows:
                    if self.used_bytes <= target_bytes:
                        break
                    db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                    self.used_bytes -= size
                    dropped += 1
            if dropped:
                self.bump("dropped_telemetry", dropped)
        return dropped

    def outbox_stats(self) -> dict[str, Any]:
        with self._lock:
            depth = dict(self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
            oldest = self._scalar("SELECT MIN(created_at) FROM outbox")
            partials = self._scalar("SELECT COUNT(*) FROM partials")
            dead = self._scalar("SELECT COUNT(*) FROM dead_letters")
        return {
            "depth": depth,
            "oldest_age_s": max(0.0, self.clock() - oldest) if oldest is not None else 0.0,
            "partials": partials,
            "dead_letters": dead,
            "used_bytes": self.used_bytes,
        }

    # -- trigger commands ---------------------------------------------------------------------------
    def cmds(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {s: (t, e) for s, t, e in self._db.execute("SELECT serial, tid, exp FROM cmds")}

    def set_cmd(self, serial: str, tid: str | None, exp: int = 0) -> None:
        with self.transaction() as db:
            if tid is None:
                db.execute("DELETE FROM cmds WHERE serial = ?", (serial,))
            else:
                db.execute("INSERT OR REPLACE INTO cmds(serial, tid, exp) VALUES (?,?,?)", (serial, tid, exp))

    def trigger_done(self, tid: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO done_triggers(tid, at) VALUES (?, ?)", (tid, self.clock()))

    def done_triggers(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT tid FROM done_triggers")}
