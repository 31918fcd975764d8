"""Two real cloud processes on one database and one bucket behave as one.

Each replica is ``mailcam cloud`` in its own process with its own data dir (nothing shared but
the database and the bucket: moto's standalone server stands in for a real S3-compatible
service). Both run the analysis and notification workers and the scheduler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cloud.context import AppContext
from cloud.models import AnalysisJob, Capture, Device, JobRun, Notification
from tests.brokers import free_port, wait_for_port
from tests.cloudkit import capture_body, jpeg_bytes, make_installer, make_settings
from tests.notify.conftest import Owner, set_prefs
from tests.notify.test_vision_e2e import ANALYSIS_KINDS

pytestmark = pytest.mark.slow
WAIT_S = 90


class Replica:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.data_dir = workdir / name
        env = {**env, "MAILCAM_DATA_DIR": str(self.data_dir)}
        code = "from mailcam.cli import app; app()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "cloud", "--port", str(self.port), "--verbose"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_until(check, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def replicas(tmp_path, database_url, moto_s3):
    if not database_url.startswith("postgresql"):
        pytest.skip("several replicas are a PostgreSQL deployment (SQLite is the one-machine default)")
    bucket = moto_s3.new_bucket()
    images = moto_s3.settings(f"s3://{bucket}/images")
    settings = make_settings(tmp_path, database_url, images=images)
    ctx = AppContext.build(settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILCAM_")},
        "MAILCAM_ENVIRONMENT": "test",
        "MAILCAM_SECRET_KEY": "replica-test-secret",
        "MAILCAM_DATABASE_URL": settings.resolved_database_url,
        "MAILCAM_IMAGES__URL": images.url,
        "MAILCAM_IMAGES__ENDPOINT_URL": moto_s3.endpoint_url,
        "MAILCAM_IMAGES__REGION": "us-east-1",
        "MAILCAM_IMAGES__ACCESS_KEY_ID": "k",
        "MAILCAM_IMAGES__SECRET_ACCESS_KEY": "s",
        "MAILCAM_IMAGES__ADDRESSING_STYLE": "path",
        "MAILCAM_TRIGGER_EXPIRY_INTERVAL_S": "1",  # a scheduled job every second, on both
        "MAILCAM_NOTIFY__WORKER_POLL_INTERVAL_S": "0.1",
        "MAILCAM_PASSWORD_HASH_CONCURRENCY": "1",
    }
    pair = [Replica(name, env, tmp_path) for name in ("a", "b")]
    try:
        for replica in pair:
            wait_for_port("127.0.0.1", replica.port, 60)
            wait_until(lambda r=replica: httpx.get(r.url + "/healthz").status_code == 200, "healthz", 60)
        yield ctx, pair
    finally:
        for replica in pair:
            replica.stop()
        ctx.engine.dispose()


def _owner_with_device(ctx: AppContext, url: str) -> tuple[dict, dict]:
    with httpx.Client(base_url=url, timeout=60) as client:
        email, password = "alice@example.com", "correct horse battery"
        assert client.post("/api/users/", json={"email": email, "password": password}).status_code == 201
        make_installer(ctx, email)  # the operator's `mailcam set-role`, on the shared database
        token = client.post("/api/auth/token/", json={"email": email, "password": password}).json()["access_token"]
        owner = {"Authorization": f"Bearer {token}"}
        reg = client.post("/api/devices/", json={"serial": "box-1"}, headers=owner)
        claim = client.post("/api/devices/claim/", json={"claim_code": reg.json()["claim_code"]}, headers=owner)
        return owner, {"Authorization": f"Bearer {claim.json()['device_token']}"}


def test_two_replicas_share_captures_analyse_and_notify_once_and_hold_click_limits(replicas):
    ctx, (a, b) = replicas
    owner, device = _owner_with_device(ctx, a.url)
    with ctx.sessions() as session:
        row = session.scalar(select(Device).where(Device.serial == "box-1"))
        who = Owner(row.owner_id, row.id, "box-1")
    set_prefs(ctx, who, min_confidence=0.0, events={kind: ["console"] for kind in ANALYSIS_KINDS | {"analysis_failed"}})

    # Captures posted alternately to each replica; each is visible, with its image, from the other.
    images = {f"cap-{n}": jpeg_bytes(seed=60 + n) for n in range(6)}
    for n, (capture_id, image) in enumerate(images.items()):
        target, other = (a, b) if n % 2 == 0 else (b, a)
        body = capture_body("box-1", image, capture_id=capture_id)
        answer = httpx.post(target.url + "/api/device/capture/", json=body, headers=device, timeout=60)
        assert answer.status_code == 200, answer.text
        seen = httpx.get(f"{other.url}/api/captures/{capture_id}/image", headers=owner, timeout=60)
        assert seen.status_code == 200 and seen.content == image

    # Analysed once each (both replicas run vision workers on the one shared queue) ...
    def analysed() -> list[AnalysisJob] | None:
        with ctx.sessions() as session:
            jobs = list(session.scalars(select(AnalysisJob)))
        return jobs if len(jobs) == 6 and all(j.status == "done" for j in jobs) else None

    jobs = wait_until(analysed, "six analyses")
    assert [job.attempts for job in jobs] == [1] * 6

    # ... and each resulting notification is sent once, by one replica or the other.
    def sent() -> list[Notification] | None:
        with ctx.sessions() as session:
            rows = list(session.scalars(select(Notification).where(Notification.channel == "console")))
        return rows if rows and all(r.delivery == "sent" for r in rows) else None

    rows = wait_until(sent, "notifications sent")
    with ctx.sessions() as session:
        capture_pks = set(session.scalars(select(Capture.id)))
    assert {r.capture_pk for r in rows} <= capture_pks
    logs = a.log() + b.log()
    for row in rows:
        assert logs.count(f"[notification {row.id}]") == 1, f"notification {row.id} not sent exactly once"

    # Click limits: 8 manual triggers at once, spread over both replicas; the free tier has 3 a day.
    def trigger(n: int) -> int:
        target = (a, b)[n % 2]
        return httpx.post(
            target.url + "/api/device/trigger/", json={"device_serial": "box-1"}, headers=owner, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(trigger, range(8)))
    assert sorted(codes).count(429) == 5 and all(code in (200, 202) for code in codes if code != 429), codes
    status = httpx.get(b.url + "/api/device/status/", params={"device_serial": "box-1"}, headers=owner).json()
    assert status["clicks_used_today"] == 3

    # The scheduled job (every second on both replicas) ran once per period.
    def periods() -> list[JobRun] | None:
        with ctx.sessions() as session:
            runs = list(session.scalars(select(JobRun).where(JobRun.job == "expire_triggers")))
        return runs if len(runs) >= 3 else None

    runs = wait_until(periods, "three periods of expire_triggers")
    assert len({r.period for r in runs}) == len(runs)
    assert {r.owner.rsplit(":", 1)[1] for r in runs} <= {str(a.process.pid), str(b.process.pid)}
