"""The live dashboard stream: my events as server-sent events (``cloud.live``).

Authentication: a bearer header, or — for a browser's ``EventSource``, which cannot send headers —
a single-use ticket from ``POST /api/events/ticket/`` in the query string. The ticket, not the
login token, is what lands in an access log, and it is spent (and expires within
``stream_ticket_ttl_s``) by then. A cookie would have added a second way of being logged in,
with CSRF to defend; the ticket keeps the one bearer-token model.

Resume: ``Last-Event-ID`` (sent by ``EventSource`` when it reconnects by itself) or
``?last_event_id=`` (a client opening a new stream with a new ticket). The stream holds no
database session between reads: it waits on its user's wakeup (``cloud.wakeups``), with a
comment line every ``live_keepalive_s`` that also serves as the safety poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cloud import live, wakeups
from cloud.api import schemas
from cloud.api.deps import CtxDep, CurrentUser, OptionalBearer, SessionDep
from cloud.context import AppContext
from cloud.db import read_only_transaction
from cloud.errors import NotAuthenticated
from cloud.models import User
from cloud.services import accounts, api_keys

router = APIRouter(prefix="/api/events", tags=["live"])
_err = {"model": schemas.ErrorBody}
LISTENER_WAIT_S = 5.0
MAX_ID = 2**63 - 1  # a BIGINT


@router.post("/ticket/", status_code=status.HTTP_201_CREATED, response_model=schemas.StreamTicketOut)
def stream_ticket(user: CurrentUser, session: SessionDep, ctx: CtxDep) -> schemas.StreamTicketOut:
    """A single-use ticket that opens my event stream (for EventSource, which sends no headers)."""
    ticket, expires_at = live.issue_ticket(session, ctx, user.id)
    return schemas.StreamTicketOut(ticket=ticket, expires_at=expires_at)


def _authenticate(ctx: AppContext, request: Request, token: str | None, ticket: str | None) -> int:
    with ctx.sessions() as session:
        if ticket:
            user_id = live.redeem_ticket(session, ctx, ticket)
            if user_id is None:
                raise NotAuthenticated("invalid, used or expired stream ticket")
        elif token and api_keys.is_api_key(token):
            caller = api_keys.authenticate(ctx, token, method=request.method, path=request.url.path)
            user_id = caller.user_id
        elif token:
            user_id = accounts.user_for_token(session, token, ctx.clock.now()).id
        else:
            raise NotAuthenticated("a bearer token or a stream ticket is needed")
        if session.get(User, user_id) is None:
            raise NotAuthenticated("the account is gone")
        session.commit()
    return user_id


def _resume_point(ctx: AppContext, last_event_id: int | None) -> tuple[int, bool]:
    """Where to start, and whether the client must reload (its last event was pruned)."""
    with ctx.sessions() as session:
        if last_event_id is None:
            return live.newest_id(session), False
        return last_event_id, not live.replayable(session, last_event_id)


def _read(
    ctx: AppContext, user_id: int, after_id: int, sent: frozenset[int], limit: int
) -> tuple[list[live.FeedEvent], bool]:
    with ctx.sessions() as session:
        read_only_transaction(session)  # on SQLite: no writer gate, no write lock for a stream's read
        return live.read_unsent(session, user_id, after_id, sent, limit=limit)


async def _watch_disconnect(request: Request, gone: asyncio.Event, woken: asyncio.Event) -> None:
    """Ends the stream when the client goes: under ASGI 2.4 Starlette only notices on the next write,
    which may be a keep-alive away, and uvicorn waits for open streams before it can stop."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()
    woken.set()


async def _events(
    request: Request, ctx: AppContext, user_id: int, cursor: live.Cursor, reset: bool
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    woken, gone = asyncio.Event(), asyncio.Event()
    handed: list[live.FeedEvent] = []  # committed here: handed over by the commit (wakeups.carry), not read
    must_read = True  # the catch-up from the cursor first; then when another replica's commit wakes us

    def take_handed(events: list[live.FeedEvent]) -> None:
        handed.extend(events)
        woken.set()

    def read_again() -> None:
        nonlocal must_read
        must_read = True
        woken.set()

    topic = wakeups.live_topic(user_id)
    # Subscribed before the first read: an event committed from here on is handed over or read (or both:
    # the cursor sends it once).
    unsubscribe_items = ctx.wakeups.subscribe_items(topic, lambda events: loop.call_soon_threadsafe(
        take_handed, events))
    unsubscribe = ctx.wakeups.subscribe(topic, lambda: loop.call_soon_threadsafe(read_again))
    watcher = asyncio.create_task(_watch_disconnect(request, gone, woken), name="sse-disconnect")
    try:
        # Other replicas' events arrive once the listener is in.
        await run_in_threadpool(ctx.wakeups.listening.wait, LISTENER_WAIT_S)
        # "open": subscribed from here on. A client that loaded its page before this may have missed
        # a change in between: without a last event id to replay from, it reloads once on "open".
        yield f'retry: {int(ctx.settings.live_retry_ms)}\ndata: {{"kind":"open","last_event_id":{cursor.last_id}}}\n\n'
        if reset:
            yield 'data: {"kind":"reset","reason":"the events since your last one are no longer kept"}\n\n'
        sent_at = 0.0
        more = False  # the last read stopped at its limit
        while not gone.is_set():
            # A burst of events goes out as one write (and at most one read), live_read_interval_s after
            # the last (an event after a quiet spell goes at once); each write passes every middleware's send.
            pause = sent_at + ctx.settings.live_read_interval_s - time.monotonic()
            if pause > 0 and not more:
                await asyncio.sleep(pause)
            woken.clear()
            now = sent_at = time.monotonic()
            floor = cursor.floor(now)
            events = handed[:]
            handed.clear()
            if must_read or more:  # a worker thread and a transaction: only for what this process did not commit
                must_read = False
                rows, more = await run_in_threadpool(_read, ctx, user_id, floor, cursor.sent, cursor.read_limit)
                events.extend(rows)
            fresh = cursor.take(sorted(events, key=lambda event: event.id), now)
            if fresh:
                yield "".join(event.as_sse() for event in fresh)
            if more or must_read or handed:
                continue  # more waiting
            try:
                await asyncio.wait_for(woken.wait(), ctx.settings.live_keepalive_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
    finally:
        watcher.cancel()
        unsubscribe()
        unsubscribe_items()


@router.get(
    "/",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}, 401: _err},
)
async def event_stream(
    request: Request,
    ctx: CtxDep,
    creds: OptionalBearer,
    ticket: Annotated[str | None, Query(max_length=100, description="From POST /api/events/ticket/")] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Resume after this event id")] = None,
    last_event_id_header: Annotated[
        str, Header(alias="Last-Event-ID", pattern=r"^[0-9]{0,18}$", description="Resume after this event id")
    ] = "",
) -> StreamingResponse:
    """My live events (capture stored, analysis done, mailbox state, triggers, battery, online)."""
    token = creds.credentials if creds else None
    user_id = await run_in_threadpool(_authenticate, ctx, request, token, ticket)
    resume = int(last_event_id_header) if last_event_id_header else last_event_id
    start, reset = await run_in_threadpool(_resume_point, ctx, resume)
    return StreamingResponse(
        _events(request, ctx, user_id, live.Cursor(start), reset),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
