"""End-to-end benchmark: the real firmware's bytes → real broker → gateway → cloud → analysis → notification.

    python bench/e2e.py                 # 100 devices, each waking every 10 s, for 60 s
    python bench/e2e.py --quick         # 4 devices for a few seconds (CI smoke run)
    python bench/e2e.py --profile       # also sample the cloud with py-spy: where its CPU goes

The devices are a replay, not simulators: ``bench/recordings/firmware_wakes.json`` holds what the real
firmware published for four wakes of one mailbox (``bench/record_wakes.py`` made it under the MicroPython
unix port against a broker), and ONE cheap publisher process sends those bytes for every device, with the
device's serial in the topic and a fresh capture id, time and battery in each chunk header. So the cores go
to the system under test, not to the devices. Each device's photos get a JPEG comment naming the device
(pixels unchanged): the cloud stores and hashes every device's photo as its own, as it would in life.

A wake round per device is the recording's: timer (empty) → door (mail arrives: an alert) → timer (still
there) → door (collected). Before the measured run every device publishes one empty wake and is calibrated
with it (the owner's "this is empty"), as an installed mailbox would be.

Prints p50/p95/p99 latency from the publish (the publisher handed the capture's last chunk to its MQTT
client; counted as published once the broker acknowledged it, QoS 1 — but the publisher's own thread
notices that ack tens of milliseconds late under load, later than the cloud stores the capture) to
the capture stored, analysed, its notification queued, and pushed to an open SSE client
(``GET /api/events/``; "n/a" when the cloud has no such endpoint); the cloud's CPU per capture, all in
(``/proc/<pid>/stat`` over the measured run, idle work included), split by the cloud's threads (vision
workers, notification delivery, the event loop, the request threads and the rest); and every process's
peak RSS (VmHWM).
The cloud runs on SQLite with the offline analyser and the console channel.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.replay import RECORDING, Device, load  # noqa: E402
from mailcam.broker import LocalBroker, free_port, wait_for_port  # noqa: E402
from mailcam.orchestration import wait_gateway_connected  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PUBLISHER = "publisher (this process, while publishing)"
console = Console()


# --- the one publisher ----------------------------------------------------------------------------


class Publisher:
    """One MQTT connection publishing for every device (QoS 1); a capture counts as published when the
    broker has acknowledged its last chunk."""

    def __init__(self, port: int) -> None:
        self.published: dict[str, float] = {}  # capture id → when the broker's ack for its last chunk was seen
        self.sent: dict[str, float] = {}  # capture id → when its last chunk was handed to paho
        self._pending: dict[int, str | None] = {}  # mid → capture id (None: telemetry)
        self._early: set[int] = set()  # acknowledged before send() registered the mid
        self._left: Counter[str] = Counter()
        self._lock = threading.Lock()  # never held while calling paho: its callbacks take it
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-replay")
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def send(self, cid: str, messages: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._left[cid] += sum(1 for topic, _ in messages if topic.endswith("/capture"))
        for topic, payload in messages:
            mid = self._client.publish(topic, payload, qos=1).mid
            if topic.endswith("/capture"):
                self.sent[cid] = time.time()  # the last chunk's stays
            owner = cid if topic.endswith("/capture") else None
            with self._lock:
                if mid in self._early:
                    self._early.discard(mid)
                    self._acked(owner, time.time())
                else:
                    self._pending[mid] = owner

    def _on_publish(self, _client, _userdata, mid, _reason=None, _properties=None) -> None:
        now = time.time()
        with self._lock:
            if mid not in self._pending:
                self._early.add(mid)
                return
            self._acked(self._pending.pop(mid), now)

    def _acked(self, cid: str | None, now: float) -> None:
        if cid is None:
            return
        self._left[cid] -= 1
        if self._left[cid] == 0:
            self.published[cid] = now

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def replay(
    publisher: Publisher, devices: list[Device], first_wake: int, interval_s: float, duration_s: float
) -> list[str]:
    """Every device wakes every ``interval_s`` (staggered over one interval) for ``duration_s``."""
    start = time.monotonic()
    queue = [(start + interval_s * k / len(devices), k, first_wake) for k in range(len(devices))]
    heapq.heapify(queue)
    sent = []
    while queue:
        at, k, wake = heapq.heappop(queue)
        if at - start >= duration_s:
            continue
        time.sleep(max(0.0, at - time.monotonic()))
        cid, messages = devices[k].messages(wake, int(time.time()))
        publisher.send(cid, messages)
        sent.append(cid)
        heapq.heappush(queue, (at + interval_s, k, wake + 1))
    return sent


# --- the fourth stage: pushed to an open SSE client ----------------------------------------------


class SsePushStage:
    """Hook for "pushed to an open SSE client": listens on ``GET /api/events/`` (one stream per user) and
    records when each capture id first appears in an event. ``open`` returns None when the cloud has no
    such endpoint."""

    def __init__(self, response: httpx.Response, client: httpx.Client) -> None:
        self.seen: dict[str, float] = {}
        self._response, self._client = response, client
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, cloud_url: str, token: str) -> SsePushStage | None:
        client = httpx.Client(base_url=cloud_url, timeout=httpx.Timeout(10, read=None))
        request = client.build_request(
            "GET", "/api/events/", headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        )
        response = client.send(request, stream=True)
        if response.status_code != 200 or "text/event-stream" not in response.headers.get("content-type", ""):
            response.close()
            client.close()
            return None
        return cls(response, client)

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line.startswith("data:"):
                    now = time.time()
                    for cid in _capture_ids(line[5:].strip()):
                        self.seen.setdefault(cid, now)
        except (httpx.HTTPError, RuntimeError):
            return  # closed at the end of the run

    def close(self) -> None:
        self._response.close()
        self._client.close()


def _capture_ids(data: str) -> list[str]:
    try:
        value = json.loads(data)
    except ValueError:
        return []
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("capture_id"), str):
                found.append(item["capture_id"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


# --- processes: CPU and memory from /proc ---------------------------------------------------------


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of a process (and its live children) from ``/proc/<pid>/stat`` fields 14 and 15."""
    total = 0.0
    for p in [pid, *(_children(pid) if children else [])]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _children(pid: int) -> list[int]:
    """Every descendant (started by any of its threads: the gateway's MQTT process among them)."""
    try:
        direct = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                  for c in (task / "children").read_text().split()]
    except OSError:
        return []
    return direct + [g for c in direct for g in _children(c)]


