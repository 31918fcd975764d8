"""Ingest throughput: captures/s for ``POST /api/device/capture/`` next to a bare decode-only endpoint.

    .venv/bin/python bench/cloud_ingest.py                         # 3 rounds x 5 s per target, 32 clients
    .venv/bin/python bench/cloud_ingest.py --duration 10 --rounds 5 --clients 64
    .venv/bin/python bench/cloud_ingest.py --quick                 # a few seconds in all (CI smoke)
    .venv/bin/python bench/cloud_ingest.py --py-spy /tmp/ingest    # also sample each server with py-spy

Two uvicorn processes on free loopback ports, started the same way (same uvicorn options):

* ``real``: ``cloud.app.create_app`` on a temporary data dir (SQLite, workers and scheduler off);
  a user and a device are registered through the API first, and every request carries the device token.
* ``bare``: a FastAPI app with one sync endpoint that validates the same JSON body
  (``cloud.api.schemas.CaptureCreate``) and base64-decodes the image — nothing else.

Each request carries a distinct real JPEG of about 32 KB (640x480 with noise; a unique COM segment
makes every body's bytes, and so its SHA-256, unique — a content-addressed store gets no free
"already there" hits) and a distinct ``capture_id``. The targets run alternately, ``--rounds`` times
each; the table shows the median captures/s of each and the ratio real/bare. Figures, not pass/fail.

``--py-spy PREFIX`` samples each server during its rounds (py-spy, not a project dependency:
``pip install py-spy``; it needs ptrace rights) with ``--gil``, i.e. where the server's Python CPU
time goes, and writes collapsed stacks to ``PREFIX-real-1.txt``, ``PREFIX-bare-1.txt``, … (read
them with any flamegraph tool, or ``sort -k2 -n``). py-spy pauses the server to sample it: take the
figures from a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.api.schemas import CaptureCreate  # noqa: E402  (after the path tweak)

TARGET_BYTES = 32 * 1024


# ---------------------------------------------------------------- servers (run in child processes)
def bare_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/api/device/capture/")
    def post_capture(body: CaptureCreate) -> dict:
        """Decode only."""
        data = base64.b64decode(body.image, validate=True)
        return {"status": "saved", "capture_id": body.capture_id or "x", "analysis_queued": len(data) > 0}

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness probe."""
        return {"status": "ok"}

    return app


def real_app(data_dir: Path):
    from cloud.app import create_app
    from cloud.settings import Settings

    settings = Settings(environment="test", data_dir=data_dir, run_workers=False, run_scheduler=False)
    return create_app(settings)


def grant_installer(data_dir: Path, email: str) -> None:
    """The operator's `mailcam set-role EMAIL installer`, on the real app's database."""
    from cloud.db import make_engine, make_session_factory
    from cloud.models import Role
    from cloud.services import accounts
    from cloud.settings import Settings

    engine = make_engine(Settings(environment="test", data_dir=data_dir).resolved_database_url)
    with make_session_factory(engine)() as session:
        assert accounts.set_role(session, email, Role.INSTALLER)
        session.commit()
    engine.dispose()


def serve(kind: str, port: int, data_dir: Path, uvicorn_opts: dict) -> None:
    import uvicorn

    app = real_app(data_dir) if kind == "real" else bare_app()
    # A long keep-alive: on a saturated machine a 5 s idle timer can fire while a request is in flight.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=60,
                **uvicorn_opts)


