"""Wakes this process's gateway long-polls when a manual trigger changes.

A long-poll waits on an event instead of querying every fraction of a second. Every commit
of a session from the app's session factory that added or changed a trigger (an ORM object
or an UPDATE statement on the table) wakes all waiters of this process; each takes one
snapshot and waits again if its own gateway's triggers did not change. Triggers changed by
another replica are found by the slow safety poll (``gateway_long_poll_safety_s``).

The same watch, given other tables, wakes the gateway's state feed (``/api/gateway/states/``:
captures, analyses, delivery state, telemetry), which Home Assistant's entities follow.

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

from cloud.models import ManualTrigger

_CHANGED = "mailcam.trigger_changed"


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
    """Long-poll waiters per gateway, woken by commits that wrote to ``models``' tables."""

    def __init__(self, models: tuple[type, ...] = (ManualTrigger,)) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, list[Waiter]] = {}
        self._models = models
        self._tables = {model.__table__ for model in models}

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

    def install(self, sessions: sessionmaker[Session]) -> TriggerWatch:
        """Call ``changed`` after each commit of ``sessions`` that touched one of the watched tables."""
        flag = f"{_CHANGED}:{id(self)}"  # one flag per watch: several watches share a session

        def after_flush(session: Session, _context: object) -> None:
            if any(isinstance(obj, self._models) for obj in (*session.new, *session.dirty, *session.deleted)):
                session.info[flag] = True

        def do_orm_execute(state: ORMExecuteState) -> None:
            writes = state.is_update or state.is_insert or state.is_delete
            if writes and getattr(state.statement, "table", None) in self._tables:
                state.session.info[flag] = True

        def after_commit(session: Session) -> None:
            if session.info.pop(flag, False):
                self.changed()

        def after_rollback(session: Session) -> None:
            session.info.pop(flag, None)

        event.listen(sessions, "after_flush", after_flush)
        event.listen(sessions, "do_orm_execute", do_orm_execute)
        event.listen(sessions, "after_commit", after_commit)
        event.listen(sessions, "after_rollback", after_rollback)
        return self
