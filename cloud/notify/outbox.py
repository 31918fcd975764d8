"""The durable notification outbox: written with the event, delivered by a worker.

Writing: ``NotificationSink.emit`` runs inside the producer's transaction (ingest, vision,
scheduled checks). It only reads preferences and inserts rows, never touches the network,
so a channel outage cannot slow or fail ingest; rows commit or roll back with the event.

Two words per row: ``status`` is where the row is in the queue, the job toolkit's ``JobState``
(``cloud.jobs``, as for analysis jobs); ``outcome`` is what happened to the message for its owner
(``cloud.models.Outcome``). The delivery log shows the pair as one word (``DELIVERY_WORDS``:
pending, held, sending, sent, skipped, failed, unknown).

At most once: each row is unique on (event key, channel, recipient); the insert ignores a
duplicate. A row is sent only after a worker claims it (the toolkit's lease: pending → running).
A claim whose worker died mid-send is not retried (we cannot know whether it went out): after
``send_lease_s`` it is buried dead with the outcome ``unknown``. Rows inserted wake the delivery
worker when they commit (``wakeups.NOTIFY``).

Retries: a temporary failure puts the row back to pending with the toolkit's capped, jittered
backoff, until ``max_attempts``; then dead, ``failed``. Quiet hours hold a row (pending, outcome
``held``, due when they end); it is sent then, not dropped.

    pending ──claim (lease)──► running ──ok───────────────────────► done, outcome sent
     │ ▲ ▲                        │ ╲──permanent / attempts used───► dead, outcome failed
     │ │ └──temporary (backoff)───┘  ╲─lease expired mid-send──────► dead, outcome unknown
     │ └──quiet hours: outcome held, due when they end
     └──recipient removed, token or subscription expired──────────► done, outcome skipped
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, delete, select, update
from sqlalchemy.orm import Session

from cloud import wakeups
from cloud.context import AppContext
from cloud.db import upsert
from cloud.events import Event
from cloud.jobs import JobState, JobTable, new_worker_id
from cloud.models import Capture, Device, Notification, Outcome, PushToken, Webhook
from cloud.notify import apprise_channel, confirmations, kinds, preferences, rich, send_limits, webpush
from cloud.notify.base import (
    ChannelError,
    OutgoingMessage,
    PermanentFailure,
    RecipientGone,
    TemporaryFailure,
    short,
)
from cloud.notify.mapping import Draft, drafts_for, silent
from cloud.notify.registry import ChannelRegistry, available
from cloud.notify.webhook import webhook_secret

log = logging.getLogger("mailcam.notify")
WORKER_ID = new_worker_id()
OUTBOX = JobTable(Notification)


_DEVICE_NAME = select(Device.__table__.c.name).where(Device.__table__.c.id == bindparam("device_id"))


class NotificationSink:
    """The event sink that turns domain events into outbox rows, in the producer's transaction."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def emit(self, session: Session, event: Event) -> None:
        # Most events notify nobody (an analysis of a usable photo): then no owner, preferences or device
        # is read (three reads a vision job, ~1 ms of its CPU).
        if event.user_id is None or silent(event):
            return
        # Plain reads: the user's and the device's entities (identity map, every column) cost more CPU.
        # Flushed first, as those entity reads were: what the producer changed pending is seen.
        session.flush()
        prefs = preferences.of_user(session, event.user_id, self.ctx.settings.notify)
        if prefs is None:
            return
        device_name = (session.connection().execute(_DEVICE_NAME, {"device_id": event.device_id}).scalar()
                       if event.device_id else None)
        for draft in drafts_for(event, prefs, device_name):
            enqueue(session, self.ctx, prefs, event, draft)


def install(ctx: AppContext) -> NotificationSink:
    """Register the notification sink on ``ctx`` once (the log sink stays)."""
    for sink in ctx.events.sinks:
        if isinstance(sink, NotificationSink):
            return sink
    sink = NotificationSink(ctx)
    ctx.add_event_sink(sink)
    return sink


def enqueue(session: Session, ctx: AppContext, prefs: preferences.Preferences, event: Event, draft: Draft) -> int:
    """Insert one outbox row per (channel, recipient) the owner wants; duplicates are ignored."""
    now = ctx.clock.now()
    held_until = prefs.quiet_until(now)
    usable = set(available(ctx.settings.notify))
    event_key = f"{draft.kind}:{draft.key or event.key or uuid.uuid4().hex}"[:200]
    data = _jsonable({**draft.data, "device_serial": event.data.get("device_serial")})
    rows: list[dict[str, Any]] = []
    for channel in prefs.channels(draft.kind):
        if channel not in usable:
            continue
        for recipient in _recipients(session, prefs, channel):
            rows.append(
                {
                    "user_id": prefs.user_id,
                    "device_id": event.device_id,
                    "capture_pk": event.capture_pk,
                    "kind": draft.kind,
                    "event_key": event_key,
                    "channel": channel,
                    "recipient": recipient[:300],
                    "title": draft.title[:200],
                    "body": draft.body,
                    "data": data,
                    "status": JobState.PENDING,
                    "outcome": Outcome.HELD if held_until else None,
                    "attempts": 0,
                    "next_attempt_at": held_until or now,
                    "created_at": now,
                }
            )
    if not rows:
        return 0
    # One row per statement, the statement built once per dialect: a delivery alert is a row or two, and
    # building and keying a multi-row VALUES anew cost more than running it (vision finish).
    stmt = _insert_row(session)
    inserted = sum(session.execute(stmt, row).rowcount or 0 for row in rows)
    if inserted and not held_until:
        wakeups.mark(session, wakeups.NOTIFY)
    return inserted


_INSERT_ROW: dict[str, Any] = {}  # dialect name -> the outbox row's INSERT ... ON CONFLICT DO NOTHING


def _insert_row(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    stmt = _INSERT_ROW.get(dialect)
    if stmt is None:
        table = Notification.__table__
        stmt = _INSERT_ROW[dialect] = upsert(session, table).on_conflict_do_nothing(
            index_elements=[table.c.event_key, table.c.channel, table.c.recipient]
        )
    return stmt


def _recipients(session: Session, prefs: preferences.Preferences, channel: str) -> list[str]:
    if channel == kinds.CONSOLE:
        return ["console"]
    if channel in (kinds.EMAIL, kinds.SMS):
        # An address gets nothing until its owner has confirmed it (cloud.notify.confirmations).
        address = prefs.email_address if channel == kinds.EMAIL else prefs.phone
        return [address] if address and confirmations.is_confirmed(session, prefs.user_id, channel, address) else []
    if channel == kinds.WEBPUSH:
        return webpush.recipients(session, prefs.user_id)
    if channel == kinds.APPRISE:
        return apprise_channel.recipients(session, prefs.user_id)
    if channel == kinds.PUSH:
        return [f"token:{i}" for i in session.scalars(_PUSH_TOKENS, {"user_id": prefs.user_id})]
    return [f"webhook:{i}" for i in session.scalars(_WEBHOOKS, {"user_id": prefs.user_id})]


# Built once (an alert reads its owner's recipients per channel).
_PUSH_TOKENS = select(PushToken.id).where(PushToken.user_id == bindparam("user_id")).order_by(PushToken.id)
_WEBHOOKS = (
    select(Webhook.id).where(Webhook.user_id == bindparam("user_id"), Webhook.active.is_(True)).order_by(Webhook.id)
)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


# --- delivery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    notification_id: int
    user_id: int
    channel: str
    recipient: str
    attempts: int
    message: OutgoingMessage


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    sent: int


def deliver_due(ctx: AppContext, registry: ChannelRegistry | None = None, *, max_batches: int = 100) -> int:
    """Send everything due now, synchronously (tests, demo, CLI); returns how many were sent."""
    own = registry is None
    registry = registry or ChannelRegistry.for_context(ctx)
    sent = 0
    try:
        for _ in range(max_batches):
            result = deliver_batch(ctx, registry)
            sent += result.sent
            if result.claimed == 0:
                break
    finally:
        if own:
            registry.close()
    return sent


def deliver_batch(ctx: AppContext, registry: ChannelRegistry, *, workers: int = 4) -> BatchResult:
    claimed = claim_due(ctx, limit=ctx.settings.notify.batch_size)
    if not claimed:
        return BatchResult(0, 0)
    if len(claimed) == 1 or workers <= 1:
        outcomes = [deliver_one(ctx, registry, item) for item in claimed]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(claimed)), thread_name_prefix="notify-send") as pool:
            outcomes = list(pool.map(lambda item: deliver_one(ctx, registry, item), claimed))
    return BatchResult(len(claimed), sum(1 for ok in outcomes if ok))