# ---------------------------------------------------------------- images
def make_jpegs(count: int, *, seed: int = 1) -> list[bytes]:
    """``count`` distinct 640x480 JPEGs of about 32 KB: a gradient scene plus sensor-like noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]

    def render(i: int, quality: int) -> bytes:
        base = np.stack([(xx * (0.2 + i % 7 * 0.05)) % 256, (yy * 0.4 + i * 3) % 256, (xx + yy) * 0.15 % 256], -1)
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype("uint8")
        out = io.BytesIO()
        Image.fromarray(noisy, "RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()

    # One search for the quality that lands near 32 KB; the noise statistics are the same for all.
    lo, hi = 5, 95
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(render(0, mid)) <= TARGET_BYTES:
            lo = mid
        else:
            hi = mid - 1
    return [render(i, lo) for i in range(count)]


def unique_jpeg(jpeg: bytes, tag: bytes) -> bytes:
    """The same picture with a COM segment (JPEG §B.2.4.5) after SOI: still valid, different bytes."""
    segment = b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag
    return jpeg[:2] + segment + jpeg[2:]


# ---------------------------------------------------------------- load
def wait_ready(proc: subprocess.Popen, url: str, what: str, timeout: float = 60) -> None:
    """Until the server `proc` answers ``GET /healthz`` at `url` (raises if it exits or never does)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class RoundResult:
    target: str
    ok: int
    errors: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float | None = None  # CPU time the server process used during the round

    @property
    def cpu_ms_per_capture(self) -> float | None:
        return 1000 * self.server_cpu_s / self.ok if self.server_cpu_s is not None and self.ok else None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


