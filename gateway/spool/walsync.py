"""Group commit: the spool's COMMIT without its fsync, and one fsync of the WAL for many commits.

With ``synchronous=FULL`` SQLite fsyncs the WAL inside every COMMIT, so the ingest thread sits idle
for the whole fsync (5-20 ms a batch here) and paho's thread, its inbox full, stops reading the
socket. What the gateway promises is narrower: a message is *acknowledged* only once it is on
stable storage. So the spool's connection runs ``synchronous=NORMAL`` (SQLite still syncs around
checkpoints and when it reuses the WAL: the file stays consistent after a power loss; what NORMAL
gives up is only the durability of the latest commits) and this module adds the durability back:
after a COMMIT has written its frames, `WalSync.sync_through` fsyncs the WAL file before anyone
relies on that commit. On Linux SQLite assumes powersafe overwrite and pads nothing, so FULL's own
commit does exactly this: write the frames, fsync the WAL (wal.c, ``walFrames``).

Ordinary spool transactions wait for their fsync before they return (as under FULL). The ingest
thread does not: it takes a ticket after its COMMIT and hands the batch's acknowledgements to
`gateway.subscriber.Acker`, which waits for a sync covering the ticket and only then sends the
PUBACKs, while the ingest thread already decodes and writes the next batch. One fsync covers every
commit before it, so a slow disk makes batches share fsyncs instead of queueing behind them.

If an fsync fails, the kernel may have dropped the dirty pages: nothing after the last good sync can
be trusted, so every later call raises too (the service then exits and the broker redelivers what
was never acknowledged).
"""

from __future__ import annotations

import os
import threading
from os import fsync  # a module attribute, so a test can stand in for the disk
from pathlib import Path


class WalSync:
    """Counts the spool's commits and fsyncs its WAL through a given one (thread-safe)."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}-wal")
        self._committed = 0  # commits so far; a commit's ticket is this count right after it
        self._synced = 0  # every commit up to this ticket is on stable storage
        self._count_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one fsync at a time; waiters find their ticket covered
        self._fd: int | None = None
        self._broken: OSError | None = None

    def committed(self) -> int:
        """Record a COMMIT that just returned; its ticket (call right after COMMIT, under the spool's lock)."""
        with self._count_lock:
            self._committed += 1
            return self._committed

    def ticket(self) -> int:
        """The ticket of the latest commit (syncing through it covers every commit so far)."""
        return self._committed

    def sync_through(self, ticket: int) -> None:
        """Return once every commit up to `ticket` is on stable storage (one fsync covers all before it)."""
        if self._synced >= ticket and self._broken is None:
            return
        with self._sync_lock:
            if self._broken is not None:
                raise OSError(f"the spool's WAL could not be synced earlier: {self._broken}") from self._broken
            if self._synced >= ticket:
                return
            target = self._committed  # every commit counted so far has written its frames already
            try:
                fsync(self._wal_fd())
            except FileNotFoundError:
                # SQLite deletes the WAL only when the last connection closes, after checkpointing every
                # frame into the database file and syncing it: what we were to sync is there already
                pass
            except OSError as exc:
                self._broken = exc
                raise
            self._synced = max(self._synced, target)

    def close(self) -> None:
        with self._sync_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _wal_fd(self) -> int:
        """A descriptor of the WAL file as it is now (SQLite recreates it only after the last connection
        closed, but a descriptor of a replaced file would sync the wrong one)."""
        if self._fd is not None:
            try:
                if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd
