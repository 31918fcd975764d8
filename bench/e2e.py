"""End-to-end benchmark: simulated mailboxes → real broker → gateway → cloud → analysis → notification.

    python bench/e2e.py                 # 100 devices, each waking every 10 s, for 60 s
    python bench/e2e.py --quick         # 8 devices for a few seconds (CI smoke run)

Prints p50/p95/p99 latency from the device's publish (the broker delivering
the capture's last chunk to an observer) to the capture stored, analysed, and its notification
queued in the outbox; captures per second sustained; and every process's peak
RSS. The cloud runs on SQLite with the offline analyzer and the console channel.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailcam import simulate  # noqa: E402
from mailcam.broker import LocalBroker, free_port, wait_for_port  # noqa: E402
from mailcam.orchestration import wait_gateway_connected  # noqa: E402

console = Console()


def observe_publishes(port: int, ready, stop, results) -> None:
    """Child process: record when the broker delivered each capture's last chunk (the device's publish).

    A process of its own, so the device simulators' CPU load cannot delay its timestamps.
    """
    import paho.mqtt.client as paho
    from mcam import protocol

    completed: dict[str, float] = {}
    seen: dict[str, set[int]] = {}

    def on_message(_client, _userdata, message) -> None:
        now = time.time()
        try:
            header, _ = protocol.decode_chunk(message.payload)
        except ValueError:
            return
        indexes = seen.setdefault(header["cid"], set())
        indexes.add(header["i"])
        if len(indexes) == header["n"]:
            completed.setdefault(header["cid"], now)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-observer")
    client.on_message = on_message
    client.on_subscribe = lambda *_args: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe("mailcam/v1/+/capture", qos=0)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    client.disconnect()
    results.put(completed)


def run_devices(port: int, slice_: list[tuple[int, str]], devices: int, interval_s: float, duration_s: float,
                workdir: str, results) -> None:
    """Child process: run a share of the mailboxes (wakes staggered over one interval) for ``duration_s``."""
    made: set[str] = set()
    failed = 0
    lock = threading.Lock()
    stop = threading.Event()

    def on_cycle(report: simulate.CycleReport) -> None:
        nonlocal failed
        with lock:
            made.update(report.result.get("captures") or [])
            failed += 0 if report.ok else 1

    def device(index: int, prefix: str) -> None:
        if stop.wait(interval_s * index / devices):
            return
        simulate.run("127.0.0.1", port, devices=1, serial_prefix=prefix, interval_s=interval_s,
                     door_probability=0.3, stop_event=stop, on_cycle=on_cycle, seed=index,
                     state_dir=Path(workdir) / "mailboxes" / prefix)

    threads = [threading.Thread(target=device, args=item, daemon=True) for item in slice_]
    for thread in threads:
        thread.start()
    stop.wait(duration_s)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    results.put((made, failed))


class PeakRss:
    """Samples the resident set size of named processes until stopped."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.cpu_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for name, pid in list(self.pids.items()):
                try:
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0), rss)
                self.cpu_s[name] = times.user + times.system

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_cloud(workdir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MAILCAM_DATA_DIR": str(workdir / "cloud"), "MAILCAM_VISION__WORKER_POLL_INTERVAL_S": "0.05",
           "MAILCAM_NOTIFY__WORKER_POLL_INTERVAL_S": "0.2"}
    log = open(workdir / "cloud.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "mailcam.cli", "cloud", "--port", str(port)], env=env,
                               stdout=log, stderr=log, cwd=ROOT)
    wait_for_port(port, 60)
    return process


