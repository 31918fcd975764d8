"""The outbox delivery worker (``cloud.worker.Worker``), started and stopped with the app.

It claims due rows only as sender threads free up and sends each row in its own thread, so
a slow recipient holds one sender for at most its channel's deadline, never a whole batch.
One user holds at most ``sends_per_user`` senders at a time: a user with many slow webhooks
(or a hostile one) cannot take the senders every other user's notifications need.
A new outbox row (``cloud.wakeups.NOTIFY``) wakes it at once; so does a freed sender, when rows were
left for one (every sender busy, a full claim, a user at the cap) or its own send failed.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from cloud import wakeups
from cloud.context import AppContext
from cloud.notify.outbox import Claimed, claim_due, deliver_one
from cloud.notify.registry import ChannelRegistry
from cloud.worker import Worker, WorkerState, name_os_thread

log = logging.getLogger("mailcam.notify.worker")

__all__ = ["DeliveryWorker", "WorkerState"]


class DeliveryWorker(Worker):
    def __init__(self, ctx: AppContext, registry: ChannelRegistry | None = None) -> None:
        super().__init__(
            ctx, name="notify-delivery", topic=wakeups.NOTIFY, poll_s=ctx.settings.notify.worker_poll_interval_s
        )
        self.registry = registry or ChannelRegistry.for_context(ctx)
        settings = ctx.settings.notify
        self._senders = max(1, settings.senders)
        self._per_user = max(1, settings.sends_per_user)
        self._pool = ThreadPoolExecutor(max_workers=self._senders, thread_name_prefix="notify-send",
                                        initializer=name_os_thread, initargs=("notify-send",))
        self._in_flight: Counter[int] = Counter()  # user id -> sends running
        # Rows may be left due that only a finished send lets this worker claim: all senders were busy, the
        # claim took as many as it could, or a user's sends were at the cap. Otherwise a finished send
        # need not wake it: new rows announce themselves (wakeups.NOTIFY).
        self._rows_may_wait = False
        self._lock = threading.Lock()

    def step(self) -> bool:
        """Claim as many due rows as there are free senders and start sending them."""
        with self._lock:
            free = self._senders - sum(self._in_flight.values())
            in_flight = dict(self._in_flight)
        if free <= 0:
            with self._lock:
                self._rows_may_wait = True
            return False  # a finishing send wakes us
        limit = min(free, self.ctx.settings.notify.batch_size)
        claimed = claim_due(self.ctx, limit=limit, in_flight=in_flight, per_user=self._per_user)
        for item in claimed:
            with self._lock:
                self._in_flight[item.user_id] += 1
            self._pool.submit(self._send, item)
        # Fewer than asked for: the claim saw every row due now. The rows it left (their user's sends at
        # the cap) are claimed when a send finishes, which wakes this worker; looking again at once, or
        # after every send, found nothing: a write transaction each.
        more = len(claimed) >= limit
        with self._lock:
            self._rows_may_wait = more or any(n >= self._per_user for n in self._in_flight.values())
        return more

    def _send(self, item: Claimed) -> None:
        sent = False
        try:
            sent = deliver_one(self.ctx, self.registry, item)
        except Exception:  # recording the outcome failed (the database): the lease marks it unknown
            log.exception("notification %s: recording the outcome failed", item.notification_id)
        finally:
            with self._lock:
                self._in_flight[item.user_id] -= 1
                if self._in_flight[item.user_id] <= 0:
                    del self._in_flight[item.user_id]
                wake = self._rows_may_wait
            # A failed send's row is due again after its backoff, announced by no one: look (it is rare)
            if wake or not sent:
                self.wake()

    def stop(self, timeout_s: float = 30.0) -> None:
        super().stop(timeout_s)
        # Sends in flight end within their channel's deadline.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.registry.close()
