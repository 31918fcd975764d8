"""The outbox delivery worker: a named background thread, started and stopped with the app."""

from __future__ import annotations

import enum
import logging
import threading

from cloud.context import AppContext
from cloud.notify.outbox import deliver_batch
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
                claimed = deliver_batch(self.ctx, self.registry).claimed
                failures = 0
            except Exception:  # the database is away: rows stay in the outbox; try again later
                failures += 1
                log.exception("notification delivery batch failed (%s in a row)", failures)
                claimed = 0
            if claimed == 0:
                self._stop.wait(min(60.0, poll * (2 ** min(failures, 6))))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.registry.close()
        self.state = WorkerState.STOPPED
