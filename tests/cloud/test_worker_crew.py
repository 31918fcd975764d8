"""A wakeup wakes one worker of a crew, not all; a burst still spreads; no wakeup is slept on.

Found in issue 16's profile: each new analysis job woke both vision workers; both looked, one
found the job and the other nothing, and the winner looked again after its job. A third of the
vision threads' Python time per capture went to claiming. These tests drive ``cloud.worker.Crew``
with workers of an in-memory queue (``QueueWorker``), so they count passes, not SQL.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.context import AppContext
from cloud.worker import Crew, Worker, name_os_thread
from tests.gateway.kit import wait_until
from tests.livekit import DEADLINE_S

TOPIC = "crew-test"
NO_POLL_S = 60.0  # far longer than the tests: only a wakeup can start a pass


class Queue:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.lock = threading.Lock()
        self.taken = threading.Condition(self.lock)
        self.done: list[str] = []

    def put(self, *items: str) -> None:
        with self.lock:
            self.items.extend(items)


class QueueWorker(Worker):
    """Takes one item per pass; tells the crew when more are left (as a vision claim does)."""

    def __init__(self, ctx: AppContext, crew: Crew, queue: Queue, name: str,
                 holding: Callable[[QueueWorker, str | None], None] | None = None) -> None:
        super().__init__(ctx, name=name, topic=TOPIC, poll_s=NO_POLL_S, crew=crew)
        self.queue = queue
        self.passes = 0
        self.took: list[str] = []
        self.holding = holding

    def step(self) -> bool:
        self.passes += 1
        with self.queue.lock:
            item = self.queue.items.pop(0) if self.queue.items else None
            more = bool(self.queue.items)
        if more:
            self.crew.wake()
        if self.holding is not None:
            self.holding(self, item)
        if item is None:
            return False
        self.took.append(item)
        with self.queue.lock:
            self.queue.done.append(item)
            self.queue.taken.notify_all()
        return True


def wait_taken(queue: Queue, count: int) -> None:
    with queue.lock:
        assert queue.taken.wait_for(lambda: len(queue.done) >= count, DEADLINE_S), queue.done


@pytest.fixture
def crew(cloud_ctx: AppContext) -> Iterator[Crew]:
    # On PostgreSQL the LISTEN connection wakes every topic once when it connects (whatever was committed
    # before it listened). Connected here, before any worker joins, that wakeup finds no crew to wake; left
    # to the first worker's join, it landed in a test's counted passes now and then (1 run in 15).
    cloud_ctx.wakeups.start()
    assert cloud_ctx.wakeups.listening.wait(DEADLINE_S), "the wakeup listener connected"
    crew = Crew(cloud_ctx, TOPIC)
    yield crew
    cloud_ctx.wakeups.stop()


def start(workers: list[QueueWorker], crew: Crew) -> None:
    for worker in workers:
        worker.start()
    wait_until(lambda: crew.waiting == len(workers), DEADLINE_S, "every worker waiting after its first pass")


def test_a_wakeup_wakes_one_waiting_worker_not_all(cloud_ctx, crew):
    queue = Queue()
    workers = [QueueWorker(cloud_ctx, crew, queue, f"w{n}") for n in range(3)]
    start(workers, crew)
    try:
        passes_before = sum(w.passes for w in workers)
        queue.put("job-1")
        cloud_ctx.wakeups.wake(TOPIC)
        wait_taken(queue, 1)
        wait_until(lambda: crew.waiting == 3, DEADLINE_S, "the worker waiting again")
        # the one woken took the job and looked once more; the others never stirred
        assert sum(w.passes for w in workers) - passes_before == 2
        assert [len(w.took) for w in workers].count(1) == 1
    finally:
        for worker in workers:
            worker.stop()


def test_a_burst_announced_once_spreads_over_the_crew(cloud_ctx, crew):
    """Two jobs committed together send one wakeup: the worker that takes the first passes it on,
    and the two run side by side (each holds its job until the other has one, or the test fails)."""
    queue = Queue()
    both_busy = threading.Barrier(2, timeout=DEADLINE_S)

    def hold(worker: QueueWorker, item: str | None) -> None:
        if item is not None:
            both_busy.wait()  # BrokenBarrierError if the second job waits for the first

    workers = [QueueWorker(cloud_ctx, crew, queue, f"w{n}", holding=hold) for n in range(2)]
    start(workers, crew)
    try:
        queue.put("job-1", "job-2")
        cloud_ctx.wakeups.wake(TOPIC)
        wait_taken(queue, 2)
        assert sorted(len(w.took) for w in workers) == [1, 1]
    finally:
        for worker in workers:
            worker.stop()


def test_work_announced_while_no_worker_waits_is_not_slept_on(cloud_ctx, crew):
    """The worker has looked and found nothing, but has not begun to wait, when the job commits:
    no one is waiting to be woken, so everyone must look again before sleeping."""
    queue = Queue()
    looked_empty, announced = threading.Event(), threading.Event()

    def hold(worker: QueueWorker, item: str | None) -> None:
        if item is None and worker.passes == 2:  # the pass after the first wait: it found nothing
            looked_empty.set()
            assert announced.wait(DEADLINE_S)

    worker = QueueWorker(cloud_ctx, crew, queue, "w0", holding=hold)
    start([worker], crew)
    try:
        worker.wake()  # a pass that will find nothing and stop before it waits
        assert looked_empty.wait(DEADLINE_S)
        assert crew.waiting == 0
        queue.put("job-1")
        cloud_ctx.wakeups.wake(TOPIC)
        announced.set()
        wait_taken(queue, 1)  # long before the 60 s poll
    finally:
        worker.stop()


def test_a_stopped_crew_no_longer_listens(cloud_ctx, crew):
    queue = Queue()
    workers = [QueueWorker(cloud_ctx, crew, queue, f"w{n}") for n in range(2)]
    start(workers, crew)
    for worker in workers:
        worker.stop()
    queue.put("job-1")
    cloud_ctx.wakeups.wake(TOPIC)  # no subscriber left: nothing runs, nothing fails
    assert queue.items == ["job-1"] and crew.waiting == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel thread names are Linux's /proc")
def test_a_workers_thread_carries_its_name_in_the_kernel(cloud_ctx, crew):
    """``top -H``, ``ps -L`` and bench/e2e.py's CPU split see "vision-worker-0", not "python"."""
    queue = Queue()
    seen: dict[str, str] = {}

    def hold(worker: QueueWorker, item: str | None) -> None:
        seen.setdefault("comm", Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    worker = QueueWorker(cloud_ctx, crew, queue, "vision-worker-0", holding=hold)
    start([worker], crew)
    try:
        assert seen["comm"] == "vision-worker-0"
        assert Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip() != "vision-worker-0"
    finally:
        worker.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel thread names are Linux's /proc")
def test_a_long_name_is_cut_to_what_the_kernel_keeps():
    names: list[str] = []

    def run() -> None:
        name_os_thread("notify-delivery-and-more")
        names.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE_S)
    assert names == ["notify-delivery"]
