"""CPU per vision job, in-process, by phase: the cloud's analysis of the e2e bench's captures, without the broker.

    .venv/bin/python bench/vision_jobs.py                   # 100 boxes, 4 rounds of the recorded wakes
    .venv/bin/python bench/vision_jobs.py --boxes 20 --rounds 2 --statements

The cloud (``cloud.app.create_app``, SQLite, the offline analyser, no background workers) gets the
recorded firmware's photos (``bench/recordings/firmware_wakes.json``, each device's own bytes as in
``bench/e2e.py``) through ``POST /api/device/capture/`` with a gateway's token; every box is calibrated
with its empty wake first. Then each round's jobs run in this thread (``process_pending``), and the
thread's CPU (``time.thread_time``) is summed per phase: claim, plan (the read), the image read,
decide (the analysis) and finish (the writes). The first round is the cold start (every reference
decoded for the first time) and is left out of the summary line (per job over the other rounds).

``--statements`` also counts the SQL statements per job (the engine's ``before_cursor_execute``).
Figures, not pass/fail; in-process CPU is what stays steady on a shared machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import base64
import cProfile
import hashlib
import sys
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from bench.inprocess import cloud_with_boxes  # noqa: E402
from bench.replay import RECORDING, device_image, load  # noqa: E402
from cloud.vision import pipeline as vision_pipeline  # noqa: E402
from cloud.vision import worker as vision_worker  # noqa: E402

PHASES = ("claim", "plan", "image", "decide", "finish")


class Phases:
    """Thread CPU per phase, by wrapping the pipeline's steps (restored on exit)."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self._saved: list[tuple[object, str, object]] = []

    def wrap(self, module: object, name: str, phase: str) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[phase] += time.thread_time() - start

        self._saved.append((module, name, original))
        setattr(module, name, timed)

    def restore(self) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)


@contextmanager
def counting_statements(engine):
    """Statements run, by their first word (and "<word> ms": the thread CPU the driver spent on them)."""
    seen: Counter[str] = Counter()
    started: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen[statement.split(None, 1)[0].upper()] += 1
        started.append(time.thread_time())

    def after(conn, cursor, statement, parameters, context, executemany):
        if started:
            seen[statement.split(None, 1)[0].upper() + " ms"] += 1000 * (time.thread_time() - started.pop())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="wakes per box (the recording's round repeats)")
    parser.add_argument("--statements", action="store_true", help="count SQL statements per job")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the warm rounds' jobs here")
    args = parser.parse_args()

    wakes = load(RECORDING)
    empty = next(w for w in wakes if w.label.startswith("timer"))
    serials = [f"BENCH{n:04d}" for n in range(args.boxes)]
    with cloud_with_boxes(serials) as box:
        api, ctx, owner, gateway_token = box.api, box.ctx, box.owner, box.gateway_token
        gateway = {"Authorization": f"Bearer {gateway_token}"}
        start = datetime.now(UTC) - timedelta(hours=1)
        sent = 0

        def send(serial: str, wake, n: int) -> None:
            nonlocal sent
            sent += 1
            image = device_image(wake.image, f"{serial} wake {n}")
            body = {"serial_number": serial, "image": base64.b64encode(image).decode(),
                    "trigger_type": "automatic", "battery_voltage": 3.9,
                    "timestamp": (start + timedelta(seconds=sent)).isoformat(),
                    "capture_id": f"{serial}-{n}-{hashlib.sha1(image).hexdigest()[:8]}",
                    "wake_reason": wake.label.split("-")[0]}
            api.post("/api/device/capture/", json=body, headers=gateway).raise_for_status()

        for serial in serials:
            send(serial, empty, 0)
        vision_worker.process_pending(ctx)
        for serial in serials:
            api.post(f"/api/devices/{serial}/reference", json={}, headers=owner).raise_for_status()

        phases = Phases()
        for module, name, phase in ((vision_worker, "claim_next", "claim"), (vision_pipeline, "_plan", "plan"),
                                    (vision_pipeline, "decide", "decide"), (vision_pipeline, "finish", "finish")):
            phases.wrap(module, name, phase)
        read = ctx.images.read

        def timed_read(sha: str) -> bytes:
            t0 = time.thread_time()
            try:
                return read(sha)
            finally:
                phases.spent["image"] += time.thread_time() - t0

        ctx.images.read = timed_read
        per_round: list[dict[str, float]] = []
        statements: Counter[str] = Counter()
        jobs_total = 0
        profiler = cProfile.Profile(time.thread_time) if args.profile else None
        for r in range(args.rounds):
            for serial in serials:
                send(serial, wakes[r % len(wakes)], r + 1)
            phases.spent.clear()
            with counting_statements(ctx.engine) as seen:
                if profiler is not None and r > 0:
                    profiler.enable()
                t0 = time.thread_time()
                jobs = vision_worker.process_pending(ctx)
                total = time.thread_time() - t0
                if profiler is not None:
                    profiler.disable()
            if r > 0:
                statements.update(seen)
                jobs_total += jobs
            per_round.append({"total": 1000 * total / jobs,
                              **{p: 1000 * phases.spent[p] / jobs for p in PHASES}, "jobs": jobs,
                              "label": wakes[r % len(wakes)].label})
        phases.restore()
        if profiler is not None:
            profiler.dump_stats(args.profile)

    print(f"{args.boxes} boxes; ms of thread CPU per job (claim → finish), per round of wakes:")
    print(f"{'round':<26}" + "".join(f"{c:>9}" for c in ("total", *PHASES)))
    for r, row in enumerate(per_round):
        name = f"{r}: {row['label']}" + (" (cold)" if r == 0 else "")
        print(f"{name:<26}" + "".join(f"{row[c]:>9.2f}" for c in ("total", *PHASES)))
    warm = per_round[1:]
    if warm:  # per job over all the warm rounds' jobs (each round's mean weighed by its jobs)
        jobs = sum(row["jobs"] for row in warm)
        print(f"{'warm rounds, all jobs':<26}" + "".join(
            f"{sum(row[c] * row['jobs'] for row in warm) / jobs:>9.2f}" for c in ("total", *PHASES)))
    if args.statements and jobs_total:
        print("SQL statements per job (warm rounds): " + ", ".join(
            f"{k} {v / jobs_total:.2f}" for k, v in statements.most_common()))


if __name__ == "__main__":
    main()
