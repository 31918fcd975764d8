"""Gateway durable ingest rate vs a plain MQTT subscriber, on the same Mosquitto, in the same run.

    .venv/bin/python bench/gateway_throughput.py [--quick] [--runs 3] [--devices 50] [--captures 4]

Each run: a backlog of 32 KB captures (8 chunks of 4 KB, QoS 1) from many simulated devices is
queued on the broker for two persistent sessions, then each consumer drains it alone:
- plain: a paho subscriber that only counts messages (auto-ack, no storage);
- gateway: `python -m gateway` (a separate process) committing every chunk to its SQLite outbox
  (WAL, synchronous=FULL by default) before acknowledging it, reassembling the captures.
Rates are messages per second between the first and the last message. The gateway is all its
processes (with 2+ cores its MQTT connection runs in a child process: ``MAILCAM_GATEWAY_MQTT_PROCESS``
on|off|auto): CPU per message summed over them, peak memory as private pages plus shared ones counted
once (for one process, its RSS). The gateway runs byte-compiled, as installed. The broker runs with
the shipped deploy/mosquitto.conf in-flight window.

``--fsync-ms 20``: every fsync/fdatasync the gateway makes takes 20 ms longer (``bench/slowdisk``, an
LD_PRELOAD shim built with the machine's C compiler): a gateway on an SD card or a USB stick, where one
fsync takes 10-50 ms, instead of this machine's SSD. Nothing else about the gateway changes.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from mcam import protocol
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.brokers import Mosquitto, free_port  # noqa: E402
from tests.gateway.kit import chunks_of, fake_jpeg  # noqa: E402

IMAGE_BYTES = 32 * 1024


def connect(broker: Mosquitto, client_id: str, *, clean: bool, inflight: int = 20) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(inflight)
    ready = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: ready.set()
    client.connect(broker.host, broker.port, 60)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError("could not connect")
    return client


def subscribe_session(broker: Mosquitto, client_id: str) -> None:
    """Create a persistent session subscribed to mailcam/# and leave (the broker queues for it)."""
    client = connect(broker, client_id, clean=False)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.subscribe("mailcam/#", qos=1)
    done.wait(10)
    client.disconnect()
    client.loop_stop()


def publish_backlog(broker: Mosquitto, devices: int, captures: int) -> int:
    client = connect(broker, f"pub-{uuid.uuid4().hex[:6]}", clean=True, inflight=1000)
    infos = []
    for k in range(captures):
        for d in range(devices):
            image = fake_jpeg(IMAGE_BYTES, seed=k * 1000 + d)
            serial = f"bench{d:03d}"
            _, payloads = chunks_of(image, cid=f"{uuid.uuid4().hex[:16]}", chunk_size=protocol.DEFAULT_CHUNK_SIZE)
            for payload in payloads:
                infos.append(client.publish(protocol.topic(serial, protocol.CAPTURE), payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()
    return len(infos)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one if pid is None)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_plain(broker: Mosquitto, client_id: str, total: int) -> tuple[float, float]:
    stamps: list[float] = []
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= total:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                         protocol=paho.MQTTv311)
    client.on_message = on_message
    cpu_before = cpu_seconds()
    client.connect(broker.host, broker.port, 60)
    client.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"plain subscriber got {len(stamps)} of {total}")
    cpu = cpu_seconds() - cpu_before
    client.disconnect()
    client.loop_stop()
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), total / cpu