def claim_due(
    ctx: AppContext, *, limit: int, in_flight: Mapping[int, int] | None = None, per_user: int | None = None
) -> list[Claimed]:
    """Take up to ``limit`` due rows for this worker (short transaction, no network).

    With ``per_user``, no user ends up with more than that many sends in flight (``in_flight``
    counts what this worker is sending already, by user id); their other rows wait, unclaimed.
    """
    in_flight = dict(in_flight or {})
    full = [user for user, count in in_flight.items() if per_user is not None and count >= per_user]
    now = ctx.clock.now()
    settings = ctx.settings.notify
    with ctx.sessions() as session:
        OUTBOX.bury_expired(session, now, settings.send_lease_s, outcome=Outcome.UNKNOWN,
                            last_error="the worker stopped mid-send; not retried (at most once)")
        due = {"now": now, "limit": limit}
        rows = session.scalars(_NEXT_DUE_EXCEPT, {**due, "full": full}).all() if full else \
            session.scalars(_NEXT_DUE, due).all()
        prefs_cache: dict[int, preferences.Preferences | None] = {}
        claimed: list[Claimed] = []
        for row in rows:
            if per_user is not None and in_flight.get(row.user_id, 0) >= per_user:
                continue  # left due: claimed when one of the user's sends finishes
            prefs = _prefs(session, ctx, row.user_id, prefs_cache)
            until = prefs.quiet_until(now) if prefs else None
            if until is not None:
                row.outcome, row.next_attempt_at = Outcome.HELD, until
                continue
            resolved = _resolve(session, ctx, row)
            if resolved is None:
                row.status, row.outcome = JobState.DONE, Outcome.SKIPPED
                row.last_error = "the recipient was removed before sending"
                continue
            if row.channel in (kinds.EMAIL, kinds.SMS):
                until = send_limits.take_alert(session, settings, user_id=row.user_id, channel=row.channel,
                                               address=row.recipient, now=now)
                if until is not None:  # over the hourly allowance: waits for the next hour, not dropped
                    row.outcome, row.next_attempt_at = None, until
                    row.last_error = f"hourly {row.channel} limit reached; sent after {until:%H:%M} UTC"
                    continue
            # The row is locked (PostgreSQL) or ours alone (SQLite's one writer): the guarded claim holds.
            if session.execute(_CLAIM, {"row_id": row.id, "worker_id": WORKER_ID, "now": now}).rowcount != 1:
                continue
            address, extras = resolved
            in_flight[row.user_id] = in_flight.get(row.user_id, 0) + 1
            claimed.append(Claimed(row.id, row.user_id, row.channel, row.recipient, row.attempts + 1,
                                   _message(ctx, session, row, address, extras)))
        session.commit()
    return claimed


# claim_due's statements, built once (as the vision worker's): the delivery worker claims after every
# alert's commit and after every send, and building and keying these anew cost more than running them.
_DUE = OUTBOX.due(bindparam("now"))
_NEXT_DUE = OUTBOX.next_due(_DUE).limit(bindparam("limit", type_=Integer))
# ... but none of the users in "full" (their sends in flight at the per-user cap)
_NEXT_DUE_EXCEPT = OUTBOX.next_due(
    _DUE & Notification.user_id.not_in(bindparam("full", expanding=True))
).limit(bindparam("limit", type_=Integer))
_CLAIM = OUTBOX.claim_statement(_DUE, outcome=None)
_IMAGE_OF = select(Capture.image_sha256).where(Capture.id == bindparam("capture_pk"))


def _prefs(
    session: Session, ctx: AppContext, user_id: int, cache: dict[int, preferences.Preferences | None]
) -> preferences.Preferences | None:
    if user_id not in cache:
        cache[user_id] = preferences.of_user(session, user_id, ctx.settings.notify)
    return cache[user_id]


def _resolve(session: Session, ctx: AppContext, row: Notification) -> tuple[str, dict[str, str]] | None:
    if row.channel == kinds.WEBPUSH:
        return webpush.resolve(session, ctx, row)
    if row.channel == kinds.APPRISE:
        return apprise_channel.resolve(session, ctx, row)
    if row.channel == kinds.PUSH:
        token = session.get(PushToken, int(row.recipient.removeprefix("token:")))
        return (token.token, {}) if token and token.user_id == row.user_id else None
    if row.channel == kinds.WEBHOOK:
        hook = session.get(Webhook, int(row.recipient.removeprefix("webhook:")))
        if hook is None or not hook.active or hook.user_id != row.user_id:
            return None
        return hook.url, {"secret": webhook_secret(ctx.settings.secret_key, hook.secret_salt)}
    if row.channel == kinds.EMAIL:
        return row.recipient, rich.alert_extras(session, ctx, row)
    return row.recipient, {}


def _message(
    ctx: AppContext, session: Session, row: Notification, address: str, extras: dict[str, str]
) -> OutgoingMessage:
    sha = session.scalar(_IMAGE_OF, {"capture_pk": row.capture_pk}) if row.capture_pk else None
    return OutgoingMessage(
        notification_id=row.id,
        kind=row.kind,
        event_key=row.event_key,
        title=row.title,
        body=row.body,
        data=dict(row.data or {}),
        created_at=row.created_at,
        address=address,
        extras=extras,
        thumbnail=_thumbnail_loader(ctx, sha),
    )


