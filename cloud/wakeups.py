"""Wakeups: a commit that creates work wakes whoever owns that work, at once, in every replica.

A producer marks its session with a *topic* (``VISION``, ``NOTIFY``, ``TRIGGERS``, or
``live_topic(user_id)``) inside the transaction that creates the work. Nothing happens unless that
transaction commits:

- in this process, the topic's subscribers are called right after the commit (``after_commit``);
- on PostgreSQL the same commit also carries ``NOTIFY mailcam_wake, '<origin> <topic>'``, issued
  inside the transaction, so PostgreSQL delivers it only if and when it commits (a rollback drops
  it). Every process LISTENs on one dedicated connection (``_Listener``) and calls its own
  subscribers for topics other processes marked.

A wakeup carries no data: subscribers read the database. So a lost wakeup (a listener reconnecting,
a NOTIFY queue overflow) costs only latency: every consumer keeps a slow safety poll, and after a
listener (re)connects every topic is woken once, because anything may have been missed.
On SQLite (one process) the in-process wakeups are all there is.

One exception, for what this process itself committed: ``carry`` hands the committed items (the live
feed's events, ``cloud.live``) to the topic's item subscribers here, instead of waking them to read
back what was just written (a worker-thread hop and a read per wakeup cost a dashboard's stream more
than the rest of its work). Other replicas are woken as for ``mark`` and read. A savepoint rolled back
takes its items with it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL, Engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = logging.getLogger("mailcam.wakeups")

VISION = "vision"
NOTIFY = "notify"
TRIGGERS = "triggers"
STATES = "states"  # what the gateways' Home Assistant feed shows changed (cloud.services.trigger_watch)
CHANNEL = "mailcam_wake"
_MARKED = "mailcam.wake_topics"
_CARRIED = "mailcam.wake_items"  # [(topic, the savepoint it was carried in or None, item)], in order

Subscriber = Callable[[], None]
ItemSubscriber = Callable[[list[Any]], None]


def live_topic(user_id: int) -> str:
    """The topic of one user's live event stream (``cloud.live``)."""
    return f"live:{user_id}"


def mark(session: Session, topic: str) -> None:
    """Wake ``topic``'s subscribers (here and in every replica) when this transaction commits."""
    session.info.setdefault(_MARKED, set()).add(topic)


def carry(session: Session, topic: str, item: Any) -> None:
    """When this transaction commits, hand ``item`` to ``topic``'s item subscribers in this process and
    wake its subscribers in the other replicas (they read it). Dropped if the transaction, or the
    savepoint it was carried in, rolls back."""
    session.info.setdefault(_CARRIED, []).append((topic, session.get_nested_transaction(), item))


