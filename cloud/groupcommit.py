"""Group commit: many small write transactions from many threads, committed together.

Ingest's rows for one capture are a handful of statements, but each transaction costs a commit
(an fsync of SQLite's WAL with ``synchronous=FULL``, a WAL flush on PostgreSQL) and, on SQLite,
a turn at the one write lock. Under load the threads queued for that lock most of the time
(bench/cloud_ingest.py, profiled with py-spy). Here the first thread to arrive becomes the
*leader*: it takes every piece of work waiting (up to ``max_batch``), runs each in its own
SAVEPOINT in one transaction, commits once, and hands each caller its result. Threads that arrive
meanwhile wait for the next round, led by one of them. No thread of its own, nothing to start.

Nothing is acknowledged early: ``run`` returns (or raises) only after the transaction holding
that work has ended (committed, or failed). One piece of work that raises is rolled back to its
savepoint and its caller gets the exception; the others in the batch commit. A failed commit
fails every piece of that batch. A batch of one runs without a savepoint (its error rolls back all).

    caller ──run(work)──► queue ──► leader: BEGIN; SAVEPOINT; work(session); RELEASE; … COMMIT
                                              └── each caller's future: result or exception
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


class GroupCommit:
    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int = 64) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: deque[tuple[Callable[[Session], object], Future]] = deque()
        self._lock = threading.Lock()
        self._leading = False

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` inside a shared transaction; returns once that transaction committed."""
        future: Future = Future()
        with self._lock:
            self._queue.append((work, future))
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        return future.result()

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                if not batch:
                    self._leading = False
                    return
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable[[Session], object], Future]]) -> None:
        # Every answer, an error included, is given only once the batch's transaction has ended: a
        # caller refused for a duplicate key must find the row that refused it already committed.
        outcomes: list[tuple[Future, object, BaseException | None]] = []
        try:
            with self._sessions() as session:
                if len(batch) == 1:
                    # Alone (the usual case below a few captures a second), the work needs no savepoint:
                    # its error rolls back the whole transaction, which held nothing else. Two statements
                    # and a nested transaction less per capture.
                    (work, future), = batch
                    try:
                        outcomes.append((future, work(session), None))
                    except Exception as exc:
                        session.rollback()
                        outcomes.append((future, None, exc))
                else:
                    for work, future in batch:
                        try:
                            with session.begin_nested():
                                outcomes.append((future, work(session), None))
                        except Exception as exc:  # this caller's error; the rest of the batch goes on
                            outcomes.append((future, None, exc))
                session.commit()
        except BaseException as exc:  # the commit itself failed: nothing of this batch is stored
            for _, future in batch:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