def ingested(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = 'ingested_messages'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return row[0] if row else 0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the gateway runs its MQTT connection in a child process)."""
    found = [pid]
    for tid in os.listdir(f"/proc/{pid}/task"):
        children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


def _smaps(pid: int) -> dict[str, float]:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines[1:]}


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """The gateway's memory now: (resident, PSS).

    resident: every process's private pages plus the shared ones counted once (the largest process's:
    the MQTT child maps the same interpreter and libraries as the gateway) — for one process exactly
    its RSS, so one and two processes compare like with like against the same aim. PSS (each shared
    page split between the processes mapping it, other programs included) is shown too: it shrinks
    as other Python processes run, so it is not the figure held to the aim.
    """
    rollups = [_smaps(pid) for pid in pids]
    private = sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups)
    shared = max((r.get("Shared_Clean", 0) + r.get("Shared_Dirty", 0) for r in rollups), default=0.0)
    return private + shared, sum(r.get("Pss", 0) for r in rollups)


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def slow_fsync_env(fsync_ms: float, workdir: Path) -> dict[str, str]:
    """Environment that makes every fsync of a process `fsync_ms` slower (builds the shim into `workdir`)."""
    if not fsync_ms:
        return {}
    shim = workdir / "slowfsync.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(REPO / "bench/slowdisk/slowfsync.c"),
                    "-ldl"], check=True)
    return {"LD_PRELOAD": str(shim), "SLOW_FSYNC_US": str(int(fsync_ms * 1000))}


def drain_gateway(
    broker: Mosquitto, client_id: str, total: int, workdir: Path, synchronous: str, fsync_ms: float = 0.0
) -> tuple[float, float, float, float]:
    env = dict(
        os.environ,
        MAILCAM_GATEWAY_BROKER_HOST=broker.host,
        MAILCAM_GATEWAY_BROKER_PORT=str(broker.port),
        MAILCAM_GATEWAY_CLIENT_ID=client_id,
        MAILCAM_GATEWAY_DATA_DIR=str(workdir),
        MAILCAM_GATEWAY_CLOUD_URL=f"http://127.0.0.1:{free_port()}",  # no cloud: measure ingest alone
        MAILCAM_GATEWAY_METRICS_PORT="0",
        MAILCAM_GATEWAY_SQLITE_SYNCHRONOUS=synchronous,
        MAILCAM_GATEWAY_LOG_LEVEL="WARNING",
        # the forwarder meets a closed port: one failed round, then it waits out the whole drain
        MAILCAM_GATEWAY_BACKOFF_INITIAL_S="60",
        MAILCAM_GATEWAY_BACKOFF_MAX_S="60",
        MALLOC_ARENA_MAX="2",  # as deploy/mailcam-gateway.service sets it
        **slow_fsync_env(fsync_ms, workdir.parent),
    )
    db = workdir / "gateway.db"
    # as installed (pip byte-compiles): this environment may forbid writing .pyc files, and compiling
    # every module at start-up would add a few MB of peak memory no deployed gateway has
    subprocess.run([sys.executable, "-m", "compileall", "-q", "gateway", "firmware/lib/mcam"], cwd=REPO, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        first = None
        peak_resident, peak_pss, next_sample = 0.0, 0.0, 0.0
        while True:
            if time.monotonic() >= next_sample:  # reading smaps walks page tables: 4 times a second is plenty
                resident, pss = memory_mb(process_tree(proc.pid))
                peak_resident, peak_pss = max(peak_resident, resident), max(peak_pss, pss)
                next_sample = time.monotonic() + 0.25
            count = ingested(db)
            now = time.perf_counter()
            if count and first is None:
                first = (now, count, tree_cpu_seconds(proc.pid), cpu_seconds(broker.process.pid))
            if count >= total:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"gateway committed {count} of {total}")
            time.sleep(0.01)
        processes = process_tree(proc.pid)
        resident, pss = memory_mb(processes)
        peak_resident, peak_pss = max(peak_resident, resident), max(peak_pss, pss)
        if len(processes) == 1:  # the kernel's own peak, between samples too
            peak_resident = max(peak_resident, peak_rss_mb(proc.pid))
        cpu = tree_cpu_seconds(proc.pid) - first[2]
        broker_cpu = cpu_seconds(broker.process.pid) - first[3]
        messages = count - first[1]
        per_process = ", ".join(f"{cpu_seconds(p) / messages * 1e6:.1f}" for p in processes)
        rss_each = " + ".join(f"{peak_rss_mb(p):.1f}" for p in processes)
        print(f"    gateway: {len(processes)} processes, peak RSS {rss_each} MB, peak PSS {peak_pss:.1f} MB; "
              f"CPU per message: gateway "
              f"{cpu / messages * 1e6:.1f} µs ({per_process} incl. start-up), broker "
              f"{broker_cpu / messages * 1e6:.1f} µs", flush=True)
        return messages / (now - first[0]), peak_resident, messages / cpu, peak_pss
    finally:
        proc.terminate()
        proc.wait(30)


def one_run(
    workdir: Path, devices: int, captures: int, inflight: int, synchronous: str, gateway_first: bool,
    fsync_ms: float = 0.0,
) -> dict[str, float]:
    broker = Mosquitto(workdir=workdir / "broker", extra_conf=f"max_inflight_messages {inflight}\n",
                       persistence=False).start()
    try:
        plain_id, gateway_id = f"plain-{uuid.uuid4().hex[:6]}", f"gw-{uuid.uuid4().hex[:6]}"
        subscribe_session(broker, plain_id)
        subscribe_session(broker, gateway_id)
        total = publish_backlog(broker, devices, captures)
        if gateway_first:  # alternate the order: the machine's load drifts
            gateway, rss, gateway_cpu, pss = drain_gateway(broker, gateway_id, total, workdir / "gateway",
                                                           synchronous, fsync_ms)
            plain, plain_cpu = drain_plain(broker, plain_id, total)
        else:
            plain, plain_cpu = drain_plain(broker, plain_id, total)
            gateway, rss, gateway_cpu, pss = drain_gateway(broker, gateway_id, total, workdir / "gateway",
                                                           synchronous, fsync_ms)
    finally:
        broker.stop()
    return {"messages": total, "plain": plain, "gateway": gateway, "ratio": gateway / plain, "rss": rss, "pss": pss,
            "plain_cpu": plain_cpu, "gateway_cpu": gateway_cpu, "cpu_ratio": gateway_cpu / plain_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small run (< 20 s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--captures", type=int, default=10, help="captures per device")
    parser.add_argument("--inflight", type=int, default=1000, help="broker max_inflight_messages")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--fsync-ms", type=float, default=0.0,
                        help="a slow disk: every fsync of the gateway takes this much longer (needs a C compiler)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.devices, args.captures = 1, 50, 6
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
            r = one_run(Path(tmp), args.devices, args.captures, args.inflight, args.synchronous, run % 2 == 1,
                        args.fsync_ms)
        results.append(r)
        print(f"run {run + 1}: {r['messages']} msgs  plain {r['plain']:.0f}/s  gateway {r['gateway']:.0f}/s  "
              f"ratio {r['ratio']:.2f}  (per CPU-second: {r['plain_cpu']:.0f} vs {r['gateway_cpu']:.0f}, "
              f"ratio {r['cpu_ratio']:.2f})  gateway peak memory {r['rss']:.1f} MB (PSS {r['pss']:.1f})", flush=True)
    keys = ("plain", "gateway", "ratio", "rss", "pss", "plain_cpu", "gateway_cpu", "cpu_ratio")
    med = {k: statistics.median(r[k] for r in results) for k in keys}
    print(f"\n32 KB captures (8 x 4 KB chunks, QoS 1), {args.devices} devices x {args.captures} captures, "
          f"broker in-flight {args.inflight}, sqlite synchronous={args.synchronous}"
          f"{f', fsync +{args.fsync_ms:g} ms' if args.fsync_ms else ''}, median of {len(results)}:")
    print(f"  plain subscriber      {med['plain']:8.0f} msg/s")
    print(f"  gateway durable       {med['gateway']:8.0f} msg/s  ({med['gateway'] * 4096 / 1e6:.1f} MB/s committed)")
    print(f"  ratio                 {med['ratio']:8.2f}   (aim >= 0.8)")
    print(f"  per CPU-second        {med['plain_cpu']:8.0f} plain vs {med['gateway_cpu']:.0f} gateway msgs"
          f" (ratio {med['cpu_ratio']:.2f}; wall-clock rates depend on the machine's load, this less so)")
    print(f"  load average          {os.getloadavg()[0]:8.2f}")
    print(f"  gateway peak memory   {med['rss']:8.1f} MB  (aim <= 60; resident, all its processes, shared pages once)")
    print(f"  gateway peak PSS      {med['pss']:8.1f} MB  (shared pages split with every process mapping them)")


if __name__ == "__main__":
    main()