def _within(transaction: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


class Wakeups:
    """The topic feed of one app context: local subscribers plus, on PostgreSQL, LISTEN/NOTIFY."""

    def __init__(self, engine: Engine) -> None:
        self.postgres = engine.dialect.name == "postgresql"
        # Our own NOTIFYs come back to our listener; the origin lets it skip them (woken already).
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._engine = engine
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)
        self._item_subscribers: dict[str, list[ItemSubscriber]] = defaultdict(list)
        self._listener: _Listener | None = None
        self._users = 0

    # --- subscribing ---------------------------------------------------------------------------

    def subscribe(self, topic: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (quickly: it runs on the committing or listening thread) on each wakeup;
        returns the function that unsubscribes."""
        return self._add(self._subscribers, topic, callback)

    def subscribe_items(self, topic: str, callback: ItemSubscriber) -> Callable[[], None]:
        """Call ``callback`` with the items a commit of this process ``carry``-ed on ``topic`` (quickly: it
        runs on the committing thread); returns the function that unsubscribes."""
        return self._add(self._item_subscribers, topic, callback)

    def _add(self, table: dict[str, list[Any]], topic: str, callback: Any) -> Callable[[], None]:
        with self._lock:
            table[topic].append(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = table.get(topic, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    table.pop(topic, None)

        return unsubscribe

    def hand(self, topic: str, items: list[Any]) -> None:
        """Give this process's item subscribers of ``topic`` these committed items now."""
        with self._lock:
            callbacks = list(self._item_subscribers.get(topic, ()))
        for callback in callbacks:
            try:
                callback(items)
            except Exception:  # as wake: one broken subscriber must not starve the others
                log.exception("item subscriber of %s failed", topic)

    def wake(self, topic: str) -> None:
        """Call this process's subscribers of ``topic`` now."""
        with self._lock:
            callbacks = list(self._subscribers.get(topic, ()))
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one broken subscriber must not keep the others asleep
                log.exception("wakeup subscriber of %s failed", topic)

    def wake_all(self) -> None:
        with self._lock:
            topics = list(self._subscribers)
        for topic in topics:
            self.wake(topic)

    # --- publishing ------------------------------------------------------------------------------

    def install(self, sessions: sessionmaker[Session]) -> Wakeups:
        """Send the topics ``mark``ed in a session of ``sessions`` when its transaction commits."""

        # SQLAlchemy runs its commit hooks when a SAVEPOINT is released too (ingest's group commit puts
        # each capture in one): only the outermost commit makes the work visible, so only it wakes.
        def before_commit(session: Session) -> None:
            if not self.postgres or session.in_nested_transaction():
                return
            session.flush()  # marks made while flushing count; the NOTIFY goes in the same transaction
            carried = {topic for topic, _, _ in session.info.get(_CARRIED, ())}
            for topic in sorted(carried | session.info.get(_MARKED, set())):
                session.connection().execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": f"{self.origin} {topic}"},
                )

        def after_commit(session: Session) -> None:
            if session.in_nested_transaction():  # a savepoint released inside a transaction still open
                return
            by_topic: dict[str, list[Any]] = defaultdict(list)
            for topic, _, item in session.info.pop(_CARRIED, ()):
                by_topic[topic].append(item)
            for topic, items in by_topic.items():
                self.hand(topic, items)
            for topic in session.info.pop(_MARKED, ()):
                self.wake(topic)

        def after_rollback(session: Session, rolled_back: SessionTransaction) -> None:
            # A savepoint rolled back keeps the other marks of its transaction (an extra wakeup is harmless),
            # but not the items it carried: they describe rows that are gone.
            if not rolled_back.nested:
                session.info.pop(_MARKED, None)
                session.info.pop(_CARRIED, None)
            elif _CARRIED in session.info:
                session.info[_CARRIED] = [entry for entry in session.info[_CARRIED]
                                          if not _within(entry[1], rolled_back)]

        event.listen(sessions, "before_commit", before_commit)
        event.listen(sessions, "after_commit", after_commit)
        event.listen(sessions, "after_soft_rollback", after_rollback)
        return self

    # --- listening (PostgreSQL) ------------------------------------------------------------------

    def start(self) -> None:
        """Listen for other replicas' wakeups (PostgreSQL; nothing to do on SQLite). Counted:
        the listener runs until every ``start`` has had its ``stop``."""
        with self._lock:
            self._users += 1
            if not self.postgres or self._listener is not None:
                return
            self._listener = _Listener(self, self._engine.url.set(drivername="postgresql"))
        self._listener.start()

    def stop(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            listener = self._listener if self._users == 0 else None
            if listener is not None:
                self._listener = None
        if listener is not None:
            listener.stop()

    @property
    def listening(self) -> threading.Event:
        """Set once the listener's LISTEN is in effect (always set on SQLite)."""
        if self._listener is None:
            ready = threading.Event()
            ready.set()
            return ready
        return self._listener.ready


class _Listener:
    """One autocommit psycopg connection in LISTEN, read by a named thread (psycopg's
    ``Connection.notifies``, which yields each notification as it arrives)."""

    RETRY_MAX_S = 30.0

    def __init__(self, wakeups: Wakeups, url: URL) -> None:
        self.wakeups = wakeups
        self.conninfo = url.render_as_string(hide_password=False)
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wakeup-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self.wakeups.wake_all()  # whatever was committed while we were not listening
                    self.ready.set()
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            self._deliver(notify.payload)
                            if self._stop.is_set():
                                break
            except psycopg.Error as exc:
                failures += 1
                delay = min(self.RETRY_MAX_S, 0.5 * 2 ** min(failures, 6))
                log.warning("wakeup listener lost its connection (%s); again in %.1f s", type(exc).__name__, delay)
                self._stop.wait(delay)

    def _deliver(self, payload: str) -> None:
        origin, _, topic = payload.partition(" ")
        if topic and origin != self.wakeups.origin:
            self.wakeups.wake(topic)