# The cloud's threads by what they do: the kernel's thread names (cloud.worker.name_os_thread); the main
# thread runs the event loop; the rest are the routes' worker threads (and the scheduler, the group commit).
THREAD_GROUPS = (("vision", "vision workers"), ("notify", "notification delivery"))
LOOP = "event loop (main thread)"
REST = "request threads and the rest"


def cpu_by_thread(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread's (kernel name, CPU seconds) from ``/proc/<pid>/task/<tid>/``."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended between the listing and the read
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return threads


def cpu_split(pid: int, before: dict[int, tuple[str, float]], total_s: float) -> dict[str, float]:
    """CPU seconds since ``before`` by group; a thread that ended meanwhile counts in the rest (the total
    is the process's)."""
    groups = dict.fromkeys([LOOP, *(label for _, label in THREAD_GROUPS)], 0.0)
    for tid, (name, cpu) in cpu_by_thread(pid).items():
        spent = cpu - before.get(tid, (name, 0.0))[1]
        label = LOOP if tid == pid else next((g for prefix, g in THREAD_GROUPS if name.startswith(prefix)), None)
        if label is not None:
            groups[label] += spent
    groups[REST] = max(0.0, total_s - sum(groups.values()))
    return groups


def peak_rss_mb(pid: int, *, children: bool = True) -> float:
    """The kernel's high-water mark of resident memory (VmHWM), not a sample; with its children's added
    (the gateway runs its MQTT connection in a child process: shared pages then count twice)."""
    total = 0.0
    for p in [pid, *(_children(pid) if children else [])]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total or float("nan")


# --- the system under test ------------------------------------------------------------------------


def start_cloud(workdir: Path, port: int, fast_polls: bool) -> subprocess.Popen:
    env = {**os.environ, "MAILCAM_DATA_DIR": str(workdir / "cloud")}
    # The workers are woken by the commits that create their work (cloud.wakeups): their shipped polls are
    # a slow safety net. The short ones were the settings of the figures in issue 16 (polling workers);
    # with events they only add idle CPU (each notify poll is a write transaction).
    if fast_polls:
        env |= {"MAILCAM_VISION__WORKER_POLL_INTERVAL_S": "0.05", "MAILCAM_NOTIFY__WORKER_POLL_INTERVAL_S": "0.2"}
    log = open(workdir / "cloud.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailcam.cli", "cloud", "--port", str(port)], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    wait_for_port(port, 60)
    return process


def start_gateway(workdir: Path, cloud_url: str, token: str, broker_port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MAILCAM_GATEWAY_CLOUD_URL": cloud_url,
        "MAILCAM_GATEWAY_TOKEN": token,
        "MAILCAM_GATEWAY_BROKER_PORT": str(broker_port),
        "MAILCAM_GATEWAY_DATA_DIR": str(workdir / "gateway"),
        "MAILCAM_GATEWAY_METRICS_PORT": "0",
        "MAILCAM_GATEWAY_LOG_LEVEL": "WARNING",
    }
    log = open(workdir / "gateway.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=log, cwd=ROOT)


def stop_all(processes: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGTERM to all at once, SIGKILL to whoever is still there after ``grace_s`` (the figures are taken)."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Owner:
    api: httpx.Client
    token: str
    gateway_token: str = ""
    headers: dict = field(default_factory=dict)


def seed(cloud_url: str, serials: list[str], workdir: Path) -> Owner:
    api = httpx.Client(base_url=cloud_url, timeout=60)
    api.post("/api/users/", json={"email": "bench@example.com", "password": "benchmark-password"})
    # The operator's step: only installers register devices.
    subprocess.run([sys.executable, "-m", "mailcam.cli", "set-role", "bench@example.com", "installer"],
                   env={**os.environ, "MAILCAM_DATA_DIR": str(workdir / "cloud")}, cwd=ROOT, check=True,
                   capture_output=True)
    login = api.post("/api/auth/token/", json={"email": "bench@example.com", "password": "benchmark-password"})
    owner = Owner(api, login.json()["access_token"])
    owner.headers = {"Authorization": f"Bearer {owner.token}"}
    for serial in serials:
        code = api.post("/api/devices/", json={"serial": serial, "wake_interval_s": 60}, headers=owner.headers)
        code.raise_for_status()
        api.post(
            "/api/devices/claim/", json={"claim_code": code.json()["claim_code"]}, headers=owner.headers
        ).raise_for_status()
    gateway = api.post("/api/gateways/", json={"name": "bench"}, headers=owner.headers)
    gateway.raise_for_status()
    owner.gateway_token = gateway.json()["gateway_token"]
    return owner


class CloudDb:
    """Read-only look at the cloud's SQLite: when each capture was stored, analysed, notified."""

    def __init__(self, path: Path) -> None:
        self.engine = create_engine(f"sqlite:///{path}")

    def rows(self) -> dict[str, tuple]:
        with self.engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT c.capture_id, c.received_at, a.status, a.updated_at, "
                    "(SELECT MIN(n.created_at) FROM notifications n WHERE n.capture_pk = c.id) "
                    "FROM captures c LEFT JOIN analyses a ON a.capture_pk = c.id"
                )
            ).all()
        return {r[0]: tuple(r[1:]) for r in found}

    def wait(self, capture_ids: set[str], timeout_s: float, *, analysed: bool) -> dict[str, tuple]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.rows()
            done = {cid for cid, r in rows.items() if not analysed or r[1] in ("done", "failed")}
            if capture_ids <= done or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def _ts(value: object) -> float:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=when.tzinfo or UTC).timestamp()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- profiling (py-spy, optional) -----------------------------------------------------------------


