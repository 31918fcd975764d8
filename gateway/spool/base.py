"""The spool's SQLite file: connection, schema and upgrades, transactions, counters and the kv table.

One connection guarded by a lock: SQLite serialises writers anyway, and the ingest thread, the
forwarder and the trigger relay each hold it only for one short transaction. The concept modules
(outbox, reassembly, dead letters, devices, commands) add their methods to `Spool` and share this
one transaction, because one MQTT batch touches several of them and must commit (then be acked)
as a whole.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.spool.walsync import WalSync

log = logging.getLogger("mailcam.gateway.spool")

SCHEMA = """
CREATE TABLE IF NOT EXISTS partials (
    serial TEXT NOT NULL, cid TEXT NOT NULL, n INTEGER NOT NULL, size INTEGER NOT NULL, sha TEXT NOT NULL,
    trig TEXT NOT NULL, tid TEXT, ts INTEGER NOT NULL, bat INTEGER NOT NULL, first_at REAL NOT NULL,
    tu INTEGER NOT NULL DEFAULT 0, wake TEXT, PRIMARY KEY (serial, cid)
);
CREATE INDEX IF NOT EXISTS partials_by_age ON partials (serial, first_at);
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
    bytes INTEGER NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    held INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_by_kind ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, reason TEXT NOT NULL, detail TEXT,
    topic TEXT, serial TEXT, key TEXT, size INTEGER NOT NULL, kind TEXT, meta TEXT, payload BLOB
);
CREATE TABLE IF NOT EXISTS devices (
    serial TEXT PRIMARY KEY, wake_interval_s INTEGER, last_seen REAL, status TEXT,
    listed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS cmds (serial TEXT PRIMARY KEY, tid TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS done_triggers (tid TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Columns added after the first release: a store file written by an older gateway gains them on open.
UPGRADES = {
    "partials": [("tu", "INTEGER NOT NULL DEFAULT 0"), ("wake", "TEXT")],
    "outbox": [("held", "INTEGER NOT NULL DEFAULT 0")],
    "dead_letters": [("kind", "TEXT"), ("meta", "TEXT"), ("payload", "BLOB")],
    "devices": [("listed", "INTEGER NOT NULL DEFAULT 1")],
}


class SpoolBase:
    """The file and its transaction; every public method is one short transaction (or joins one)."""

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
        # FULL: SQLite's NORMAL plus our own fsync of the WAL before a commit is relied on (`walsync`)
        self._wal_sync = WalSync(path) if synchronous.upper() == "FULL" else None
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if self._wal_sync else synchronous}")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._upgrade()
        self._depth = 0
        self._pending_counts: dict[str, int] = {}  # counters bumped in the current transaction
        self.used_bytes = 0

    def _upgrade(self) -> None:
        for table, columns in UPGRADES.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._wal_sync:
                self._wal_sync.close()

    def set_wal_autocheckpoint(self, pages: int) -> None:
        """Let this connection checkpoint by itself only past `pages` of WAL (`gateway.spool.checkpoint`)."""
        with self._lock:
            self._db.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def _scalar(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    # -- transactions -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); nested calls join the outer one.

        Returns once the commit is on stable storage (the WAL's fsync runs after the spool's lock is
        let go, so other threads need not wait for it). ``durable=False`` returns after the COMMIT
        alone: the caller must `wait_durable` on `commit_ticket()` before it relies on the commit
        (the ingest thread, before it acknowledges a batch).
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            used_before = self.used_bytes
            self._before_transaction()
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
                self.flush()
                self._db.execute("COMMIT")
                ticket = self._wal_sync.committed() if self._wal_sync else 0
            except BaseException:
                self._undo(used_before)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
                self._after_transaction()
        if durable:
            self.wait_durable(ticket)

    def commit_ticket(self) -> int:
        """A ticket covering every commit so far, for `wait_durable`."""
        return self._wal_sync.ticket() if self._wal_sync else 0

    def wait_durable(self, ticket: int) -> None:
        """Return once every commit up to `ticket` is on stable storage (raises OSError if the fsync failed)."""
        if self._wal_sync:
            self._wal_sync.sync_through(ticket)

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

    def _undo(self, used_before: int) -> None:
        """Forget in-memory state that the rollback made wrong (concept modules extend this)."""
        self.used_bytes = used_before
        self._pending_counts.clear()

    def _before_transaction(self) -> None:
        """Hook for the concept modules (trim caches)."""

    def _after_transaction(self) -> None:
        """Hook for the concept modules (drop per-transaction buffers)."""

    def flush(self) -> None:
        """Write what this transaction buffered (inside `transaction()`; concept modules extend this)."""
        if self._pending_counts:
            counts, self._pending_counts = self._pending_counts, {}
            self._db.executemany(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                list(counts.items()),
            )

    # -- counters and state -------------------------------------------------------------------------
    def count(self, name: str, by: int = 1) -> None:
        """Like `bump` but buffered until the end of the current transaction (inside `transaction()`)."""
        self._pending_counts[name] = self._pending_counts.get(name, 0) + by

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
