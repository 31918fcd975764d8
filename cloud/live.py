"""The live dashboard feed: each owner's domain events, in order, replayable by event id.

    producer's transaction ──emit──► LiveSink: a live_events row, carried to the commit (wakeups.carry)
    commit ──► this replica's streams of that user are handed the events at once (no read); other
               replicas are woken by LISTEN/NOTIFY and read them
    stream (GET /api/events/) ──► rows with id > the last one sent, as server-sent events

The row is written in the producer's transaction, so an event is on the feed exactly when the
change it describes is committed, and any replica can replay it (``Last-Event-ID``) until it is
pruned (``live_retention_s``). A client whose last id was pruned gets a ``reset`` event: reload.

Ids are assigned when the row is inserted, not when it commits, so on PostgreSQL two producers
can commit out of id order. A stream therefore reads from the newest id it had sent ``SETTLE_S``
ago and skips the ids it sent since (``Cursor``; only their ids are read again, not their bodies):
an event committed within that time after a higher id is still delivered, once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from cloud import wakeups
from cloud.context import AppContext
from cloud.events import DomainEvent, Event
from cloud.models import LiveEvent, StreamTicket

# What the dashboard shows live; the digest is a notification, not a change on the page.
LIVE_KINDS = frozenset(DomainEvent) - {DomainEvent.DAILY_DIGEST}
SETTLE_S = 10.0
BATCH = 200


class LiveSink:
    """The event sink that puts an owner's events on their live feed, in the producer's transaction."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def emit(self, session: Session, event: Event) -> None:
        if event.user_id is None or event.kind not in LIVE_KINDS:
            return
        data = json.loads(json.dumps(event.data, default=str))
        row = {"user_id": event.user_id, "kind": event.kind.value, "device_serial": data.get("device_serial"),
               "data": data, "created_at": self.ctx.clock.now()}
        inserted = session.connection().execute(_INSERT_EVENT, row)  # values as parameters: compiled once, cached
        feed_event = FeedEvent(id=inserted.inserted_primary_key[0], kind=row["kind"],
                               device_serial=row["device_serial"], data=data, at=row["created_at"])
        wakeups.carry(session, wakeups.live_topic(event.user_id), feed_event)


_INSERT_EVENT = insert(LiveEvent.__table__)


def install(ctx: AppContext) -> LiveSink:
    """Register the live sink on ``ctx`` once."""
    for sink in ctx.events.sinks:
        if isinstance(sink, LiveSink):
            return sink
    sink = LiveSink(ctx)
    ctx.add_event_sink(sink)
    return sink


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEvent:
    id: int
    kind: str
    device_serial: str | None
    data: dict[str, Any]
    at: datetime

    def as_sse(self) -> str:
        body = json.dumps(
            {
                "id": self.id,
                "kind": self.kind,
                "device_serial": self.device_serial,
                "at": self.at.isoformat(),
                "data": self.data,
            },
            separators=(",", ":"),
        )
        # No "event:" line: every event reaches EventSource's onmessage; its kind is in the data.
        return f"id: {self.id}\ndata: {body}\n\n"


@dataclass
class Cursor:
    """Where one stream stands: the newest id sent, and which ids it sent in the settle window."""

    last_id: int
    _recent: deque[tuple[float, int]] = field(default_factory=deque)  # (when sent, last_id before it), in order
    _sent: set[int] = field(default_factory=set)  # ids sent above floor()

    def floor(self, now: float) -> int:
        """Read ids above this: the newest id sent SETTLE_S ago. An event whose id was taken within
        SETTLE_S of its commit has an id above every id taken before then, however high the ids sent
        since (a late commit can fall below all of them: the newest sent minus one is no floor)."""
        while self._recent and now - self._recent[0][0] > SETTLE_S:
            self._recent.popleft()
        floor = self._recent[0][1] if self._recent else self.last_id  # last_id only grows: the first is least
        self._sent = {event_id for event_id in self._sent if event_id > floor}
        return floor

    @property
    def sent(self) -> frozenset[int]:
        """The ids above the floor already sent (a reader skips their bodies)."""
        return frozenset(self._sent)

    @property
    def read_limit(self) -> int:
        """Ids to look at: a batch beyond the ids already sent above the floor."""
        return BATCH + len(self._sent)

    def take(self, events: list[FeedEvent], now: float) -> list[FeedEvent]:
        """The events not sent yet, recorded as sent."""
        fresh = [event for event in events if event.id not in self._sent]
        for event in fresh:
            self._sent.add(event.id)
            self._recent.append((now, self.last_id))
            self.last_id = max(self.last_id, event.id)
        return fresh


