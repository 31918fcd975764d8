"""The durable-job toolkit: claim a due row with a lease, release it, retry with backoff, or bury it.

Both of the cloud's queues are tables of rows with the same five columns (``status``,
``next_attempt_at``, ``attempts``, ``locked_by``, ``locked_at``): the analysis queue
(``AnalysisJob``, ``cloud.vision.worker``) and the notification outbox (``Notification``,
``cloud.notify.outbox``). The mechanics live here once:

    pending ──claim (lease)──► running ──ok──► done
       ▲                         │ ╲──permanent / attempts used──► dead
       └──retry (backoff_s)──────┘
       a lease older than its timeout: claimed again (vision, ``lease_expired``) or buried dead
       (notifications, ``bury_expired``: a send may have gone out and is never repeated)

Claiming is one short transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
replicas never take the same row, and a guarded UPDATE (``WHERE status = <due> …``) that also
holds on SQLite, where ``BEGIN IMMEDIATE`` lets one writer in at a time. Releasing is guarded by
the lease (``locked_by``): a worker whose lease was taken over changes nothing.

Both queues store exactly these states. What a job's work came to for its owner is the queue's
own business, in its own column: an analysis's result, a notification's ``outcome`` (sent,
skipped, failed, unknown; held while it waits for quiet hours), which the delivery log shows.
"""

from __future__ import annotations

import enum
import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Update, and_, bindparam, select, update
from sqlalchemy.orm import Session


class JobState(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    RUNNING = "running"  # leased: locked_by since locked_at
    DONE = "done"
    DEAD = "dead"  # failed for good; last_error says why


FINAL = (JobState.DONE, JobState.DEAD)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_s(attempts: int, base: float, cap: float) -> float:
    """Capped exponential backoff with ±20 % jitter, so retries after an outage spread out.

    The one backoff of the cloud: job retries, notification retries and a worker's pause after
    its own failure (``cloud.worker``) all use it."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.8, 1.2)


_RELEASES: dict[tuple[Any, bool, tuple[str, ...]], Update] = {}  # JobTable.release's statements, by shape
_BURIALS: dict[tuple[Any, tuple[str, ...]], Update] = {}  # JobTable.bury_expired's statements, by shape


@dataclass(frozen=True)
class JobTable:
    """A queue table: a mapped class whose ``status`` column holds ``JobState``.

    Its clauses and statements are built on the class's table, not its ORM attributes: the session
    then runs them as plain statements. An ORM-enabled UPDATE is annotated and keyed anew on every
    execution, which cost more than the UPDATE itself (a claim and a release per job)."""

    model: Any  # a mapped class with id, status, next_attempt_at, attempts, locked_by, locked_at

    @property
    def c(self) -> Any:
        return self.model.__table__.c

    def due(self, now: datetime) -> ColumnElement[bool]:
        c = self.c
        return and_(c.status == JobState.PENDING, c.next_attempt_at <= now)

    def lease_expired(self, now: datetime, lease_s: float) -> ColumnElement[bool]:
        return self.leased_before(now - timedelta(seconds=lease_s))

    def leased_before(self, cutoff: Any) -> ColumnElement[bool]:
        """Running with a lease taken before ``cutoff`` (a datetime, or a bind parameter)."""
        c = self.c
        return and_(c.status == JobState.RUNNING, c.locked_at < cutoff)

    def next_due(self, claimable: ColumnElement[bool], *columns: Any, limit: int = 1) -> Select:
        """The oldest due rows (the mapped objects, or ``columns``), locked for this transaction (skipping
        rows other workers hold)."""
        c = self.c
        query = select(*(columns or (self.model,))).where(claimable).order_by(c.next_attempt_at, c.id).limit(limit)
        return query.with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite has one writer

    def claimable_probe(self, claimable: ColumnElement[bool]) -> Select:
        """A plain read (no row lock) that returns a row when one is claimable: a worker looks before it claims."""
        return select(self.c.id).where(claimable).limit(1)

    def claim(
        self,
        session: Session,
        row_id: int,
        claimable: ColumnElement[bool],
        worker_id: str,
        now: datetime,
        **values: Any,
    ) -> bool:
        """Lease one row if it is still claimable; False when another worker got there first."""
        claimed = session.execute(self.claim_statement(claimable, **values),
                                  {"row_id": row_id, "worker_id": worker_id, "now": now})
        return claimed.rowcount == 1

    def claim_statement(self, claimable: ColumnElement[bool], **values: Any) -> Update:
        """``claim``'s UPDATE, to build once and run with ``row_id``, ``worker_id`` and ``now`` (and the
        parameters of ``claimable``, if it has any)."""
        c = self.c
        return (
            update(self.model.__table__)
            .where(c.id == bindparam("row_id"), claimable)
            .values(status=JobState.RUNNING, locked_by=bindparam("worker_id"),
                    locked_at=bindparam("now", type_=c.locked_at.type), attempts=c.attempts + 1, **values)
        )

    def release(self, session: Session, row_id: int, worker_id: str | None, status: JobState, **values: Any) -> bool:
        """End a lease with ``status`` (guarded by ``locked_by`` when ``worker_id`` is given)."""
        names = tuple(sorted(values))
        key = (self.model, worker_id is not None, names)
        statement = _RELEASES.get(key)
        if statement is None:  # a few shapes per queue: each built once (building cost more than running it)
            statement = _RELEASES[key] = self._release_statement(worker_id is not None, names)
        params = {"row_id": row_id, "new_status": status, **{f"set_{name}": values[name] for name in names}}
        if worker_id is not None:
            params["worker_id"] = worker_id
        return session.execute(statement, params).rowcount == 1

    def _release_statement(self, guarded: bool, names: tuple[str, ...]) -> Update:
        c = self.c
        guard = [c.id == bindparam("row_id"), c.status == JobState.RUNNING]
        if guarded:
            guard.append(c.locked_by == bindparam("worker_id"))
        values = {name: bindparam(f"set_{name}", type_=c[name].type) for name in names}
        return (
            update(self.model.__table__)
            .where(*guard)
            .values(status=bindparam("new_status", type_=c.status.type), locked_by=None, locked_at=None, **values)
        )

    def retry_values(self, attempts: int, now: datetime, *, base_s: float, cap_s: float) -> dict[str, Any]:
        """The values that put a released row back in the queue after its backoff."""
        delay = timedelta(seconds=backoff_s(attempts, base_s, cap_s))
        return {"status": JobState.PENDING, "next_attempt_at": now + delay}

    def bury_expired(self, session: Session, now: datetime, lease_s: float, **values: Any) -> int:
        """End every lease older than ``lease_s`` as dead, for a queue whose work must not run twice
        (its worker may have done it before it stopped); returns how many."""
        names = tuple(sorted(values))
        key = (self.model, names)
        statement = _BURIALS.get(key)
        if statement is None:  # built once per queue and set of values, as release's
            c = self.c
            statement = _BURIALS[key] = (
                update(self.model.__table__)
                .where(self.leased_before(bindparam("cutoff", type_=c.locked_at.type)))
                .values(status=JobState.DEAD, locked_by=None, locked_at=None,
                        **{name: bindparam(f"set_{name}", type_=c[name].type) for name in names})
            )
        params = {"cutoff": now - timedelta(seconds=lease_s), **{f"set_{name}": values[name] for name in names}}
        return session.execute(statement, params).rowcount or 0
