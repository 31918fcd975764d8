"""The one background-worker loop: work while there is work, sleep until woken, back off on failure.

    ┌─► step() ── did work ──────────────────────────────┐
    │      │ nothing to do          │ raised (database away) │
    │      ▼                        ▼                        │
    │  wait: a wakeup or poll_s   wait: backoff_s(failures)  │
    └──────┴────────────────────────┴────────────────────────┘

A worker subscribes to its queue's topic (``cloud.wakeups``): a commit that creates its work, in
this process or (PostgreSQL) any replica, ends the wait at once. ``poll_s`` is only the safety net
for work nobody announced (a retry whose backoff ended, a lease that expired). The wake flag is
cleared *before* each step, so work committed during a step is seen by the next one, never slept on.
"""

from __future__ import annotations

import abc
import enum
import logging
import threading

from cloud.context import AppContext
from cloud.jobs import backoff_s

log = logging.getLogger("mailcam.worker")

FAILURE_BACKOFF_BASE_S = 0.5
FAILURE_BACKOFF_MAX_S = 60.0


class WorkerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Worker(abc.ABC):
    """Subclasses implement ``step`` (one pass; True when it did something) and may extend stop."""

    def __init__(self, ctx: AppContext, *, name: str, topic: str, poll_s: float) -> None:
        self.ctx = ctx
        self.name = name
        self.topic = topic
        self.poll_s = poll_s
        self.state = WorkerState.NEW
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None

    @abc.abstractmethod
    def step(self) -> bool:
        """One pass over the queue; True when it did some work (then the loop goes on at once)."""

    def wake(self) -> None:
        """Look for work now (called by wakeups, or by the worker itself when capacity frees up)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._unsubscribe = self.ctx.wakeups.subscribe(self.topic, self.wake)
        self.ctx.wakeups.start()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.state = WorkerState.RUNNING
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                worked = self.step()
                failures = 0
            except Exception:  # the database is away: the work stays in its table; try again later
                failures += 1
                log.exception("%s: pass failed (%s in a row)", self.name, failures)
                worked = False
            if worked:
                continue
            pause = backoff_s(failures, FAILURE_BACKOFF_BASE_S, FAILURE_BACKOFF_MAX_S) if failures else self.poll_s
            self._wake.wait(pause)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self.ctx.wakeups.stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        self.state = WorkerState.STOPPED
