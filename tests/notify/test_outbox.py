"""The outbox: events become notifications once, quiet hours hold them, outages are retried."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cloud.events import DomainEvent, Event
from cloud.notify import kinds, outbox
from cloud.notify.registry import ChannelRegistry
from cloud.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.notify.conftest import Owner, add_webhook, analysis_event, emit, notifications, set_prefs, store_capture
from tests.notify.fakes import FakeHttp, Reply


def _registry(ctx) -> ChannelRegistry:
    return ChannelRegistry.for_context(ctx)


def test_mail_arrived_goes_to_console_and_signed_webhook_once(nctx, owner, clock):
    with FakeHttp(lambda seen: Reply(204, "")) as receiver:
        secret = add_webhook(nctx, owner, receiver.url + "/hook")
        pk = store_capture(nctx, owner, "cap-1")
        event = analysis_event(owner, pk, "cap-1")
        emit(nctx, event)
        emit(nctx, event)  # the same event again (a redelivered vision result): no second notification
        emit(nctx, replace(event, key="analysis:cap-1:job-2"))  # a re-analysis that agrees: nothing new

        rows = notifications(nctx, kind="mail_arrived")
        assert sorted(r.channel for r in rows) == ["console", "webhook"]
        registry = _registry(nctx)
        try:
            assert outbox.deliver_due(nctx, registry) == 2
            assert outbox.deliver_due(nctx, registry) == 0
            console = registry.get("console").recent
        finally:
            registry.close()

        [hit] = receiver.requests("/hook")
        assert verify(secret, hit.headers[TIMESTAMP_HEADER.lower()], hit.body, hit.headers[SIGNATURE_HEADER.lower()],
                      now=clock.now().timestamp())
        assert not verify("whsec_wrong", hit.headers[TIMESTAMP_HEADER.lower()], hit.body,
                          hit.headers[SIGNATURE_HEADER.lower()], now=clock.now().timestamp())
        body = hit.json()
        assert body["event"] == "mail_arrived"
        assert body["data"]["categories"] == {"letter": 2, "magazine": 1}
        assert "2 letters, 1 magazine" in body["body"] and "Two letters" in body["body"]
        assert [m.kind for m in console] == ["mail_arrived"]
        assert {r.delivery for r in notifications(nctx, kind="mail_arrived")} == {"sent"}


@pytest.mark.parametrize(
    ("data", "prefs", "expected"),
    [
        ({"confidence": 0.4}, {}, []),
        ({"confidence": 0.4}, {"min_confidence": 0.3}, ["mail_arrived"]),
        ({"mail_detected": False}, {}, []),
        # one empty frame says nothing: "mailbox empty" is the collected transition, opt-in
        ({"mail_detected": False}, {"events": {"mailbox_empty": ["console"]}}, []),
        ({"transition": "collected"}, {"events": {"mailbox_empty": ["console"]}}, ["mailbox_empty"]),
        ({"transition": "collected"}, {}, []),
        ({"transition": "more"}, {}, ["more_mail"]),
        ({"image_quality": "too_dark", "mail_detected": False}, {"events": {"mailbox_empty": ["console"]}},
         ["retake_needed"]),
        ({"package_present": True}, {}, ["package_arrived"]),
        ({"package_present": True, "package_damage": "crushed", "package_damage_confidence": 0.8}, {},
         ["package_damaged"]),
        ({"package_present": True, "package_damage": "crushed", "package_damage_confidence": 0.2}, {},
         ["package_arrived"]),
        ({}, {"events": {"mail_arrived": []}}, []),
        ({"source": "model", "analysis_kind": "reanalyse"}, {}, ["mail_arrived"]),
    ],
)
def test_vision_result_maps_to_the_right_notification(data, prefs, expected):
    """Pure mapping: no database needed (the end-to-end path is tested above)."""
    from cloud.notify.mapping import drafts_for
    from cloud.notify.preferences import Preferences, validate_events

    owner = Owner(user_id=1, device_id=1, serial="box-1")
    settings = {"min_confidence": prefs.get("min_confidence", 0.6)}
    preferences = Preferences(user_id=1, timezone="UTC", account_email="a@example.com",
                              events=validate_events(prefs.get("events", {})), **settings)
    event = analysis_event(owner, 1, "cap-1", **data)
    wanted = [d.kind for d in drafts_for(event, preferences, "Front gate") if preferences.channels(d.kind)]
    assert wanted == expected


def test_quiet_hours_hold_notifications_and_send_them_after(nctx, owner, clock):
    set_prefs(nctx, owner, quiet_hours={"start": "22:00", "end": "07:00"})
    with nctx.sessions() as session:
        from cloud.models import User

        session.get(User, owner.user_id).timezone = "Europe/Berlin"
        session.commit()
    berlin = ZoneInfo("Europe/Berlin")
    clock.set(datetime(2026, 3, 10, 23, 30, tzinfo=berlin).astimezone(UTC))
    pk = store_capture(nctx, owner, "cap-night")
    emit(nctx, analysis_event(owner, pk, "cap-night"))

    [row] = notifications(nctx, kind="mail_arrived")
    assert row.delivery == "held"
    assert row.next_attempt_at == datetime(2026, 3, 11, 7, 0, tzinfo=berlin).astimezone(UTC)
    clock.advance(timedelta(hours=7))  # 06:30 local
    assert outbox.deliver_due(nctx) == 0
    clock.set(datetime(2026, 3, 11, 7, 0, 1, tzinfo=berlin).astimezone(UTC))
    assert outbox.deliver_due(nctx) == 1
    assert notifications(nctx, kind="mail_arrived")[0].delivery == "sent"


def test_the_sink_reads_the_same_preferences_as_the_account_pages(nctx, owner):
    """The sink reads an owner's preferences by a plain statement (``preferences.of_user``), the pages by
    the user's entity (``preferences.load``): the defaults and every stored field come out the same."""
    from cloud.models import User
    from cloud.notify import preferences

    def both() -> tuple[preferences.Preferences, preferences.Preferences | None]:
        with nctx.sessions() as session:
            user = session.get(User, owner.user_id)
            settings = nctx.settings.notify
            return preferences.load(session, user, settings), preferences.of_user(session, owner.user_id, settings)

    loaded, read = both()
    assert read == loaded and read.events == {} and read.quiet is None
    set_prefs(nctx, owner, quiet_hours={"start": "22:00", "end": "07:00"}, phone="+14155550100",
              email="other@example.com", events={"mail_arrived": ["sms", "console"]}, min_confidence=0.8,
              digest_hour=6)
    loaded, read = both()
    assert read == loaded
    assert read.events == {"mail_arrived": ["console", "sms"]} and read.phone == "+14155550100"
    assert read.quiet is not None and read.min_confidence == 0.8 and read.digest_hour == 6
    with nctx.sessions() as session:
        assert preferences.of_user(session, owner.user_id + 1000, nctx.settings.notify) is None


