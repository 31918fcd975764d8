"""Server CPU per gateway wake (a capture and a telemetry report), as the gateway sends them, against a real uvicorn.

    .venv/bin/python bench/gateway_requests.py                                  # this checkout, 5 rounds
    .venv/bin/python bench/gateway_requests.py --target main=/work/main --target branch=.
    .venv/bin/python bench/gateway_requests.py --target h11=.,MAILCAM_BENCH_HTTP=h11,MAILCAM_BENCH_LOOP=asyncio \\
        --target auto=.                                                          # uvicorn's parser and loop
    .venv/bin/python bench/gateway_requests.py --kinds telemetry                # one request kind alone
    .venv/bin/python bench/gateway_requests.py --send uploads,singles          # one request per wake vs two

Each target is a checkout (``label=ROOT``, then any ``,KEY=VALUE`` environment for its server): one uvicorn
process per target, started from that checkout (``cloud.app.create_app``, SQLite in a temporary data dir,
workers and scheduler off, uvicorn's ``http``/``loop`` from MAILCAM_BENCH_HTTP/LOOP, default ``auto``),
seeded through the API with a user, ``--devices`` claimed mailboxes and a gateway. Each round sends
``--wakes`` wakes per target, the targets alternating round by round, paced at ``--rate`` wakes/s over one
keep-alive connection with the gateway's token and bodies (``gateway.cloudformat``): a distinct ~32 KB
JPEG per capture. ``--send``: ``uploads`` sends a wake as the gateway does, both items in one
``POST /api/gateway/uploads/``; ``singles`` as it did before, ``POST /api/device/capture/`` then
``/api/device/telemetry/``; with both, each round runs each way in turn. The server's CPU comes from
``/proc/<pid>/task/*/stat``, split into the event loop (the main thread) and the rest (the worker
threads the routes run their work in); the table shows the median over the rounds of the CPU ms per wake.
Figures, not pass/fail; ``/proc`` counts in clock ticks (10 ms), so keep wakes x rounds large enough.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from bench.cloud_ingest import free_port, make_jpegs, stop_process, unique_jpeg, wait_ready  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVE = """
import os, sys, uvicorn
from pathlib import Path
from cloud.app import create_app
from cloud.settings import Settings
settings = Settings(environment="test", data_dir=Path(sys.argv[1]), run_workers=False, run_scheduler=False)
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
            timeout_keep_alive=60, http=os.environ.get("MAILCAM_BENCH_HTTP", "auto"),
            loop=os.environ.get("MAILCAM_BENCH_LOOP", "auto"))
"""


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) user + system CPU seconds of a process."""
    main = rest = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if int(task.name) == pid:
            main += cpu
        else:
            rest += cpu
    return main, rest


class Target:
    def __init__(self, spec: str, devices: int) -> None:
        label, _, rest = spec.partition("=")
        root, *env = rest.split(",")
        self.label, self.root = label, Path(root).resolve()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"mailcam-gwreq-{label}-"))
        self.env = {**os.environ, "PYTHONPATH": str(self.root), "MAILCAM_DATA_DIR": str(self.data_dir)}
        self.env.update(kv.split("=", 1) for kv in env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE, str(self.data_dir), str(self.port)],
                                     cwd=self.root, env=self.env)
        self._wait_ready()
        self.serials = [f"gwreq-{k:03d}" for k in range(devices)]
        self.gateway_token = self._seed()
        self.results: list[tuple[float, float]] = []  # per round: (main, rest) ms per wake

    def _wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.proc, self.url, f"{self.label}: server", timeout)

    def _seed(self) -> str:
        email, password = "bench@example.com", "benchmark-password"
        with httpx.Client(base_url=self.url, timeout=30) as api:
            api.post("/api/users/", json={"email": email, "password": password}).raise_for_status()
            subprocess.run([sys.executable, "-m", "mailcam.cli", "set-role", email, "installer"], env=self.env,
                           cwd=self.root, check=True, capture_output=True)
            token = api.post("/api/auth/token/", json={"email": email, "password": password}).json()["access_token"]
            owner = {"Authorization": f"Bearer {token}"}
            for serial in self.serials:
                code = api.post("/api/devices/", json={"serial": serial, "wake_interval_s": 60}, headers=owner)
                code.raise_for_status()
                api.post("/api/devices/claim/", json={"claim_code": code.json()["claim_code"]},
                         headers=owner).raise_for_status()
            gateway = api.post("/api/gateways/", json={"name": "bench"}, headers=owner)
            gateway.raise_for_status()
            return gateway.json()["gateway_token"]

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def bodies(serial: str, jpeg: bytes, boot: int) -> tuple[bytes, bytes]:
    from gateway.cloudformat import capture_body, telemetry_body

    capture_id = uuid.uuid4().hex
    now = datetime.now(UTC).isoformat()
    capture = capture_body(serial, {"trigger_type": "automatic", "bat_mv": 3912, "ts": now, "capture_id": capture_id,
                                    "trigger_id": None, "wake": "timer"}, unique_jpeg(jpeg, capture_id.encode()))
    telemetry = telemetry_body(serial, {"bat": 3912, "rssi": -61, "wake": "timer", "awake_ms": 2140, "fw": "1.4.2",
                                        "boot": boot, "err": None, "pending": 0, "ts": now, "cfgv": None})
    return json.dumps(capture).encode(), json.dumps(telemetry).encode()


