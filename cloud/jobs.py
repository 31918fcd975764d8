"""The durable-job toolkit: claim a due row with a lease, release it, retry with backoff, or bury it.

Both of the cloud's queues are tables of rows with the same five columns (``status``,
``next_attempt_at``, ``attempts``, ``locked_by``, ``locked_at``): the analysis queue
(``AnalysisJob``, ``cloud.vision.worker``) and the notification outbox (``Notification``,
``cloud.notify.outbox``). The mechanics live here once:

    pending ──claim (lease)──► running ──ok──► done
       ▲                         │ ╲──permanent / attempts used──► dead
       └──retry (backoff_s)──────┘
       a lease older than its timeout: claimed again (vision) or buried as unknown (notifications,
       where a send may have gone out and is never repeated)

Claiming is one short transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
replicas never take the same row, and a guarded UPDATE (``WHERE status = <due> …``) that also
holds on SQLite, where ``BEGIN IMMEDIATE`` lets one writer in at a time. Releasing is guarded by
the lease (``locked_by``): a worker whose lease was taken over changes nothing.

The analysis queue speaks ``JobState`` as is. The outbox row doubles as the owner's delivery log
(an API field), so its words say what happened to a message; ``NOTIFICATION_STATES`` maps them
onto the same lifecycle.
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

from sqlalchemy import ColumnElement, Select, and_, select, update
from sqlalchemy.orm import Session


class JobState(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at
    RUNNING = "running"  # leased: locked_by since locked_at
    DONE = "done"
    DEAD = "dead"  # failed for good; last_error says why


@dataclass(frozen=True)
class States:
    """A queue's status words for the lifecycle above."""

    due: tuple[str, ...]
    running: str
    done: str
    dead: str


JOB_STATES = States(due=(JobState.PENDING,), running=JobState.RUNNING, done=JobState.DONE, dead=JobState.DEAD)
# held = pending until quiet hours end; skipped and unknown are further final outcomes of a message.
NOTIFICATION_STATES = States(due=("pending", "held"), running="sending", done="sent", dead="failed")


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_s(attempts: int, base: float, cap: float) -> float:
    """Capped exponential backoff with ±20 % jitter, so retries after an outage spread out.

    The one backoff of the cloud: job retries, notification retries and a worker's pause after
    its own failure (``cloud.worker``) all use it."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class JobTable:
    """A queue table and its status words."""

    model: Any  # a mapped class with id, status, next_attempt_at, attempts, locked_by, locked_at
    states: States = JOB_STATES

    def due(self, now: datetime) -> ColumnElement[bool]:
        m = self.model
        return and_(m.status.in_(self.states.due), m.next_attempt_at <= now)

    def lease_expired(self, now: datetime, lease_s: float) -> ColumnElement[bool]:
        m = self.model
        return and_(m.status == self.states.running, m.locked_at < now - timedelta(seconds=lease_s))

    def next_due(self, claimable: ColumnElement[bool], *columns: Any, limit: int = 1) -> Select:
        """The oldest due rows, locked for this transaction (skipping rows other workers hold)."""
        m = self.model
        query = select(*(columns or (m,))).where(claimable).order_by(m.next_attempt_at, m.id).limit(limit)
        return query.with_for_update(skip_locked=True)  # rendered on PostgreSQL; SQLite has one writer

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
        m = self.model
        claimed = session.execute(
            update(m)
            .where(m.id == row_id, claimable)
            .values(status=self.states.running, locked_by=worker_id, locked_at=now, attempts=m.attempts + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1

    def release(self, session: Session, row_id: int, worker_id: str | None, status: str, **values: Any) -> bool:
        """End a lease with ``status`` (guarded by ``locked_by`` when ``worker_id`` is given)."""
        m = self.model
        guard = [m.id == row_id, m.status == self.states.running]
        if worker_id is not None:
            guard.append(m.locked_by == worker_id)
        released = session.execute(
            update(m)
            .where(*guard)
            .values(status=status, locked_by=None, locked_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        return released.rowcount == 1

    def retry_values(self, attempts: int, now: datetime, *, base_s: float, cap_s: float) -> dict[str, Any]:
        """The values that put a released row back in the queue after its backoff."""
        delay = timedelta(seconds=backoff_s(attempts, base_s, cap_s))
        return {"status": self.states.due[0], "next_attempt_at": now + delay}
