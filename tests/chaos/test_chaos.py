"""Chaos: devices keep publishing while the cloud, the gateway and the broker fail under them.

The cloud is stopped and restarted, a reverse proxy in front of it answers HTML
413 pages to capture uploads, then HTML 404 pages to everything, for a while (as a
misconfigured nginx, then a deploy, would), the
gateway is killed with SIGKILL three times, the broker restarts once, a device
publishes before its owner has claimed it, one device floods partial captures
that never complete, and a few devices send malformed messages. At the end
every good capture (the unclaimed device's too) is in the cloud exactly once
with its analysis, every manual trigger is fulfilled or expired with its click
refunded, the flooding device stayed within its quota, malformed messages are
dead letters, and no service crashed.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text

from gateway.spool import Spool
from mailcam import simulate
from mailcam.orchestration import wait_gateway_connected
from tests.brokers import Mosquitto, free_port, wait_for_port
from tests.cloudkit import jpeg_bytes, new_account, new_device
from tests.gateway.kit import Publisher, chunks_of, wait_until

# An event-driven scenario of a few minutes: its length follows the machine's load, not a clock.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DEVICES = 4
PARTIAL_QUOTA = 1024 * 1024  # the flooding device's budget of partial captures at the gateway


T0 = time.monotonic()


def phase(name: str) -> None:
    print(f"[chaos {time.monotonic() - T0:6.1f}s] {name}", flush=True)


class Service:
    """A long-running child process (cloud or gateway) with its output kept in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"{self.name}-{self.starts}.log", "wb")
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, stdout=log, stderr=log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _publish_malformed(broker: Mosquitto) -> int:
    """Garbage on real device topics and outside the scheme; returns how many messages were sent."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="chaos-vandal")
    client.connect(broker.host, broker.port)
    client.loop_start()
    messages = [
        ("mailcam/v1/chaos-1/capture", b"this is not a chunk"),
        ("mailcam/v1/chaos-2/capture", b'{"v":1,"cid":"x"}\n\xff\xd8broken'),
        ("mailcam/v1/chaos-3/telemetry", b"{not json"),
        ("mailcam/v1/nobody-here/capture", b'{"v": 1}\n'),
        ("mailcam/v1/chaos-4/bogus-kind", b"whatever"),
    ]
    for topic, payload in messages:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    return len(messages)


CAPTURE_PATH = "/api/device/capture/"


class SabotagingProxy:
    """A reverse proxy between gateway and cloud that can answer like a misconfigured nginx (`refuse_uploads`:
    HTML 413 to capture uploads, everything else passed on) or a deploy (`refuse_everything`: HTML 404 to
    every request); `pass_through` ends it. `refused` counts the pages sent, by (status, path)."""

    PAGES = {413: b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>",
             404: b"<html><head><title>404 Not Found</title></head><body>nginx</body></html>",
             502: b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"}

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: int | None = None  # None: pass on; 413: refuse capture uploads; 404: refuse everything
        self.refused: collections.Counter[tuple[int, str]] = collections.Counter()
        self.http = httpx.Client(base_url=upstream, timeout=90)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.handle(self)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="proxy", daemon=True)
        self.thread.start()

    def refuse_uploads(self) -> None:
        self.mode = 413

    def refuse_everything(self) -> None:
        self.mode = 404

    def pass_through(self) -> None:
        self.mode = None

    def refusal(self, method: str, path: str) -> int | None:
        """The status of the page to answer instead of passing the request on, or None."""
        if self.mode == 413 and not (method == "POST" and path == CAPTURE_PATH):
            return None
        return self.mode

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        path = req.path.split("?")[0]
        status = self.refusal(req.command, path)
        if status is not None:
            self.refused[(status, path)] += 1
            return self.answer(req, status, self.PAGES[status], "text/html")
        headers = {k: v for k, v in req.headers.items() if k.lower() in ("authorization", "content-type")}
        try:
            response = self.http.request(req.command, req.path, content=body, headers=headers)
        except httpx.TransportError:
            return self.answer(req, 502, self.PAGES[502], "text/html")
        self.answer(req, response.status_code, response.content, response.headers.get("content-type", ""))

    @staticmethod
    def answer(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        try:
            req.send_response(status)
            req.send_header("Content-Type", content_type)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway was killed mid-request: part of the chaos

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()


def _flood_partials(broker: Mosquitto, serial: str, captures: int) -> int:
    """A broken device: the first half of many captures, never the rest; returns the bytes sent."""
    device = Publisher(broker.host, broker.port, client_id="chaos-flooder")
    sent = 0
    try:
        for k in range(captures):
            _, payloads = chunks_of(jpeg_bytes(seed=1000 + k) + bytes(48_000), chunk_size=16_384)
            for payload in payloads[:2]:
                device.publish(f"mailcam/v1/{serial}/capture", payload)
                sent += len(payload)
    finally:
        device.close()
    return sent


def test_chaos(tmp_path: Path, fresh_mosquitto: Mosquitto, database_url: str) -> None:
    broker = fresh_mosquitto
    port = free_port()
    cloud_url = f"http://127.0.0.1:{port}"
    cloud = Service(
        "cloud",
        [sys.executable, "-m", "mailcam.cli", "cloud", "--host", "127.0.0.1", "--port", str(port)],
        {
            "MAILCAM_DATABASE_URL": database_url,
            "MAILCAM_DATA_DIR": str(tmp_path / "cloud"),
            "MAILCAM_TRIGGER_TTL_S": "20",
            "MAILCAM_TRIGGER_EXPIRY_INTERVAL_S": "1",
            "MAILCAM_VISION__WORKER_POLL_INTERVAL_S": "0.2",
        },
        tmp_path,
    )
    cloud.start()
    wait_for_port("127.0.0.1", port, 60)
    proxy = SabotagingProxy(cloud_url)

    with httpx.Client(base_url=cloud_url, timeout=30) as api:
        owner = new_account(api, "chaos@example.com")
        subprocess.run([sys.executable, "-m", "mailcam.cli", "set-role", owner.email, "installer"], check=True,
                       env={**os.environ, "MAILCAM_DATABASE_URL": database_url}, capture_output=True)
        for n in range(1, DEVICES + 1):
            new_device(api, owner, f"chaos-{n}", wake_interval_s=60)
        new_device(api, owner, "ghost-1", wake_interval_s=60)  # never wakes: its trigger must expire
        new_device(api, owner, "chaos-flood", wake_interval_s=60)  # broken: floods partial captures
        # registered by the installer, claimed by its owner only after it has sent its first photos
        late = api.post("/api/devices/", json={"serial": "chaos-late"}, headers=owner.headers)
        assert late.status_code == 201, late.text
        late_claim_code = late.json()["claim_code"]
        gateway_token = api.post("/api/gateways/", json={"name": "chaos"}, headers=owner.headers).json()
        gateway_token = gateway_token["gateway_token"]

    gateway = Service(
        "gateway",
        [sys.executable, "-m", "gateway"],
        {
            "MAILCAM_GATEWAY_CLOUD_URL": proxy.url,
            "MAILCAM_GATEWAY_TOKEN": gateway_token,
            "MAILCAM_GATEWAY_BROKER_HOST": broker.host,
            "MAILCAM_GATEWAY_BROKER_PORT": str(broker.port),
            "MAILCAM_GATEWAY_DATA_DIR": str(tmp_path / "gateway"),
            "MAILCAM_GATEWAY_METRICS_PORT": "0",
            "MAILCAM_GATEWAY_BACKOFF_MAX_S": "1",
            "MAILCAM_GATEWAY_TRIGGER_WAIT_S": "2",
            "MAILCAM_GATEWAY_DEVICES_REFRESH_S": "2",
            "MAILCAM_GATEWAY_MAX_IMAGE_BYTES": str(PARTIAL_QUOTA),
            "MAILCAM_GATEWAY_DEVICE_PARTIAL_QUOTA_BYTES": str(PARTIAL_QUOTA),
        },
        tmp_path,
    )
    gateway.start()
    wait_gateway_connected(tmp_path / "gateway" / "gateway.db")

    captured: set[str] = set()
    cycles = {"n": 0}
    lock = threading.Lock()

    def on_cycle(report: simulate.CycleReport) -> None:
        with lock:
            captured.update(report.result.get("captures") or [])
            cycles["n"] += 1

    def cycles_done() -> int:
        with lock:
            return cycles["n"]

    def cloud_captures() -> dict[str, int]:
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT c.capture_id, a.status FROM captures c LEFT JOIN analyses a ON a.capture_pk = c.id"
                )).all()
        finally:
            engine.dispose()
        return {capture_id: status for capture_id, status in rows}

    stop = threading.Event()
    sim_args = {
        "broker_host": broker.host, "broker_port": broker.port, "devices": DEVICES, "serial_prefix": "chaos",
        "interval_s": 0.5, "door_probability": 0.5, "on_cycle": on_cycle, "state_dir": tmp_path / "mailboxes",
        "stop_event": stop,
    }
    sim = threading.Thread(target=simulate.run, kwargs=sim_args, name="mailboxes", daemon=True)
    sim.start()

    def after_cycles(extra: int) -> None:
        target = cycles_done() + extra
        wait_until(lambda: cycles_done() >= target, 60, f"{extra} more device cycles")

    # Triggers: two for real mailboxes, one for a mailbox that never wakes.
    wait_until(lambda: len(cloud_captures()) >= DEVICES, 60, "first captures in the cloud")
    with httpx.Client(base_url=cloud_url, timeout=30) as api:
        owner_headers = {"Authorization": f"Bearer {owner.token}"}
        for serial in ("chaos-1", "chaos-2", "ghost-1"):
            response = api.post("/api/device/trigger/", json={"device_serial": serial}, headers=owner_headers)
            assert response.status_code in (200, 202), response.text

    # A device not claimed yet sends photos; a broken one floods partial captures.
    phase('unclaimed device, flood')
    late_device = Publisher(broker.host, broker.port, client_id="chaos-late")
    try:
        late_cids = {late_device.capture("chaos-late", jpeg_bytes(seed=500 + k)) for k in range(3)}
    finally:
        late_device.close()
    flood = threading.Thread(target=_flood_partials, args=(broker, "chaos-flood", 120), name="flood", daemon=True)
    flood.start()

    # A proxy in front of the cloud answers HTML 413 pages to capture uploads, then HTML 404 pages to
    # everything, for a while. The uploads are refused in a phase of their own because the gateway keeps
    # each device's items in order: once a device's telemetry is refused, its captures queued behind it
    # are not sent, so a proxy refusing everything at once may never see an upload.
    phase('proxy sabotage: 413 to uploads')
    proxy.refuse_uploads()
    wait_until(lambda: proxy.refused[413, CAPTURE_PATH] >= 2, 60, "capture uploads refused by the proxy")
    phase('proxy sabotage: 404 to everything')
    proxy.refuse_everything()
    after_cycles(DEVICES * 2)
    wait_until(lambda: proxy.refused[404, CAPTURE_PATH] >= 2, 60, "capture uploads answered 404 by the proxy")
    proxy.pass_through()
    with httpx.Client(base_url=cloud_url, timeout=30) as api:
        claim = api.post("/api/devices/claim/", json={"claim_code": late_claim_code}, headers=owner.headers)
        assert claim.status_code == 200, claim.text
    flood.join(timeout=120)

    # The cloud goes away for a while, then comes back.
    phase('cloud stop')
    cloud.stop()
    after_cycles(DEVICES * 2)
    cloud.start()
    wait_for_port("127.0.0.1", port, 60)

    # The gateway is killed three times mid-stream.
    phase('gateway kills')
    for _ in range(3):
        after_cycles(DEVICES)
        gateway.kill()
        after_cycles(DEVICES // 2)
        gateway.start()

    # The broker restarts once; vandals publish garbage.
    phase('broker restart')
    after_cycles(DEVICES)
    broker.restart()
    malformed = _publish_malformed(broker)
    after_cycles(DEVICES * 2)
    stop.set()
    sim.join(timeout=60)

    # Calm: the mailboxes wake until their flash queues are empty.
    phase('calm')
    calm = threading.Thread(target=simulate.run, kwargs={**sim_args, "stop_event": None, "cycles": 2}, daemon=True)
    calm.start()
    calm.join(timeout=120)

    with lock:
        good = set(captured)
    assert len(good) >= DEVICES * 4
    good |= late_cids

    progress: dict[str, Any] = {}
    phase('verify')
    progress: dict[str, Any] = {}

    def all_analysed() -> bool:
        stored = cloud_captures()
        progress["missing"] = sorted(good - stored.keys())
        progress["unanalysed"] = sorted(c for c in good & stored.keys() if stored[c] not in ("done", "failed"))
        return not progress["missing"] and not progress["unanalysed"]

    try:
        wait_until(all_analysed, 90, "every good capture in the cloud with its analysis")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {len(progress['missing'])} of {len(good)} missing {progress['missing'][:5]}, "
                             f"{len(progress['unanalysed'])} not analysed; logs in {tmp_path}") from None
    stored = cloud_captures()
    assert not (stored.keys() - good), "the cloud has captures no device made"
    assert late_cids <= stored.keys(), "the photos sent before the claim were lost"
    assert all(stored[c] == "done" for c in good), "offline analysis should not fail on simulator scenes"

    with httpx.Client(base_url=cloud_url, timeout=30) as api:
        def triggers_settled() -> list[dict] | None:
            found = []
            for serial in ("chaos-1", "chaos-2", "ghost-1"):
                found += api.get(f"/api/devices/{serial}/triggers/", headers=owner_headers).json()
            return found if all(t["status"] in ("fulfilled", "expired") for t in found) else None

        triggers = wait_until(triggers_settled, 60, "every trigger fulfilled or expired")
        status = api.get("/api/device/status/", params={"device_serial": "chaos-1"}, headers=owner_headers).json()
    assert len(triggers) == 3
    assert all(t["click_refunded"] for t in triggers if t["status"] == "expired")
    ghost = [t for t in triggers if t["device_serial"] == "ghost-1"]
    assert ghost[0]["status"] == "expired" and ghost[0]["click_refunded"]
    fulfilled = sum(t["status"] == "fulfilled" for t in triggers)
    assert status["clicks_used_today"] == fulfilled

    assert cloud.alive() and gateway.alive(), "a service crashed"
    clean_exit = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert cloud.stop() in clean_exit
    assert gateway.stop() in clean_exit
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), f"an unhandled error in {log.name}"
    proxy.close()
    store = Spool(tmp_path / "gateway" / "gateway.db")
    try:
        letters = store.dead_letters(limit=100_000)
        with store.transaction() as db:
            flood_bytes = db.execute("SELECT COALESCE(SUM(length(data)),0) FROM chunks WHERE serial = 'chaos-flood'"
                                     ).fetchone()[0]
    finally:
        store.close()
    assert proxy.refused[413, CAPTURE_PATH] >= 2 and proxy.refused[404, CAPTURE_PATH] >= 2
    assert not [x for x in letters if x.reason.startswith("cloud_")], "a proxy's page was taken as the cloud's word"
    assert not [x for x in letters if x.reason == "unknown_device"]
    assert len(letters) >= malformed - 1, [letter.reason for letter in letters]
    assert {letter.serial for letter in letters} >= {"chaos-1", "chaos-3", "nobody-here"}
    assert flood_bytes <= PARTIAL_QUOTA
    assert any(x.serial == "chaos-flood" and "quota" in (x.detail or "") for x in letters)
