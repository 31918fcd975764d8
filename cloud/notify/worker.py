"""The outbox delivery worker: a named background thread, started and stopped with the app.

It claims due rows only as sender threads free up and sends each row in its own thread, so
a slow recipient holds one sender for at most its channel's deadline, never a whole batch.
One user holds at most ``sends_per_user`` senders at a time: a user with many slow webhooks
(or a hostile one) cannot take the senders every other user's notifications need.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from cloud.context import AppContext
from cloud.notify.outbox import Claimed, claim_due, deliver_one
from cloud.notify.registry import ChannelRegistry

log = logging.getLogger("mailcam.notify.worker")


class WorkerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class DeliveryWorker:
    def __init__(self, ctx: AppContext, registry: ChannelRegistry | None = None) -> None:
        self.ctx = ctx
        self.registry = registry or ChannelRegistry(ctx.settings.notify, now=ctx.clock.now)
        self.state = WorkerState.NEW
        settings = ctx.settings.notify
        self._senders = max(1, settings.senders)
        self._per_user = max(1, settings.sends_per_user)
        self._pool = ThreadPoolExecutor(max_workers=self._senders, thread_name_prefix="notify-send")
        self._in_flight: Counter[int] = Counter()  # user id -> sends running
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a send finished (a sender is free) or stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-delivery", daemon=True)

    def start(self) -> None:
        self.state = WorkerState.RUNNING
        self._thread.start()

    def _run(self) -> None:
        poll = self.ctx.settings.notify.worker_poll_interval_s
        failures = 0
        while not self._stop.is_set():
            try:
                claimed = self._dispatch()
                failures = 0
            except Exception:  # the database is away: rows stay in the outbox; try again later
                failures += 1
                log.exception("notification delivery dispatch failed (%s in a row)", failures)
                claimed = 0
            if claimed == 0:
                self._wake.wait(min(60.0, poll * (2 ** min(failures, 6))))
                self._wake.clear()

    def _dispatch(self) -> int:
        """Claim as many due rows as there are free senders and start sending them."""
        with self._lock:
            free = self._senders - sum(self._in_flight.values())
            in_flight = dict(self._in_flight)
        if free <= 0:
            return 0
        limit = min(free, self.ctx.settings.notify.batch_size)
        claimed = claim_due(self.ctx, limit=limit, in_flight=in_flight, per_user=self._per_user)
        for item in claimed:
            with self._lock:
                self._in_flight[item.user_id] += 1
            self._pool.submit(self._send, item)
        return len(claimed)

    def _send(self, item: Claimed) -> None:
        try:
            deliver_one(self.ctx, self.registry, item)
        except Exception:  # recording the outcome failed (the database): the lease marks it unknown
            log.exception("notification %s: recording the outcome failed", item.notification_id)
        finally:
            with self._lock:
                self._in_flight[item.user_id] -= 1
                if self._in_flight[item.user_id] <= 0:
                    del self._in_flight[item.user_id]
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        # Sends in flight end within their channel's deadline.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.registry.close()
        self.state = WorkerState.STOPPED
