"""CPU of the gateway's two requests' own work, in-process: the capture and telemetry routes' worker-thread calls.

    .venv/bin/python bench/gateway_work.py                       # this checkout
    .venv/bin/python bench/gateway_work.py --root /work/main     # another checkout's cloud (A/B: alternate runs)
    .venv/bin/python bench/gateway_work.py --profile /tmp/tel.prof --kinds telemetry

The cloud (``cloud.app.create_app``, SQLite, no background workers) with a user, ``--devices`` claimed
mailboxes and a gateway, seeded through the API. Then ``--rounds`` rounds of ``--calls`` wakes: each wake
calls what the routes run in their one worker-thread call, ``store_capture`` (a distinct ~32 KB JPEG)
and ``store_telemetry`` (the gateway's body, ``gateway.cloudformat``), with the gateway's token, in this
thread, timed by ``time.thread_time``. Prints the median over rounds of the CPU ms per call, by kind.
FastAPI, uvicorn and the body's parsing are not in it (bench/gateway_requests.py has them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="the cloud's checkout")
parser.add_argument("--rounds", type=int, default=7)
parser.add_argument("--calls", type=int, default=200, help="wakes per round")
parser.add_argument("--devices", type=int, default=20)
parser.add_argument("--kinds", default="capture,telemetry")
parser.add_argument("--profile", type=Path, help="write cProfile stats of the measured rounds here")
args = parser.parse_args()
sys.path.insert(0, str(args.root.resolve()))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import cProfile  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import cloud  # noqa: E402
from bench.cloud_ingest import make_jpegs, unique_jpeg  # noqa: E402
from bench.inprocess import cloud_with_boxes  # noqa: E402
from cloud.api import schemas  # noqa: E402
from cloud.api.routes import device_api  # noqa: E402
from gateway.cloudformat import capture_body, telemetry_body  # noqa: E402


def main() -> None:
    kinds = args.kinds.split(",")
    jpegs = make_jpegs(20)
    print(f"cloud from {Path(cloud.__file__).parent}")
    serials = [f"BENCH{n:04d}" for n in range(args.devices)]
    with cloud_with_boxes(serials) as box:
        ctx, gateway_token = box.ctx, box.gateway_token

        def wake(n: int) -> tuple[schemas.CaptureCreate, schemas.TelemetryCreate]:
            serial, capture_id, now = serials[n % len(serials)], uuid.uuid4().hex, datetime.now(UTC).isoformat()
            image = unique_jpeg(jpegs[n % len(jpegs)], capture_id.encode())
            capture = capture_body(serial, {"trigger_type": "automatic", "bat_mv": 3912, "ts": now,
                                            "capture_id": capture_id, "trigger_id": None, "wake": "timer"}, image)
            telemetry = telemetry_body(serial, {"bat": 3912, "rssi": -61, "wake": "timer", "awake_ms": 2140,
                                                "fw": "1.4.2", "boot": n, "err": None, "pending": 0, "ts": now})
            return (schemas.CaptureCreate.model_validate_json(json.dumps(capture)),
                    schemas.TelemetryCreate.model_validate_json(json.dumps(telemetry)))

        calls = {"capture": lambda body: device_api.store_capture(ctx, gateway_token, body[0]),
                 "telemetry": lambda body: device_api.store_telemetry(ctx, gateway_token, body[1])}
        spent: dict[str, list[float]] = defaultdict(list)
        profiler = cProfile.Profile(time.thread_time) if args.profile else None  # CPU, not waits
        n = 0
        for round_no in range(args.rounds + 1):  # round 0 warms
            bodies = [wake(n + k) for k in range(args.calls)]
            n += args.calls
            for kind in kinds:
                if profiler and round_no:
                    profiler.enable()
                t0 = time.thread_time()
                for body in bodies:
                    calls[kind](body)
                cpu = time.thread_time() - t0
                if profiler and round_no:
                    profiler.disable()
                if round_no:
                    spent[kind].append(1000 * cpu / args.calls)
            if round_no:
                print(f"  round {round_no}: " + "  ".join(f"{k} {spent[k][-1]:.3f}" for k in kinds), flush=True)
    print(f"CPU ms per call, median of {args.rounds} x {args.calls}: "
          + "  ".join(f"{k} {statistics.median(spent[k]):.3f}" for k in kinds))
    if profiler:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
