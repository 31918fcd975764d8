"""The delivery worker as a service, and several delivering processes sharing one outbox."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from cloud.context import AppContext
from cloud.events import DomainEvent, Event
from cloud.notify import outbox
from cloud.notify.worker import DeliveryWorker, WorkerState
from tests.gateway.kit import wait_until
from tests.livekit import DEADLINE_S
from tests.notify.conftest import add_webhook, analysis_event, emit, notifications, store_capture
from tests.notify.fakes import FakeHttp, Reply


def test_worker_service_delivers_in_the_background(nctx, owner):
    nctx.settings.notify.worker_poll_interval_s = 0.05
    with FakeHttp(lambda seen: Reply(200, {})) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        worker = DeliveryWorker(nctx)
        worker.start()
        try:
            pk = store_capture(nctx, owner, "cap-1")
            emit(nctx, analysis_event(owner, pk, "cap-1"))
            [hit] = receiver.wait_for(1, "/hook")
        finally:
            worker.stop()
    assert worker.state is WorkerState.STOPPED
    assert hit.json()["event"] == "mail_arrived"


def test_two_processes_deliver_each_notification_exactly_once(nctx, owner, cloud_settings, clock):
    """Two contexts with their own engines (as two cloud processes) drain one outbox at once."""
    with FakeHttp(lambda seen: Reply(200, {})) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        with nctx.sessions() as session:
            for n in range(40):
                nctx.events.emit(session, Event(DomainEvent.AI_BUDGET_REACHED, user_id=owner.user_id, key=f"b:{n}"))
            session.commit()
        other = AppContext.build(cloud_settings, clock=clock)
        other.settings.notify.batch_size = nctx.settings.notify.batch_size = 5
        try:
            sent: list[int] = []
            start = threading.Barrier(2)

            def drain(ctx: AppContext) -> None:
                start.wait()
                sent.append(outbox.deliver_due(ctx))

            threads = [threading.Thread(target=drain, args=(c,)) for c in (nctx, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            other.engine.dispose()
        deliveries = Counter(s.headers["x-mailcam-delivery"] for s in receiver.requests("/hook"))
    assert sum(sent) == 80  # 40 webhook + 40 console
    assert len(deliveries) == 40 and set(deliveries.values()) == {1}
    assert {r.delivery for r in notifications(nctx)} == {"sent"}


@contextmanager
def _started_worker(nctx: AppContext) -> Iterator[DeliveryWorker]:
    """A delivery worker that only wakeups start passes for (no poll within reach, no console row).
    Started after PostgreSQL's LISTEN connection, which wakes every topic once when it connects."""
    nctx.settings.notify.worker_poll_interval_s = 60.0
    nctx.settings.notify.console = False
    nctx.wakeups.start()
    assert nctx.wakeups.listening.wait(DEADLINE_S)
    worker = DeliveryWorker(nctx)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        nctx.wakeups.stop()


def test_a_lone_alert_costs_one_claim(nctx, owner, monkeypatch):
    """A claim that took fewer rows than it asked for, with no user at the cap, saw every row due: the
    worker does not look again straight after it, nor after the send (each look found nothing, a write
    transaction per alert). New rows announce themselves; rows left at a user's cap: the next test."""
    from cloud.notify import worker as worker_module

    passes: list[int] = []
    claim = worker_module.claim_due

    def counted(*args, **kwargs):
        claimed = claim(*args, **kwargs)
        passes.append(len(claimed))
        return claimed

    monkeypatch.setattr(worker_module, "claim_due", counted)
    release = threading.Event()
    with FakeHttp(lambda seen: Reply(200, {}) if release.wait(DEADLINE_S) else Reply(504, {})) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        with _started_worker(nctx) as worker:
            try:
                wait_until(lambda: worker.crew.waiting == 1, DEADLINE_S, "the worker waiting after its first look")
                before = len(passes)
                emit(nctx, analysis_event(owner, store_capture(nctx, owner, "cap-1"), "cap-1"))
                receiver.wait_for(1, "/hook")  # the send is in flight, held by the fake
                wait_until(lambda: worker.crew.waiting == 1, DEADLINE_S, "the worker waiting while its send is out")
                assert passes[before:] == [1]  # no look straight after the claim
                release.set()
                wait_until(lambda: [r.delivery for r in notifications(nctx)] == ["sent"] and not worker._in_flight,
                           DEADLINE_S, "the send recorded")
                # a second alert is claimed as it comes: the worker was not left asleep
                emit(nctx, analysis_event(owner, store_capture(nctx, owner, "cap-2"), "cap-2"))
                receiver.wait_for(2, "/hook")
                wait_until(lambda: [r.delivery for r in notifications(nctx)] == ["sent", "sent"]
                           and not worker._in_flight, DEADLINE_S, "both sends recorded")
            finally:
                release.set()  # before the worker stops: it waits for its sends
    assert passes[before:] == [1, 1]


def test_rows_left_at_a_users_cap_go_when_a_send_finishes(nctx, owner):
    """Three webhooks, one send at a time per user, and no poll in reach: each finished send wakes the
    worker for the next row, so all three go at once one after the other."""
    nctx.settings.notify.senders = 4
    nctx.settings.notify.sends_per_user = 1
    with FakeHttp(lambda seen: Reply(200, {})) as receiver:
        for n in range(3):
            add_webhook(nctx, owner, receiver.url + f"/hook{n}")
        with _started_worker(nctx):
            emit(nctx, analysis_event(owner, store_capture(nctx, owner, "cap-1"), "cap-1"))
            wait_until(lambda: len(receiver.seen) == 3, DEADLINE_S, "all three webhooks called")


def test_a_failed_send_due_again_at_once_is_retried_without_the_poll(nctx, owner):
    """With no backoff configured (``retry_base_s = 0``) a failed send's row is due again at once, and
    no new row announces it: the failed send wakes the worker itself, as any send did before."""
    nctx.settings.notify.retry_base_s = 0.0
    answers = iter([Reply(500, {}), Reply(200, {})])
    with FakeHttp(lambda seen: next(answers)) as receiver:
        add_webhook(nctx, owner, receiver.url + "/hook")
        with _started_worker(nctx):
            emit(nctx, analysis_event(owner, store_capture(nctx, owner, "cap-1"), "cap-1"))
            receiver.wait_for(2, "/hook")
            wait_until(lambda: [r.delivery for r in notifications(nctx)] == ["sent"], DEADLINE_S, "sent on retry")