def read_unsent(
    session: Session, user_id: int, after_id: int, sent: frozenset[int], *, limit: int = BATCH
) -> tuple[list[FeedEvent], bool]:
    """The user's events above ``after_id`` not in ``sent``, oldest first, and whether more are waiting.

    The look-back over the settle window re-reads ids only: an owner with a hundred mailboxes has
    hundreds of events in it, and decoding each body again on every wakeup made a stream's cost grow
    with the square of its rate (bench/e2e.py). Bodies are read for the new ids alone.
    """
    conn = session.connection()  # plain statements built once: a stream reads on every wakeup of its user
    ids = conn.execute(_UNSENT_IDS, {"user_id": user_id, "after_id": after_id, "limit": limit}).scalars().all()
    fresh = [event_id for event_id in ids if event_id not in sent]
    if not fresh:
        return [], len(ids) >= limit
    rows = conn.execute(_BODIES, {"ids": fresh}).all()
    return [FeedEvent(*row) for row in rows], len(ids) >= limit


_events = LiveEvent.__table__.c
_UNSENT_IDS = (
    select(_events.id)
    .where(_events.user_id == bindparam("user_id"), _events.id > bindparam("after_id"))
    .order_by(_events.id)
    .limit(bindparam("limit", type_=Integer))
)
_BODIES = (
    select(_events.id, _events.kind, _events.device_serial, _events.data, _events.created_at)
    .where(_events.id.in_(bindparam("ids", expanding=True)))
    .order_by(_events.id)
)


def replayable(session: Session, last_id: int) -> bool:
    """Can a stream resume after ``last_id``? Not when events after it may have been pruned.

    Ids are global and pruning goes by age (so by id): nothing after ``last_id`` was pruned
    while the oldest event kept, of anyone, is at most ``last_id + 1``."""
    oldest_kept = session.scalar(select(func.min(LiveEvent.id)))
    return oldest_kept is not None and oldest_kept <= last_id + 1


def newest_id(session: Session) -> int:
    return session.scalar(select(func.max(LiveEvent.id))) or 0


def prune(session: Session, ctx: AppContext) -> int:
    """Drop events older than the retention, and expired stream tickets (a periodic job)."""
    now = ctx.clock.now()
    cutoff = now - timedelta(seconds=ctx.settings.live_retention_s)
    pruned = session.execute(delete(LiveEvent).where(LiveEvent.created_at < cutoff)).rowcount or 0
    session.execute(delete(StreamTicket).where(StreamTicket.expires_at < now))
    return pruned


# --- stream tickets -------------------------------------------------------------------------------


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def issue_ticket(session: Session, ctx: AppContext, user_id: int) -> tuple[str, datetime]:
    """A single-use ticket that opens one event stream of ``user_id`` within ``stream_ticket_ttl_s``."""
    ticket = "mcs_" + secrets.token_urlsafe(24)
    expires_at = ctx.clock.now() + timedelta(seconds=ctx.settings.stream_ticket_ttl_s)
    session.add(StreamTicket(ticket_hash=_hash(ticket), user_id=user_id, expires_at=expires_at))
    return ticket, expires_at


def redeem_ticket(session: Session, ctx: AppContext, ticket: str) -> int | None:
    """The ticket's user, once: the row is deleted by the first redeemer (a guarded DELETE)."""
    row = session.get(StreamTicket, _hash(ticket))
    if row is None:
        return None
    taken = session.execute(delete(StreamTicket).where(StreamTicket.ticket_hash == row.ticket_hash))
    if taken.rowcount != 1 or row.expires_at < ctx.clock.now():
        return None
    return row.user_id
