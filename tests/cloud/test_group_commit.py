"""Captures arriving together share one commit (cloud/groupcommit.py): each is answered only after
its rows committed, a duplicate in the same batch is still one capture, and one capture's error
does not take the others of its batch down."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pytest
from sqlalchemy import func, select

from cloud.models import AnalysisJob, Capture, Device
from tests.cloudkit import capture_body, jpeg_bytes, new_account, new_device


def test_concurrent_captures_are_each_stored_once_with_their_job(api, cloud_ctx):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    # 12 distinct captures and the same capture id sent 4 times, all at once.
    bodies = [capture_body("box-1", jpeg_bytes(seed=40 + n), capture_id=f"cap-{n}") for n in range(12)]
    bodies += [capture_body("box-1", jpeg_bytes(seed=99), capture_id="twice")] * 4
    start = threading.Barrier(len(bodies))

    def post(body: dict) -> tuple[int, dict]:
        start.wait(30)
        answer = api.post("/api/device/capture/", json=body, headers=box.headers)
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(post, bodies))
    assert all(code == 200 and body["status"] == "saved" for code, body in answers), answers
    assert {body["capture_id"] for _, body in answers} == {f"cap-{n}" for n in range(12)} | {"twice"}
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Capture)) == 13
        assert session.scalar(select(func.count()).select_from(AnalysisJob)) == 13
        assert session.scalar(select(Device.last_seen_at).where(Device.serial == "box-1")) is not None


def test_one_failing_piece_of_work_leaves_the_rest_of_its_batch_committed(cloud_ctx, api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    group = cloud_ctx.group_commit
    inside = threading.Event()
    go_on = threading.Event()

    def first(session):  # holds the leader until the others have queued behind it
        inside.set()
        assert go_on.wait(30)
        session.execute(Device.__table__.update().values(name="renamed"))
        return "first"

    def failing(session):
        session.execute(Device.__table__.update().values(name="never"))
        raise ValueError("this capture is refused")

    def later(session):
        return session.scalar(select(Device.name))

    with ThreadPoolExecutor(3) as pool:
        leader = pool.submit(group.run, first)
        assert inside.wait(30)
        refused = pool.submit(group.run, failing)
        after = pool.submit(group.run, later)
        go_on.set()
        assert leader.result(30) == "first"
        assert isinstance(refused.exception(30), ValueError)
        assert after.result(30) == "renamed"  # the failed piece was rolled back to its savepoint
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(Device.name)) == "renamed"


def test_a_duplicate_refused_in_a_batch_is_answered_after_the_row_that_refused_it_committed(cloud_ctx):
    """Expected: a capture refused for a duplicate capture_id finds the first one committed (and answers
    "saved"). Happened on PostgreSQL: the refusal was handed out during the batch, the lookup saw
    nothing yet, and the request failed with 500."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import IntegrityError

    from cloud.models import JobRun

    group = cloud_ctx.group_commit
    inside, go_on = threading.Event(), threading.Event()

    def hold(session):
        inside.set()
        assert go_on.wait(30)

    def insert(session):
        session.add(JobRun(job="dup", period="1", started_at=datetime.now(UTC), owner="test"))
        session.flush()

    def visible() -> bool:
        with cloud_ctx.sessions() as session:
            return session.scalar(select(func.count()).select_from(JobRun).where(JobRun.job == "dup")) == 1

    held_after, go_on_after = threading.Event(), threading.Event()

    def hold_after(session):  # keeps the batch with the duplicate open
        held_after.set()
        assert go_on_after.wait(30)

    with ThreadPoolExecutor(4) as pool:
        pool.submit(group.run, hold)
        assert inside.wait(30)
        first = pool.submit(group.run, insert)
        second = pool.submit(group.run, insert)
        closing = pool.submit(group.run, hold_after)
        while len(group._queue) < 3:  # all three queued behind the held batch: they share the next one
            time.sleep(0.005)
        go_on.set()
        assert held_after.wait(30)
        answered, _ = wait([first, second], timeout=1, return_when=FIRST_COMPLETED)
        assert not answered, "an answer was given while its batch was still open"
        go_on_after.set()
        refused = second.exception(30) or first.exception(30)
        assert isinstance(refused, IntegrityError)
        assert visible(), "the refusal came before the row that caused it was committed"
        closing.result(30)


def test_a_piece_of_work_alone_in_its_batch_that_fails_leaves_nothing_and_wakes_nobody(cloud_ctx, api):
    """A batch of one runs without a savepoint: its error must still undo all it did, its wakeups
    included, and be answered only after that; the next piece of work is stored as usual."""
    from cloud import wakeups

    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    woken: list[str] = []
    unsubscribe = cloud_ctx.wakeups.subscribe(wakeups.VISION, lambda: woken.append("vision"))

    def failing(session):
        session.execute(Device.__table__.update().values(name="never"))
        wakeups.mark(session, wakeups.VISION)
        raise ValueError("this capture is refused")

    def renaming(session):
        session.execute(Device.__table__.update().values(name="renamed"))
        wakeups.mark(session, wakeups.VISION)
        return "stored"

    try:
        with pytest.raises(ValueError, match="refused"):
            cloud_ctx.group_commit.run(failing)
        with cloud_ctx.sessions() as session:
            assert session.scalar(select(Device.name)) != "never"
        assert woken == []
        assert cloud_ctx.group_commit.run(renaming) == "stored"
        with cloud_ctx.sessions() as session:
            assert session.scalar(select(Device.name)) == "renamed"
        assert woken == ["vision"]
    finally:
        unsubscribe()
