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

Workers of one queue in one process form a ``Crew``: a wakeup wakes one of them, not all (see there).
"""

from __future__ import annotations

import abc
import ctypes
import enum
import logging
import sys
import threading
from collections.abc import Callable

from cloud.context import AppContext
from cloud.jobs import backoff_s

log = logging.getLogger("mailcam.worker")

FAILURE_BACKOFF_BASE_S = 0.5
FAILURE_BACKOFF_MAX_S = 60.0


_PR_SET_NAME = 15  # prctl(2)


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too (Linux keeps 15 bytes of it): ``top -H``,
    ``ps -L`` and ``/proc/<pid>/task/*/comm`` then tell the workers apart, and bench/e2e.py splits the
    cloud's CPU by them. Python before 3.14 leaves every thread named as the process. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # no libc to call: the name is only a convenience
        pass


class WorkerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Worker(abc.ABC):
    """Subclasses implement ``step`` (one pass; True when more work may be waiting) and may extend stop."""

    def __init__(self, ctx: AppContext, *, name: str, topic: str, poll_s: float, crew: Crew | None = None) -> None:
        self.ctx = ctx
        self.name = name
        self.topic = topic
        self.poll_s = poll_s
        self.crew = crew or Crew(ctx, topic)
        self.state = WorkerState.NEW
        # This pass follows a wakeup: work was just announced (a claim need not look before it takes).
        self.announced = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def step(self) -> bool:
        """One pass over the queue; True when more work may be waiting (then the loop goes on at once)."""

    def wake(self) -> None:
        """Look for work now (called by wakeups, or by the worker itself when capacity frees up)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self.crew.join(self)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.state = WorkerState.RUNNING
        self._thread.start()

    def _run(self) -> None:
        name_os_thread(self.name)
        failures = 0
        woken = False
        while not self._stop.is_set():
            self._wake.clear()
            self.announced, woken = woken, False
            try:
                worked = self.step()
                failures = 0
            except Exception:  # the database is away: the work stays in its table; try again later
                failures += 1
                log.exception("%s: pass failed (%s in a row)", self.name, failures)
                worked = False
            if worked:  # more may be waiting: the next pass goes straight to it, as after a wakeup
                woken = True
                continue
            pause = backoff_s(failures, FAILURE_BACKOFF_BASE_S, FAILURE_BACKOFF_MAX_S) if failures else self.poll_s
            woken = self.crew.wait(self, pause)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.state is WorkerState.RUNNING:
            self.crew.leave(self)
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        self.state = WorkerState.STOPPED


class Crew:
    """The workers of one queue in this process: a wakeup wakes one of them, not all.

    When every new job woke every worker, all of them looked and all but one found nothing: a read
    each per job, and a write transaction for one that looked just as another took the job. Now a
    wakeup goes to one worker waiting for work (the one waiting longest); a worker whose claim saw
    more work due passes it on (``wake`` again), so a burst still spreads over the crew. When no
    worker is waiting, every one is told to look again after its pass, as before: one of them may
    have looked just before the work was committed, and must not sleep on it.

    The crew subscribes to its topic while it has members.
    """

    def __init__(self, ctx: AppContext, topic: str) -> None:
        self.ctx = ctx
        self.topic = topic
        self._lock = threading.Lock()
        self._members: list[Worker] = []
        self._waiting: list[Worker] = []  # in the order they began to wait
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def waiting(self) -> int:
        """How many of its workers are waiting for work now."""
        with self._lock:
            return len(self._waiting)

    def join(self, worker: Worker) -> None:
        with self._lock:
            self._members.append(worker)
            first = len(self._members) == 1
        self.ctx.wakeups.start()  # reference-counted: one listener per process, kept while anyone uses it
        if first:
            self._unsubscribe = self.ctx.wakeups.subscribe(self.topic, self.wake)

    def leave(self, worker: Worker) -> None:
        with self._lock:
            if worker not in self._members:
                return
            self._members.remove(worker)
            last = not self._members
        if last and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.ctx.wakeups.stop()

    def wake(self) -> None:
        """Work was announced: one waiting worker looks (or, with none waiting, all look again)."""
        with self._lock:
            if self._waiting:
                self._waiting.pop(0).wake()
                return
            members = list(self._members)
        for worker in members:
            worker.wake()

    def wait(self, worker: Worker, timeout_s: float) -> bool:
        """``worker`` waits for a wakeup (True) or ``timeout_s`` (False)."""
        with self._lock:
            self._waiting.append(worker)
        try:
            return worker._wake.wait(timeout_s)
        finally:
            with self._lock:
                if worker in self._waiting:
                    self._waiting.remove(worker)