def test_retry_held_back_by_quiet_hours_that_began_meanwhile(nctx, owner, clock):
    """A row already due when quiet hours start is held at claim time, not sent."""
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    now_local = clock.now()
    start = (now_local - timedelta(minutes=1)).strftime("%H:%M")
    end = (now_local + timedelta(hours=1)).strftime("%H:%M")
    set_prefs(nctx, owner, quiet_hours={"start": start, "end": end})
    assert outbox.deliver_due(nctx) == 0
    [row] = notifications(nctx, kind="mail_arrived")
    assert row.delivery == "held" and row.next_attempt_at > clock.now()


def test_webhook_outage_is_retried_with_backoff_and_delivered_once(nctx, owner, clock):
    replies = iter([Reply(503, "down"), Reply(503, "down")])
    with FakeHttp(lambda seen: next(replies, Reply(200, {"ok": True}))) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))

        assert outbox.deliver_due(nctx) == 1  # console went out; the webhook failed
        [hook] = notifications(nctx, channel="webhook")
        assert (hook.delivery, hook.attempts) == ("pending", 1)
        first_delay = hook.next_attempt_at - clock.now()
        assert timedelta(seconds=7) <= first_delay <= timedelta(seconds=13)
        assert outbox.deliver_due(nctx) == 0  # not due yet
        clock.advance(first_delay)
        outbox.deliver_due(nctx)
        [hook] = notifications(nctx, channel="webhook")
        assert (hook.delivery, hook.attempts) == ("pending", 2)
        assert hook.next_attempt_at - clock.now() >= timedelta(seconds=15)  # it backs off
        clock.advance(timedelta(minutes=5))
        assert outbox.deliver_due(nctx) == 1
        clock.advance(timedelta(hours=2))
        assert outbox.deliver_due(nctx) == 0
        deliveries = {s.headers["x-mailcam-delivery"] for s in receiver.requests("/hook")}
        assert len(receiver.requests("/hook")) == 3 and deliveries == {str(hook.id)}
        assert notifications(nctx, channel="webhook")[0].delivery == "sent"