def start_profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        console.print("[yellow]--profile needs py-spy in this virtualenv (pip install py-spy); skipped[/]")
        return None
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# A sample whose innermost frame is one of these is a thread waiting (py-spy's idle filter misses
# lock waits with a timeout): it is left out, so the shares below are shares of CPU.
WAITS = (
    "wait (threading.py",
    "take_gate (cloud/db.py",
    "_worker (concurrent/futures/thread.py",
    "select (selectors.py",
    "acquire",
    "sleep",
    "get (queue.py",
)


def profile_tables(raw: Path, top: int = 15) -> list[Table]:
    """From py-spy's collapsed stacks: CPU by package (self time) and by cloud function (inclusive)."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    active = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(count)
        if any(mark in frames[-1] for mark in WAITS):
            waiting += n
            continue
        active += n
        path = frames[-1].rpartition("(")[2].split(":")[0]
        parts = path.split("/")
        by_package["/".join(parts[:2]) if parts[0] in ("cloud", "gateway") else parts[0]] += n
        for function in {
            f"{f.split(' (')[0]} ({f.rpartition('(')[2].split(':')[0]})" for f in frames if "(cloud/" in f
        }:
            by_function[function] += n
    packages = Table(title=f"cloud CPU by package, self time ({active} busy samples; {waiting} waiting left out)")
    functions = Table(title="cloud CPU by cloud function, inclusive")
    for table in (packages, functions):
        table.add_column("share", justify="right")
        table.add_column("where")
    for name, n in by_package.most_common(top):
        packages.add_row(f"{100 * n / max(1, active):.1f} %", name)
    for name, n in by_function.most_common(top):
        functions.add_row(f"{100 * n / max(1, active):.1f} %", name)
    return [packages, functions]


# --- the run ---------------------------------------------------------------------------------------


def run(
    devices: int,
    interval_s: float,
    duration_s: float,
    drain_s: float,
    *,
    fast_polls: bool = False,
    profile: bool = False,
    recording: Path = RECORDING,
) -> int:
    wakes = load(recording)
    phases = {"begin": time.monotonic()}
    workdir = Path(tempfile.mkdtemp(prefix="mailcam-e2e-"))
    broker = LocalBroker(workdir=workdir / "broker").start()
    port = free_port()
    cloud_url = f"http://127.0.0.1:{port}"
    cloud = start_cloud(workdir, port, fast_polls)
    phases["cloud up"] = time.monotonic()
    serials = [f"e2e{n:03d}-1" for n in range(devices)]
    owner = seed(cloud_url, serials, workdir)
    phases["seeded"] = time.monotonic()
    gateway = start_gateway(workdir, cloud_url, owner.gateway_token, broker.port)
    wait_gateway_connected(workdir / "gateway" / "gateway.db")
    db = CloudDb(workdir / "cloud" / "mailcam.db")
    replayed = [Device.prepare(serial, wakes) for serial in serials]
    publisher = Publisher(broker.port)
    console.print(
        f"[bold]e2e[/]: {devices} devices waking every {interval_s:g}s for {duration_s:g}s, replaying "
        f"{recording.name} ({len(wakes)} wakes of the real firmware) from one publisher process; "
        f"broker {broker.kind}; {'fast (issue 16)' if fast_polls else 'shipped'} worker polls; workdir {workdir}"
    )

    phases["gateway up"] = time.monotonic()
    with console.status("calibrating: one empty wake per device, then “this is empty”…"):
        for device in replayed:
            publisher.send(*device.messages(0, int(time.time())))
        deadline = time.monotonic() + 60
        while len(db.rows()) < len(replayed) and time.monotonic() < deadline:
            time.sleep(0.1)
        db.wait(set(db.rows()), 60, analysed=True)
        for serial in serials:
            owner.api.post(f"/api/devices/{serial}/reference", json={}, headers=owner.headers).raise_for_status()
        publisher.published.clear()  # the measured run starts here

    phases["calibrated"] = time.monotonic()
    sse = SsePushStage.open(cloud_url, owner.token)
    processes = {"cloud": cloud.pid, "gateway": gateway.pid, PUBLISHER: os.getpid()}
    if broker._process is not None:
        processes[f"broker ({broker.kind})"] = broker._process.pid
    # This process started the others: its own CPU only (the replay and the bench's bookkeeping).
    own = {PUBLISHER}
    cpu_before = {name: cpu_seconds(pid, children=name not in own) for name, pid in processes.items()}
    cloud_threads_before = cpu_by_thread(cloud.pid)
    spy = start_profiler(cloud.pid, duration_s + 2, workdir / "profile.txt") if profile else None
    started = time.monotonic()
    with console.status("devices publishing…"):
        sent = replay(publisher, replayed, 1, interval_s, duration_s)
    publish_window = time.monotonic() - started
    phases["published"] = time.monotonic()
    publisher_cpu = cpu_seconds(os.getpid(), children=False) - cpu_before[PUBLISHER]  # not the drain's polling
    with console.status("waiting for the pipeline to drain…"):
        deadline = time.monotonic() + 30
        while set(sent) - set(publisher.published) and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = db.wait(set(publisher.published), drain_s, analysed=True)
        time.sleep(0.5)  # a notification is queued just after its analysis commits
        rows = db.rows()
    phases["drained"] = time.monotonic()
    cpu = {name: cpu_seconds(pid, children=name not in own) - cpu_before[name] for name, pid in processes.items()}
    cloud_split = cpu_split(cloud.pid, cloud_threads_before, cpu["cloud"])
    cpu[PUBLISHER] = publisher_cpu
    rss = {name: peak_rss_mb(pid, children=name not in own) for name, pid in processes.items()}
    if spy is not None:
        spy.wait(timeout=60)

    stored, analysed, notified, pushed = [], [], [], []
    for cid in publisher.published:
        sent_at = publisher.sent[cid]
        row = rows.get(cid)
        if row is None:
            continue
        received_at, status, updated_at, notified_at = row
        stored.append(_ts(received_at) - sent_at)
        if status in ("done", "failed") and updated_at is not None:
            analysed.append(_ts(updated_at) - sent_at)
        if notified_at is not None:
            notified.append(_ts(notified_at) - sent_at)
        if sse is not None and cid in sse.seen:
            pushed.append(sse.seen[cid] - sent_at)

    table = Table(title="publish → … latency (seconds)")
    for column in ("stage", "n", "p50", "p95", "p99"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for name, values in (("stored in the cloud", stored), ("analysed", analysed), ("notification queued", notified)):
        table.add_row(name, str(len(values)), *(f"{percentile(values, q):.3f}" for q in (50, 95, 99)))
    if sse is None:
        table.add_row("pushed to an open SSE client", "–", "n/a (no /api/events/)", "", "")
    else:
        table.add_row(
            "pushed to an open SSE client", str(len(pushed)), *(f"{percentile(pushed, q):.3f}" for q in (50, 95, 99))
        )
        sse.close()
    console.print(table)

    measured = [cid for cid in publisher.published if cid in rows]
    analysed_n = sum(1 for cid in measured if rows[cid][1] in ("done", "failed"))
    console.print(
        f"captures published {len(publisher.published)} of {len(sent)}, in the cloud {len(measured)}, "
        f"analysed {analysed_n}; sustained {len(measured) / publish_window:.1f} captures/s"
    )
    per_capture = 1000 * cpu["cloud"] / max(1, len(measured))
    aims = Table(title="issue 16 aims")
    aims.add_column("aim")
    aims.add_column("measured", justify="right")
    aims.add_column("met")
    p99 = percentile(notified, 99)
    aims.add_row("p99 publish → notification queued ≤ 1 s", f"{p99:.3f} s", "yes" if p99 <= 1 else "no")
    aims.add_row(
        "cloud CPU ≤ 25 ms per capture (offline analyser)",
        f"{per_capture:.1f} ms",
        "yes" if per_capture <= 25 else "no",
    )
    console.print(aims)
    procs = Table(title="per process over the measured run")
    procs.add_column("process")
    procs.add_column("peak RSS MB", justify="right")
    procs.add_column("CPU s", justify="right")
    procs.add_column("CPU ms per capture", justify="right")
    for name in processes:
        procs.add_row(name, f"{rss[name]:.0f}", f"{cpu[name]:.2f}", f"{1000 * cpu[name] / max(1, len(measured)):.1f}")
    console.print(procs)
    threads = Table(title="the cloud's CPU by thread (kernel thread names)")
    threads.add_column("threads")
    threads.add_column("CPU s", justify="right")
    threads.add_column("CPU ms per capture", justify="right")
    for label, seconds in cloud_split.items():
        threads.add_row(label, f"{seconds:.2f}", f"{1000 * seconds / max(1, len(measured)):.1f}")
    console.print(threads)
    marks = list(phases.items())
    console.print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    console.print("phases: " + ", ".join(f"{name} +{at - marks[k][1]:.1f}s" for k, (name, at) in enumerate(marks[1:])))
    if spy is not None and (workdir / "profile.txt").exists():
        for table in profile_tables(workdir / "profile.txt"):
            console.print(table)
        console.print(f"raw stacks: {workdir / 'profile.txt'}")

    publisher.close()
    stop_all([gateway, cloud])
    broker.stop()
    db.engine.dispose()
    owner.api.close()
    missing = set(publisher.published) - set(rows)
    if missing:  # still in the gateway's spool, or lost: either way the run did not keep up
        console.print(
            f"[red]{len(missing)} published captures had not reached the cloud when the drain ended "
            f"(--drain {drain_s:g}); the figures above cover the ones that had[/]"
        )
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a device's wakes")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing")
    parser.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="at most this many seconds for the pipeline to finish after the last publish",
    )
    parser.add_argument(
        "--fast-polls",
        action="store_true",
        help="the short worker poll intervals of issue 16's figures (default: the cloud's shipped ones)",
    )
    parser.add_argument("--profile", action="store_true", help="sample the cloud with py-spy during the run")
    parser.add_argument("--recording", type=Path, default=RECORDING, help="wakes recorded by record_wakes.py")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (4 devices, 4 s)")
    args = parser.parse_args()
    if args.quick:
        return run(devices=4, interval_s=2.0, duration_s=4.0, drain_s=30.0, fast_polls=args.fast_polls)
    return run(
        args.devices,
        args.interval,
        args.duration,
        args.drain,
        fast_polls=args.fast_polls,
        profile=args.profile,
        recording=args.recording,
    )


if __name__ == "__main__":
    sys.exit(main())