def start_gateway(workdir: Path, cloud_url: str, token: str, broker_port: int) -> subprocess.Popen:
    env = {**os.environ, "MAILCAM_GATEWAY_CLOUD_URL": cloud_url, "MAILCAM_GATEWAY_TOKEN": token,
           "MAILCAM_GATEWAY_BROKER_PORT": str(broker_port), "MAILCAM_GATEWAY_DATA_DIR": str(workdir / "gateway"),
           "MAILCAM_GATEWAY_METRICS_PORT": "0", "MAILCAM_GATEWAY_LOG_LEVEL": "WARNING"}
    log = open(workdir / "gateway.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=log, cwd=ROOT)


def seed(cloud_url: str, serials: list[str], workdir: Path) -> str:
    with httpx.Client(base_url=cloud_url, timeout=60) as api:
        api.post("/api/users/", json={"email": "bench@example.com", "password": "benchmark-password"})
        # The operator's step: only installers register devices.
        subprocess.run([sys.executable, "-m", "mailcam.cli", "set-role", "bench@example.com", "installer"],
                       env={**os.environ, "MAILCAM_DATA_DIR": str(workdir / "cloud")}, cwd=ROOT, check=True,
                       capture_output=True)
        login = api.post("/api/auth/token/", json={"email": "bench@example.com", "password": "benchmark-password"})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for serial in serials:
            code = api.post("/api/devices/", json={"serial": serial, "wake_interval_s": 60}, headers=headers)
            code.raise_for_status()
            api.post("/api/devices/claim/", json={"claim_code": code.json()["claim_code"]},
                     headers=headers).raise_for_status()
        gateway = api.post("/api/gateways/", json={"name": "bench"}, headers=headers)
        gateway.raise_for_status()
        return gateway.json()["gateway_token"]


def run(devices: int, interval_s: float, duration_s: float, drain_s: float, processes: int = 3) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mailcam-e2e-"))
    rss = PeakRss()
    broker = LocalBroker(workdir=workdir / "broker").start()
    if broker._process is not None:
        rss.watch(f"broker ({broker.kind})", broker._process.pid)
    port = free_port()
    cloud_url = f"http://127.0.0.1:{port}"
    cloud = start_cloud(workdir, port)
    rss.watch("cloud", cloud.pid)
    prefixes = [f"e2e{n:03d}" for n in range(devices)]
    token = seed(cloud_url, [f"{p}-1" for p in prefixes], workdir)
    gateway = start_gateway(workdir, cloud_url, token, broker.port)
    rss.watch("gateway", gateway.pid)
    wait_gateway_connected(workdir / "gateway" / "gateway.db")
    rss.start()

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    observed = ctx.Queue()
    ready, stop_observer = ctx.Event(), ctx.Event()
    observer = ctx.Process(target=observe_publishes, args=(broker.port, ready, stop_observer, observed))
    observer.start()
    ready.wait(30)

    console.print(f"[bold]e2e[/]: {devices} devices waking every {interval_s:g}s for {duration_s:g}s "
                  f"(broker: {broker.kind}, {processes} device processes); workdir {workdir}")
    indexed = list(enumerate(prefixes))
    workers = [
        ctx.Process(target=run_devices, args=(broker.port, indexed[k::processes], devices, interval_s, duration_s,
                                              str(workdir), results))
        for k in range(processes)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
        rss.watch(f"devices {worker.pid}", worker.pid)
    made: set[str] = set()
    failed_cycles = 0
    with console.status("devices publishing…"):
        for _ in workers:
            worker_made, worker_failed = results.get(timeout=duration_s + 120)
            made |= worker_made
            failed_cycles += worker_failed
        for worker in workers:
            worker.join(timeout=30)
    publish_window = time.monotonic() - started
    stop_observer.set()
    published = observed.get(timeout=30)  # captures whose every chunk reached the broker
    observer.join(timeout=30)

    engine = create_engine(f"sqlite:///{workdir / 'cloud' / 'mailcam.db'}")

    def rows() -> list:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT c.capture_id, c.received_at, a.status, a.updated_at, "
                "(SELECT MIN(n.created_at) FROM notifications n WHERE n.capture_pk = c.id) "
                "FROM captures c LEFT JOIN analyses a ON a.capture_pk = c.id"
            )).all()

    deadline = time.monotonic() + drain_s
    with console.status("waiting for the pipeline to drain…"):
        while True:
            current = rows()
            done = {r[0] for r in current if r[2] in ("done", "failed")}
            if set(published) <= done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    rss.stop()

    def ts(value: object) -> float:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return when.replace(tzinfo=when.tzinfo or __import__("datetime").UTC).timestamp()

    stored_lat, analysed_lat, notified_lat = [], [], []
    for capture_id, received_at, status, updated_at, notified_at in current:
        sent = published.get(capture_id)
        if sent is None:
            continue
        stored_lat.append(ts(received_at) - sent)
        if status in ("done", "failed") and updated_at is not None:
            analysed_lat.append(ts(updated_at) - sent)
        if notified_at is not None:
            notified_lat.append(ts(notified_at) - sent)

    table = Table(title="publish → … latency (seconds)")
    for column in ("stage", "n", "p50", "p95", "p99"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for name, values in (("stored in the cloud", stored_lat), ("analysed", analysed_lat),
                         ("notification queued", notified_lat)):
        table.add_row(name, str(len(values)), *(f"{percentile(values, q):.3f}" for q in (50, 95, 99)))
    console.print(table)
    arrived = sum(1 for r in current if r[0] in published)
    console.print(f"captures taken {len(made)}, fully published {len(published)}, in the cloud {arrived}, "
                  f"failed device cycles {failed_cycles}; sustained {arrived / publish_window:.1f} captures/s")
    mem = Table(title="per process (CPU: the machine's cores are shared by devices and services)")
    mem.add_column("process")
    mem.add_column("peak RSS MB", justify="right")
    mem.add_column("CPU s", justify="right")
    for name, peak in sorted(rss.peak.items()):
        mem.add_row(name, f"{peak / 1e6:.0f}", f"{rss.cpu_s.get(name, 0):.1f}")
    console.print(mem)

    for process in (gateway, cloud):
        process.terminate()
        process.wait(timeout=30)
    broker.stop()
    engine.dispose()
    lost = set(published) - {r[0] for r in current}
    if lost:
        console.print(f"[red]{len(lost)} published captures never reached the cloud[/]")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a device's wakes")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the pipeline to finish")
    parser.add_argument("--processes", type=int, default=3, help="processes simulating the devices")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (8 devices, 8 s)")
    args = parser.parse_args()
    if args.quick:
        return run(devices=8, interval_s=2.0, duration_s=8.0, drain_s=60.0, processes=2)
    return run(args.devices, args.interval, args.duration, args.drain, args.processes)


if __name__ == "__main__":
    sys.exit(main())