def test_gives_up_after_max_attempts(nctx, owner, clock):
    nctx.settings.notify.max_attempts = 3
    with FakeHttp(lambda seen: Reply(500, "boom")) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        for _ in range(5):
            outbox.deliver_due(nctx)
            clock.advance(timedelta(hours=2))
        [hook] = notifications(nctx, channel="webhook")
        assert (hook.delivery, hook.attempts) == ("failed", 3)
        assert "500" in hook.last_error
        assert len(receiver.requests("/hook")) == 3


def test_client_error_is_not_retried_and_410_switches_the_webhook_off(nctx, owner, clock):
    with FakeHttp(lambda seen: Reply(410 if seen.path == "/gone" else 400, "")) as receiver:
        add_webhook(nctx, owner, receiver.url + "/bad")
        add_webhook(nctx, owner, receiver.url + "/gone")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        outbox.deliver_due(nctx)
        clock.advance(timedelta(hours=3))
        outbox.deliver_due(nctx)
        assert {r.delivery for r in notifications(nctx, channel="webhook")} == {"failed"}
        assert len(receiver.requests()) == 2
        from cloud.models import Webhook

        with nctx.sessions() as session:
            active = {w.url.rsplit("/", 1)[1]: w.active for w in session.query(Webhook)}
        assert active == {"bad": True, "gone": False}


