"""WAL checkpoints in a thread of their own, off the ingest thread's commits.

SQLite's automatic checkpoint runs inside the COMMIT that crosses ``wal_autocheckpoint`` pages: the
ingest thread then copies ~16 MB from the WAL into the database file and fsyncs it (20-45 ms on the
dev machine) while nothing is acked, the broker's in-flight window fills and paho's thread stalls.
A backlog drained without checkpoints in the ingest thread was ~10 % faster (bench/gateway_throughput.py,
paired runs). Here a second connection runs ``PRAGMA wal_checkpoint(PASSIVE)`` after every
``every_bytes`` committed by the ingest thread, and every ``every_s`` anyway (the forwarder's and
housekeeping's small transactions are not counted; a checkpoint with nothing new to copy is cheap):
PASSIVE never takes the write lock, so the ingest thread keeps committing, and SQLite's C code runs
without the GIL.

Durability does not depend on checkpoints (a transaction is durable once its WAL frames are synced,
synchronous=FULL); the checkpoint connection uses the same ``synchronous`` setting, so the database
file is synced before SQLite ever reuses the WAL. The main connection keeps an automatic checkpoint,
raised to ``fallback_pages``: the bound on the WAL if this thread falls behind or dies.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("mailcam.gateway.spool")


class Checkpointer(threading.Thread):
    """Checkpoints the spool's WAL after every `every_bytes` committed (told by `committed`) and every
    `every_s` seconds."""

    def __init__(self, path: Path, *, synchronous: str, every_bytes: int = 8 * 1024 * 1024,
                 every_s: float = 10.0) -> None:
        super().__init__(name="mailcam-checkpoint", daemon=True)
        self.path = path
        self.synchronous = synchronous
        self.every_bytes = every_bytes
        self.every_s = every_s
        self.checkpoints = 0  # completed checkpoint calls (for tests and curiosity)
        self.done = threading.Event()  # set after each checkpoint call
        self._due = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False

    def committed(self, nbytes: int) -> None:
        """Called after a commit of about `nbytes`: wakes the thread once enough has piled up."""
        with self._lock:
            self._due += nbytes
            due = self._due >= self.every_bytes
        if due:
            self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute(f"PRAGMA synchronous={self.synchronous}")  # see the module docstring: never weaker
            while True:
                self._wake.wait(self.every_s)
                self._wake.clear()
                if self._stopping:
                    return
                with self._lock:
                    self._due = 0
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the main connection's automatic checkpoint still bounds the WAL
                    log.warning("background WAL checkpoint failed: %s", exc)
                self.checkpoints += 1
                self.done.set()
        finally:
            db.close()
