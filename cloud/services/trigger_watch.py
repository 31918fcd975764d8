"""Wakes the gateway long-polls when a manual trigger changes, in this replica or another.

A long-poll waits on an event instead of querying every fraction of a second. Every commit
of a session from the app's session factory that added or changed a trigger (an ORM object
or an UPDATE statement on the table) carries the ``wakeups.TRIGGERS`` wakeup; it wakes all
waiters of every replica (``cloud.wakeups``: in-process, and LISTEN/NOTIFY on PostgreSQL). Each
takes one snapshot and waits again if its own gateway's triggers did not change. The slow
safety poll (``gateway_long_poll_safety_s``) covers a wakeup lost while a listener reconnected.

The same watch on the ``wakeups.STATES`` topic wakes the gateway's state feed
(``/api/gateway/states/``: captures, analyses, delivery state, telemetry), which Home Assistant's
entities follow.

At most ``gateway_long_polls_per_gateway`` waiters per gateway: a new one releases the
oldest, which answers at once with what it has. A gateway whose old connection died
silently gets through at once, and a leaked token cannot pile up waiters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from cloud import wakeups
from cloud.models import ManualTrigger
from cloud.wakeups import Wakeups


class Waiter:
    """One waiting long-poll, woken from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self.released = False  # a newer long-poll of the same gateway took this one's place

    def wake(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, timeout_s: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


class TriggerWatch:
    """Long-poll waiters per gateway, woken by the commits of one wakeup topic (any replica's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, list[Waiter]] = {}

    @contextmanager
    def waiting(self, gateway_id: int, *, limit: int) -> Iterator[Waiter]:
        """Register a waiter (call from the event loop) before taking the first snapshot."""
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            queue = self._waiters.setdefault(gateway_id, [])
            queue.append(waiter)
            released, queue[:] = queue[: -max(1, limit)], queue[-max(1, limit):]
        for old in released:
            old.released = True
            old.wake()
        try:
            yield waiter
        finally:
            with self._lock:
                queue = self._waiters.get(gateway_id, [])
                if waiter in queue:
                    queue.remove(waiter)
                if not queue:
                    self._waiters.pop(gateway_id, None)

    def changed(self) -> None:
        """Some trigger changed (committed): every waiter looks again."""
        with self._lock:
            waiters = [w for queue in self._waiters.values() for w in queue]
        for waiter in waiters:
            waiter.wake()

    def install(self, feed: Wakeups, topic: str = wakeups.TRIGGERS) -> TriggerWatch:
        """Call ``changed`` on every commit marked with ``topic`` (``mark_changes``), in any replica."""
        feed.subscribe(topic, self.changed)
        return self


def mark_changes(sessions: sessionmaker[Session], models: tuple[type, ...], topic: str) -> None:
    """Mark each transaction of ``sessions`` that writes to ``models``' tables (an ORM object or an
    INSERT/UPDATE/DELETE statement) with the ``topic`` wakeup."""
    tables = {model.__table__ for model in models}

    def after_flush(session: Session, _context: object) -> None:
        if any(isinstance(obj, models) for obj in (*session.new, *session.dirty, *session.deleted)):
            wakeups.mark(session, topic)

    def do_orm_execute(state: ORMExecuteState) -> None:
        writes = state.is_update or state.is_insert or state.is_delete
        if writes and getattr(state.statement, "table", None) in tables:
            wakeups.mark(state.session, topic)

    event.listen(sessions, "after_flush", after_flush)
    event.listen(sessions, "do_orm_execute", do_orm_execute)


def mark_gateway_feed_changes(sessions: sessionmaker[Session]) -> None:
    """Trigger writes wake the gateways' trigger long-polls; writes to what Home Assistant shows
    (captures, analyses, delivery state, telemetry, devices) wake the gateways' state feeds."""
    from cloud.models import Analysis, Capture, DeliveryEvent, Device, MailboxState, Telemetry

    mark_changes(sessions, (ManualTrigger,), wakeups.TRIGGERS)
    mark_changes(sessions, (Capture, Analysis, MailboxState, DeliveryEvent, Telemetry, Device), wakeups.STATES)