def test_ingest_is_not_slowed_by_a_dead_channel(nctx, owner):
    """A webhook whose server hangs up: ingest never touches the network; the row waits in the outbox."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    connections = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(conn)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        add_webhook(nctx, owner, f"http://127.0.0.1:{server.getsockname()[1]}/hook")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        assert connections == [], "ingest/emit must not call the channel"
        [hook] = notifications(nctx, channel="webhook")
        assert hook.delivery == "pending"
        outbox.deliver_due(nctx)
        assert connections, "delivery is what calls the channel"
        [hook] = notifications(nctx, channel="webhook")
        assert hook.delivery == "pending" and hook.last_error
    finally:
        server.close()


def test_claim_lost_mid_send_is_not_resent(nctx, owner, clock):
    """At most once: a row left running by a dead worker ends dead with the outcome 'unknown'
    (it may have gone out) and is never sent, however long the outbox keeps delivering."""
    from cloud.jobs import JobState
    from cloud.models import Outcome

    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    claimed = outbox.claim_due(nctx, limit=10)  # a worker claims, then dies before sending
    assert [c.channel for c in claimed] == ["console"]
    registry = _registry(nctx)
    try:
        assert outbox.deliver_due(nctx, registry) == 0
        clock.advance(timedelta(seconds=nctx.settings.notify.send_lease_s + 1))
        assert outbox.deliver_due(nctx, registry) == 0
        clock.advance(timedelta(days=1))
        assert outbox.deliver_due(nctx, registry) == 0
        assert list(registry.get("console").recent) == []
    finally:
        registry.close()
    [row] = notifications(nctx, kind="mail_arrived")
    assert (row.status, row.outcome, row.delivery) == (JobState.DEAD, Outcome.UNKNOWN, "unknown")


@pytest.mark.parametrize(("reply", "word"), [(Reply(503, "down"), "unknown"), (Reply(204, ""), "sent")])
def test_a_send_that_outlives_its_lease_is_never_repeated(nctx, owner, clock, reply, word):
    """A webhook that answers only after the lease expired (the row is buried as unknown meanwhile):
    a late failure does not make the row due again (the request may have been received), and a
    late success is logged as sent. Either way the webhook gets the alert once."""
    with FakeHttp(lambda seen: reply) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        [item] = [c for c in outbox.claim_due(nctx, limit=10) if c.channel == "webhook"]
        clock.advance(timedelta(seconds=nctx.settings.notify.send_lease_s + 1))
        outbox.claim_due(nctx, limit=10)  # another worker's pass buries the expired lease
        assert notifications(nctx, channel="webhook")[0].delivery == "unknown"
        registry = _registry(nctx)
        try:
            outbox.deliver_one(nctx, registry, item)  # the slow send finally ends
            clock.advance(timedelta(hours=3))
            outbox.deliver_due(nctx, registry)
        finally:
            registry.close()
        assert len(receiver.requests("/hook")) == 1
        assert notifications(nctx, channel="webhook")[0].delivery == word


def test_outbox_rows_and_analysis_jobs_go_through_one_job_lifecycle(nctx, owner):
    """Both durable queues speak cloud.jobs.JobState: pending, running while leased, then done.
    (The outbox used to say held/sending/sent/failed for its queue state.) What happened to the
    message is its outcome, which the delivery log shows in its own words."""
    from sqlalchemy import select

    from cloud.jobs import JobState
    from cloud.models import AnalysisJob, Notification
    from cloud.vision.pipeline import run_job
    from cloud.vision.worker import claim_next, pipeline_for

    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))

    def states() -> tuple:
        with nctx.sessions() as session:
            job = session.scalar(select(AnalysisJob.status).where(AnalysisJob.capture_pk == pk))
            sent = session.scalar(select(Notification.status).where(Notification.kind == "mail_arrived"))
            return job, sent

    assert states() == (JobState.PENDING, JobState.PENDING)
    job_id = claim_next(nctx, "test-worker")
    [item] = outbox.claim_due(nctx, limit=10)
    assert states() == (JobState.RUNNING, JobState.RUNNING)
    assert notifications(nctx, kind="mail_arrived")[0].delivery == "sending"
    run_job(pipeline_for(nctx), job_id, "test-worker")
    registry = _registry(nctx)
    try:
        assert outbox.deliver_one(nctx, registry, item)
    finally:
        registry.close()
    assert states() == (JobState.DONE, JobState.DONE)
    [row] = notifications(nctx, kind="mail_arrived")
    assert (row.outcome, row.delivery) == ("sent", "sent")


def test_event_for_unowned_device_or_missing_user_is_ignored(nctx, owner):
    from cloud.events import DomainEvent, Event

    emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=None, key="budget:x"))
    emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=99999, key="budget:y"))
    emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=owner.user_id, key="budget:z"))
    assert [r.kind for r in notifications(nctx)] == ["ai_budget_reached"]


@pytest.mark.parametrize(("status", "outcome"), [("done", None), ("running", "sent"), ("dead", "held"),
                                                 ("pending", "sent"), ("dead", None)])
def test_the_database_refuses_a_row_the_delivery_log_could_not_name(nctx, owner, status, outcome):
    """Queue state and outcome are two columns that must tell one story (ck_notifications_outcome):
    a row done without an outcome, or sending with one, has no word in the owner's log."""
    from sqlalchemy.exc import IntegrityError

    from cloud.models import Notification

    now = nctx.clock.now()
    with nctx.sessions() as session:
        session.add(Notification(user_id=owner.user_id, kind="mail_arrived", event_key="mail_arrived:x",
                                 channel="console", recipient="console", title="Mail", body="", data={},
                                 status=status, outcome=outcome, attempts=0, next_attempt_at=now, created_at=now))
        with pytest.raises(IntegrityError):
            session.commit()
    assert notifications(nctx) == []


