"""Two cloud processes on one PostgreSQL: work committed in one wakes the other at once.

Issue 16: across replicas, only LISTEN/NOTIFY can wake a worker or a stream without a poll. Here
a real ``mailcam cloud`` process (workers on, every safety poll at 60 s) serves next to this test's
own app context (its own engine, its own process): what the test commits must be picked up by the
other process well within 100 ms, and pushed to an event stream open on it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from cloud import live, wakeups
from cloud.context import AppContext
from cloud.notify import outbox
from tests.brokers import free_port
from tests.cloud.test_wakeups import CommitClock, store_capture, wait_until_idle
from tests.cloudkit import make_installer, new_account, new_device
from tests.livekit import DEADLINE_S, SseClient

pytestmark = pytest.mark.slow
SAFETY_S = "60"


@pytest.fixture
def ctx(cloud_ctx: AppContext) -> AppContext:
    if cloud_ctx.engine.dialect.name != "postgresql":
        pytest.skip("replicas share a PostgreSQL (MAILCAM_TEST_POSTGRES_URL)")
    outbox.install(cloud_ctx)  # the sinks of an app (as create_app installs them)
    live.install(cloud_ctx)
    return cloud_ctx


@pytest.fixture
def replica(ctx: AppContext, tmp_path: Path) -> Iterator[str]:
    """``mailcam cloud`` in its own process, on the test's database and image folder."""
    port = free_port()
    env = {
        **os.environ,
        "MAILCAM_ENVIRONMENT": "test",
        "MAILCAM_DATABASE_URL": ctx.settings.resolved_database_url,
        "MAILCAM_DATA_DIR": str(tmp_path / "replica"),
        "MAILCAM_IMAGE_DIR": str(ctx.settings.resolved_image_dir),
        "MAILCAM_VISION__WORKERS": "1",
        "MAILCAM_VISION__WORKER_POLL_INTERVAL_S": SAFETY_S,
        "MAILCAM_NOTIFY__WORKER_POLL_INTERVAL_S": SAFETY_S,
        "MAILCAM_LIVE_KEEPALIVE_S": SAFETY_S,
    }
    mailcam = Path(sys.executable).parent / "mailcam"
    process = subprocess.Popen(
        [str(mailcam), "cloud", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the replica did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_pickup(ctx: AppContext, capture_id: str) -> float:
    """Poll (every 2 ms, with a deadline) until the other process has leased the capture's job."""
    leased = text("SELECT j.status FROM analysis_jobs j JOIN captures c ON c.id = j.capture_pk WHERE c.capture_id = :c")
    deadline = time.monotonic() + DEADLINE_S
    with ctx.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(leased, {"c": capture_id}).scalar() != "pending":
                return time.perf_counter()
            conn.rollback()
            time.sleep(0.002)
    raise AssertionError(f"{capture_id} was not picked up within {DEADLINE_S} s")


def test_a_capture_committed_here_is_picked_up_and_pushed_by_the_other_process_at_once(ctx, replica):
    commits = CommitClock(ctx, wakeups.VISION)  # this process's wakeup: right after the commit
    with httpx.Client(base_url=replica, timeout=30) as http:
        owner = new_account(http, "alice@example.com")
        make_installer(ctx, owner.email)  # the replica is another process: the role goes through the database
        new_device(http, owner, "box-1")
        pickups, pushes, kinds = [], [], []
        with SseClient(replica, headers=owner.headers).wait_open() as stream:
            for n in range(1, 6):
                before = len(commits.times)
                store_capture(ctx, "box-1", n)
                committed = commits.times[before]
                pickups.append(wait_for_pickup(ctx, f"box-1-{n}") - committed)
                while (event := stream.next()).event != "capture_received":
                    kinds.append(event.event)
                assert event.data["data"]["capture_id"] == f"box-1-{n}"
                pushes.append(event.received_at - committed)
                wait_until_idle(ctx, "analysis_jobs")
            while kinds.count("analysis_completed") < 5:
                kinds.append(stream.next().event)
    commits.unsubscribe()
    print(
        f"commit -> pickup in another process: median {statistics.median(pickups) * 1000:.1f} ms; "
        f"-> its SSE client: median {statistics.median(pushes) * 1000:.1f} ms"
    )
    assert statistics.median(pickups) < 0.100, pickups
    assert statistics.median(pushes) < 0.250, pushes