async def run_round(target: str, url: str, headers: dict, serial: str, jpegs: list[bytes], *,
                    clients: int, duration: float) -> RoundResult:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    result = RoundResult(target, 0, 0, duration)
    counter = iter(range(1 << 62))
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        # Warm the connections (and the server) before the clock starts.
        await asyncio.gather(*(client.get("/healthz") for _ in range(clients)))
        stop_at = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                n = next(counter)
                capture_id = uuid.uuid4().hex
                image = unique_jpeg(jpegs[n % len(jpegs)], capture_id.encode())
                body = json.dumps({
                    "serial_number": serial,
                    "image": base64.b64encode(image).decode(),
                    "trigger_type": "automatic",
                    "battery_voltage": 3.9,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "capture_id": capture_id,
                })
                t0 = time.perf_counter()
                try:
                    response = await client.post("/api/device/capture/", content=body,
                                                 headers={"content-type": "application/json"})
                except httpx.TransportError as exc:
                    result.errors += 1
                    print(f"[{target}] {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                if response.status_code == 200:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - t0)
                else:
                    result.errors += 1
                    if result.errors <= 3:
                        print(f"[{target}] {response.status_code} {response.text[:200]}", file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- orchestration
def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy sampling ``pid`` (only threads holding the GIL) for ``seconds``, collapsed stacks to ``out``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", "200", "--gil", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), robust to what else runs on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, kind: str, data_dir: Path, uvicorn_opts: dict) -> None:
        self.kind = kind
        self.port = free_port()
        args = [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--data-dir", str(data_dir),
                "--uvicorn-opts", json.dumps(uvicorn_opts)]
        self.proc = subprocess.Popen(args, cwd=REPO)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.proc, self.url, f"{self.kind} server", timeout)

    def stop(self) -> None:
        stop_process(self.proc)


def register_device(url: str, data_dir: Path) -> tuple[str, str]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        email, password = "bench@example.com", "correct horse battery"
        assert client.post("/api/users/", json={"email": email, "password": password}).status_code == 201
        grant_installer(data_dir, email)
        token = client.post("/api/auth/token/", json={"email": email, "password": password}).json()["access_token"]
        owner = {"Authorization": f"Bearer {token}"}
        reg = client.post("/api/devices/", json={"serial": "bench-1"}, headers=owner)
        assert reg.status_code == 201, reg.text
        claim = client.post("/api/devices/claim/", json={"claim_code": reg.json()["claim_code"]}, headers=owner)
        assert claim.status_code == 200, claim.text
        return "bench-1", claim.json()["device_token"]  # claiming replaced the installer's token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (alternating)")
    parser.add_argument("--images", type=int, default=200, help="distinct base pictures")
    parser.add_argument("--quick", action="store_true", help="a few seconds in all, for a CI smoke run")
    parser.add_argument("--data-dir", type=Path, default=None, help="real app's data dir (default: a temp dir)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    parser.add_argument("--py-spy", metavar="PREFIX", help="sample each server's rounds with py-spy into PREFIX-*.txt")
    parser.add_argument("--serve", choices=["real", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--uvicorn-opts", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        serve(args.serve, args.port, args.data_dir, json.loads(args.uvicorn_opts))
        return
    if args.quick:
        args.duration, args.rounds, args.images = 1.0, 1, 20

    from rich.console import Console
    from rich.table import Table

    console = Console()
    uvicorn_opts = {"http": args.http, "loop": args.loop}
    temp = None
    data_dir = args.data_dir
    if data_dir is None:
        temp = tempfile.mkdtemp(prefix="mailcam-bench-")
        data_dir = Path(temp)
    jpegs = make_jpegs(args.images)
    sizes = sorted(len(j) for j in jpegs)
    console.print(f"{len(jpegs)} JPEGs 640x480, {sizes[0]}..{sizes[-1]} bytes; "
                  f"{args.clients} clients, {args.rounds} x {args.duration:g} s per target; data dir {data_dir}")

    servers = {"real": Server("real", data_dir, uvicorn_opts), "bare": Server("bare", data_dir, uvicorn_opts)}
    try:
        for server in servers.values():
            server.wait_ready()
        serial, token = register_device(servers["real"].url, data_dir)
        headers = {"Authorization": f"Bearer {token}"}
        results: dict[str, list[RoundResult]] = {"real": [], "bare": []}
        for round_no in range(1, args.rounds + 1):
            for kind in ("real", "bare"):
                pid = servers[kind].proc.pid
                spy = start_py_spy(pid, args.duration, Path(f"{args.py_spy}-{kind}-{round_no}.txt")) \
                    if args.py_spy else None
                cpu0 = process_cpu_s(pid)
                result = asyncio.run(run_round(kind, servers[kind].url, headers, serial, jpegs,
                                               clients=args.clients, duration=args.duration))
                cpu1 = process_cpu_s(pid)
                if spy is not None:
                    spy.wait()
                result.server_cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
                results[kind].append(result)
                cpu = result.cpu_ms_per_capture
                console.print(f"  {kind:4}  {result.rate:8.1f} captures/s  ({result.ok} ok, {result.errors} errors"
                              + (f", server CPU {cpu:.1f} ms/capture)" if cpu is not None else ")"))
    finally:
        for server in servers.values():
            server.stop()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)

    def med(kind: str) -> float:
        return statistics.median(r.rate for r in results[kind])

    def p50_ms(kind: str) -> float:
        return 1000 * statistics.median(x for r in results[kind] for x in r.latencies) if results[kind][0].ok else 0

    def p95_ms(kind: str) -> float:
        lats = sorted(x for r in results[kind] for x in r.latencies)
        return 1000 * lats[int(0.95 * (len(lats) - 1))] if lats else 0

    def cpu_ms(kind: str) -> str:
        values = [r.cpu_ms_per_capture for r in results[kind] if r.cpu_ms_per_capture is not None]
        return f"{statistics.median(values):.2f}" if values else "-"

    ratio = med("real") / med("bare") if med("bare") else 0.0
    table = Table(title=f"POST /api/device/capture/ — 32 KB JPEGs, {args.clients} clients, "
                        f"median of {args.rounds} x {args.duration:g} s")
    table.add_column("target")
    table.add_column("captures/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("server CPU ms/capture", justify="right")
    table.add_column("errors", justify="right")
    for kind, label in (("real", "real ingest (SQLite, fsync)"), ("bare", "bare FastAPI decode")):
        table.add_row(label, f"{med(kind):.1f}", f"{p50_ms(kind):.1f}", f"{p95_ms(kind):.1f}", cpu_ms(kind),
                      str(sum(r.errors for r in results[kind])))
    table.add_row("ratio real/bare", f"{ratio:.2f}", "", "", "", "")
    console.print(table)
    if args.json:
        print(json.dumps({"real": med("real"), "bare": med("bare"), "ratio": ratio, "clients": args.clients,
                          "cpu_ms_per_capture": {k: cpu_ms(k) for k in results},
                          "rounds": args.rounds, "duration": args.duration, "cpus": os.cpu_count()}))
    if any(r.errors for rs in results.values() for r in rs):
        sys.exit(1)


if __name__ == "__main__":
    main()