def run_round(target: Target, jpegs: list[bytes], wakes: int, rate: float, kinds: set[str], offset: int,
              send: str) -> tuple[float, float]:
    """One round of ``wakes`` wakes sent ``send``-wise; returns (event loop, other threads) CPU ms per wake."""
    headers = {"Authorization": f"Bearer {target.gateway_token}", "content-type": "application/json"}
    prepared = [bodies(target.serials[(offset + k) % len(target.serials)], jpegs[(offset + k) % len(jpegs)],
                       offset + k) for k in range(wakes)]
    with httpx.Client(base_url=target.url, headers=headers, timeout=60) as client:
        client.get("/healthz")  # the connection, before the clock starts
        main0, rest0 = thread_cpu_s(target.proc.pid)
        start = time.monotonic()
        for k, (capture, telemetry) in enumerate(prepared):
            wait = start + k / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            requests = [(path, body) for kind, path, body in (
                ("capture", "/api/device/capture/", capture), ("telemetry", "/api/device/telemetry/", telemetry))
                if kind in kinds]
            if send == "uploads":
                items = b",".join(b'{"kind": "%s", "body": %s}' % (path.split("/")[-2].encode(), body)
                                  for path, body in requests)
                requests = [("/api/gateway/uploads/", b'{"items": [' + items + b"]}")]
            for path, body in requests:
                answer = client.post(path, content=body)
                answer.raise_for_status()
                if send == "uploads":
                    assert all(r["status"] == 200 for r in answer.json()["results"]), answer.text
        time.sleep(0.2)  # let the server finish its bookkeeping of the last answer
        main1, rest1 = thread_cpu_s(target.proc.pid)
    return 1000 * (main1 - main0) / wakes, 1000 * (rest1 - rest0) / wakes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", help="label=ROOT[,KEY=VALUE...] (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wakes", type=int, default=300, help="wakes per round and target")
    parser.add_argument("--rate", type=float, default=25.0, help="wakes per second")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--kinds", default="capture,telemetry", help="which requests a wake sends")
    parser.add_argument("--send", default="uploads", help="uploads (one request per wake), singles, or both")
    parser.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.wakes = 1, 20
    kinds = set(args.kinds.split(","))
    sends = args.send.split(",")
    jpegs = make_jpegs(20)
    targets = [Target(spec, args.devices) for spec in (args.target or [f"this={HERE}"])]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {(t.label, s): [] for t in targets for s in sends}
    try:
        for target in targets:  # warm: imports, caches, the first statements' compilation
            for send in sends:
                run_round(target, jpegs, min(50, args.wakes), args.rate, kinds, 0, send)
        offset = 0
        for round_no in range(args.rounds):
            for target in targets if round_no % 2 == 0 else reversed(targets):
                for send in sends if round_no % 2 == 0 else reversed(sends):
                    offset += args.wakes
                    main_ms, rest_ms = run_round(target, jpegs, args.wakes, args.rate, kinds, offset, send)
                    results[target.label, send].append((main_ms, rest_ms))
                    print(f"  round {round_no + 1} {target.label:>10} {send:>8}: loop {main_ms:6.2f}  threads "
                          f"{rest_ms:6.2f}  all {main_ms + rest_ms:6.2f} ms/wake", flush=True)
    finally:
        for target in targets:
            target.stop()
    print(f"\nserver CPU ms per wake ({'+'.join(sorted(kinds))}), median of {args.rounds} x {args.wakes} wakes "
          f"at {args.rate:g}/s:")
    for (label, send), rows in results.items():
        loop = statistics.median(m for m, _ in rows)
        threads = statistics.median(r for _, r in rows)
        total = statistics.median(m + r for m, r in rows)
        print(f"  {label:>10} {send:>8}: event loop {loop:6.2f}  worker threads {threads:6.2f}  all {total:6.2f}")


if __name__ == "__main__":
    main()
