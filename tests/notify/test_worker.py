"""The delivery worker as a service, and several delivering processes sharing one outbox."""

from __future__ import annotations

import threading
from collections import Counter

from cloud.context import AppContext
from cloud.events import DomainEvent, Event
from cloud.notify import outbox
from cloud.notify.worker import DeliveryWorker, WorkerState
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
