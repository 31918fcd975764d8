"""Event latency: from a capture's commit to the vision worker's pickup and to an open SSE client.

    .venv/bin/python bench/live_latency.py                       # SQLite, 30 captures
    .venv/bin/python bench/live_latency.py --captures 50 \\
        --postgres postgresql://postgres@127.0.0.1:5432/test    # a fresh database on that server

The real app under uvicorn in this process, its workers on but every poll at 60 s (only a wakeup
can be fast), one analysis worker, an SSE client (``GET /api/events/``) reading in a thread. Each
capture is posted through the API one at a time, after the previous one was analysed (so the
worker is idle and must be woken). Times: the commit is when its wakeup fires (right after the
commit returns); the pickup is the worker's claim statement on the engine; the push is when the
SSE client has read the ``capture_received`` event. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud import wakeups  # noqa: E402  (after the path tweak)
from cloud.app import create_app  # noqa: E402
from cloud.context import AppContext  # noqa: E402
from tests.cloudkit import LiveServer, capture_body, jpeg_bytes, make_settings, new_account, new_device  # noqa: E402
from tests.databases import PostgresDatabase  # noqa: E402
from tests.livekit import ClaimWatch, SseClient  # noqa: E402


def run(database_url: str, workdir: Path, captures: int) -> dict[str, list[float]]:
    settings = make_settings(workdir, database_url, run_workers=True, run_scheduler=False)
    settings.vision.workers = 1
    settings.vision.worker_poll_interval_s = 60
    settings.notify.worker_poll_interval_s = 60
    settings.live_keepalive_s = 60
    ctx = AppContext.build(settings)
    commits: list[float] = []
    ctx.wakeups.subscribe(wakeups.VISION, lambda: commits.append(time.perf_counter()))
    claims = ClaimWatch(ctx.engine, "analysis_jobs")
    figures: dict[str, list[float]] = {"commit -> vision pickup": [], "commit -> SSE client": []}
    with LiveServer(create_app(ctx=ctx)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        owner = new_account(http, "bench@example.com")
        box = new_device(http, owner, "bench-1")
        with SseClient(server.url, headers=owner.headers).wait_open() as stream:
            for n in range(captures):
                before = len(commits)
                capture_id = f"bench-1-{n:05d}"
                body = capture_body(box.serial, jpeg_bytes(seed=n), capture_id=capture_id)
                assert http.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
                committed = commits[before]
                figures["commit -> vision pickup"].append(claims.wait_for(n + 1) - committed)
                while True:
                    event = stream.next()
                    if event.event == "capture_received" and event.data["data"]["capture_id"] == capture_id:
                        figures["commit -> SSE client"].append(event.received_at - committed)
                    if event.event == "analysis_completed" and event.data["data"]["capture_id"] == capture_id:
                        break  # analysed: the worker waits again
    ctx.engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", type=int, default=30)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (a fresh database is made there)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.postgres:
            database = PostgresDatabase(args.postgres)
            try:
                figures = run(database.url, workdir, args.captures)
            finally:
                database.drop()
            engine = "PostgreSQL"
        else:
            figures = run(f"sqlite:///{workdir / 'bench.db'}", workdir, args.captures)
            engine = "SQLite"
    print(f"{engine}, {args.captures} captures, every poll at 60 s")
    for name, values in figures.items():
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"  {name:<26} median {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms")


if __name__ == "__main__":
    main()