def _thumbnail_loader(ctx: AppContext, sha: str | None) -> Callable[[], bytes | None]:
    def load() -> bytes | None:
        if sha is None:
            return None
        try:
            return ctx.images.read(sha, thumbnail=True)
        except FileNotFoundError:  # deleted since (retention, the owner): send without it
            return None

    return load


def deliver_one(ctx: AppContext, registry: ChannelRegistry, item: Claimed) -> bool:
    """Send one claimed row and record the outcome; True when it was sent."""
    try:
        channel = registry.get(item.channel)
    except Exception as exc:  # a misconfigured channel (unreadable credentials, bad sender number)
        log.exception("the %s channel cannot start", item.channel)
        _record_failure(ctx, item, TemporaryFailure(f"the {item.channel} channel cannot start: {type(exc).__name__}"))
        return False
    try:
        if channel is None:
            raise PermanentFailure(f"the {item.channel} channel is not configured on this server")
        result = channel.send(item.message)
    except ChannelError as exc:
        _record_failure(ctx, item, exc)
        return False
    except Exception as exc:  # a bug in a channel: keep the row (retried), keep the worker alive
        log.exception("notification %s: unexpected error in the %s channel", item.notification_id, item.channel)
        _record_failure(ctx, item, ChannelError(f"internal error: {type(exc).__name__}"))
        return False
    with ctx.sessions() as session:
        _record(session, item, status=JobState.DONE, outcome=Outcome.SENT, sent_at=ctx.clock.now(),
                provider_id=(result.provider_id or "")[:200] or None, last_error=None)
        if item.channel == kinds.WEBPUSH:
            webpush.mark_sent(session, item.recipient, ctx.clock.now())
        session.commit()
    return True


def _record_failure(ctx: AppContext, item: Claimed, exc: ChannelError) -> None:
    settings = ctx.settings.notify
    now = ctx.clock.now()
    permanent = isinstance(exc, PermanentFailure)
    if permanent or item.attempts >= settings.max_attempts:
        values: dict[str, Any] = {"status": JobState.DEAD, "outcome": Outcome.FAILED}
    else:
        values = OUTBOX.retry_values(item.attempts, now, base_s=settings.retry_base_s, cap_s=settings.retry_max_s)
    log.warning("notification %s via %s: %s (attempt %s)", item.notification_id, item.channel, exc.detail,
                item.attempts)
    with ctx.sessions() as session:
        _record(session, item, last_error=short(exc.detail, 500), **values)
        if isinstance(exc, RecipientGone):
            _forget_recipient(session, item)
        session.commit()


def _record(session: Session, item: Claimed, *, status: JobState, **values: Any) -> None:
    """End this worker's lease on the row with what came of the send.

    Guarded by the lease. A send that outlived ``send_lease_s`` finds its row buried as unknown:
    a late failure leaves it so (made due again, a send that may have gone out would repeat);
    a late success turns it into sent, which is what happened."""
    if OUTBOX.release(session, item.notification_id, WORKER_ID, status, **values):
        return
    if values.get("outcome") == Outcome.SENT:
        session.execute(
            update(Notification)
            .where(Notification.id == item.notification_id, Notification.delivered_as("unknown"))
            .values(status=status, **values)
            .execution_options(synchronize_session=False)
        )
    else:
        log.warning("notification %s: its lease expired before the send ended (%s); it stays unknown",
                    item.notification_id, values.get("outcome") or status)


def _skip_waiting(session: Session, channel: str, recipient: str, reason: str) -> None:
    """Rows still waiting for a recipient that is gone can never be delivered: done, skipped."""
    session.execute(
        update(Notification)
        .where(Notification.channel == channel, Notification.recipient == recipient,
               Notification.status == JobState.PENDING)
        .values(status=JobState.DONE, outcome=Outcome.SKIPPED, last_error=reason)
        .execution_options(synchronize_session=False)
    )


def _forget_recipient(session: Session, item: Claimed) -> None:
    if item.channel == kinds.PUSH:
        token_id = int(item.recipient.removeprefix("token:"))
        session.execute(delete(PushToken).where(PushToken.id == token_id))
        _skip_waiting(session, kinds.PUSH, item.recipient, "the push token was unregistered")
    elif item.channel == kinds.WEBPUSH:
        webpush.forget(session, item.recipient)
        _skip_waiting(session, kinds.WEBPUSH, item.recipient, "the browser's push subscription has expired")
    elif item.channel == kinds.WEBHOOK:
        hook_id = int(item.recipient.removeprefix("webhook:"))
        session.execute(update(Webhook).where(Webhook.id == hook_id).values(active=False))