@pytest.mark.parametrize("kind", list(DomainEvent))
def test_only_the_kinds_the_sink_reads_can_notify(kind):
    """The sink skips events outside ``NOTIFYING`` before loading anything (each photo and telemetry
    is an event): every kind outside it must mean no notification, whatever its payload says."""
    from cloud.notify.mapping import NOTIFYING, drafts_for
    from cloud.notify.preferences import Preferences, validate_events

    everything = {"transition": "arrived", "mail_detected": True, "confidence": 0.99, "package_present": True,
                  "image_quality": "too_dark", "items": [{"type": "letter"}], "device_serial": "box-1",
                  "capture_id": "cap-1", "voltage": 3.1, "error": "boom", "count": 3}
    every_event = validate_events({name: ["console"] for name in kinds.ALL_KINDS})
    preferences = Preferences(user_id=1, timezone="UTC", account_email="a@example.com", events=every_event,
                              min_confidence=0.0)
    drafts = drafts_for(Event(kind, user_id=1, device_id=1, capture_pk=1, data=everything), preferences, "Gate")
    assert kind in NOTIFYING or drafts == []
    if kind in (DomainEvent.ANALYSIS_COMPLETED, DomainEvent.MAIL_DELIVERY, DomainEvent.LOW_BATTERY):
        assert kind in NOTIFYING and drafts  # the payload above does notify these


@pytest.mark.parametrize("kind", list(DomainEvent))
@pytest.mark.parametrize("quality", ["ok", "too_dark", None])
@pytest.mark.parametrize("source", ["model", "prefilter", "cache", "unchanged"])
@pytest.mark.parametrize("analysis_kind", ["initial", "reanalyse"])
def test_an_event_the_sink_calls_silent_notifies_nobody_whatever_the_preferences(kind, quality, source,
                                                                                  analysis_kind):
    """The sink reads no owner, preferences or device for a silent event (an analysis of a usable photo):
    no preferences, not even every kind on every channel with no confidence floor, may make it notify."""
    from cloud.notify.mapping import drafts_for, silent
    from cloud.notify.preferences import Preferences, validate_events

    data = {"transition": "arrived", "mail_detected": True, "confidence": 0.99, "package_present": True,
            "image_quality": quality, "source": source, "analysis_kind": analysis_kind, "items": [],
            "device_serial": "box-1", "capture_id": "cap-1", "voltage": 3.1, "error": "boom", "count": 3}
    every_event = validate_events({name: ["console"] for name in kinds.ALL_KINDS})
    for preferences in (Preferences(user_id=1, timezone="UTC", account_email="a@example.com", events=every_event,
                                    min_confidence=0.0),
                        Preferences(user_id=1, timezone="UTC", account_email="a@example.com")):
        drafts = drafts_for(Event(kind, user_id=1, device_id=1, capture_pk=1, data=data), preferences, "Gate")
        assert not (silent(Event(kind, user_id=1, device_id=1, capture_pk=1, data=data)) and drafts)
    retake = kind == DomainEvent.ANALYSIS_COMPLETED and quality == "too_dark" and analysis_kind == "initial" \
        and source in ("model", "prefilter")
    if retake:
        assert drafts and drafts[0].kind == kinds.RETAKE_NEEDED
