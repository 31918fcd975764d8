"""Helpers for gateway tests: a device publisher, the gateway as a subprocess, waiting with deadlines."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from mcam import protocol
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cloud import CloudClient
from gateway.forwarder import Forwarder
from gateway.settings import GatewaySettings
from gateway.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def subscribed(link: Any) -> bool:
    """True once the broker answered a publish a gateway link (`gateway.inbox.Link`) sent after its
    SUBSCRIBE (one stream, handled in order): from then on, what devices publish reaches its session."""
    return link.publish("gateway-test/ping", b"", retain=False, timeout_s=2)  # outside mailcam/#


class ServiceThread:
    """`GatewayService.run()` on its own event loop in a thread, as a context manager; `error` is what
    `run()` raised (None while it runs or after a clean stop). Leaving the block stops it if it runs."""

    def __init__(self, settings: Any) -> None:
        from gateway.service import GatewayService

        self.service = GatewayService(settings)
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gateway-service")

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.service.run())
        except BaseException as exc:  # what tests look at
            self.error = exc

    def __enter__(self) -> ServiceThread:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop)
            self.thread.join(30)
        self.loop.close()

    def ended(self, timeout: float) -> bool:
        """True once `run()` returned or raised (waits up to `timeout` for it)."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


def forward_rounds(settings: GatewaySettings, spool: Spool, handler: Callable[[httpx.Request], httpx.Response], *,
                   rounds: int = 1, between: Callable[[], None] = lambda: None) -> list[bool]:
    """Run one `Forwarder`'s rounds over the spool's pending items against a cloud answering with ``handler``
    (an in-memory httpx transport); ``between`` runs before every round after the first."""

    async def run() -> list[bool]:
        cloud = CloudClient(base_url="http://cloud.test", token="mcg_x", timeout_s=5,
                            transport=httpx.MockTransport(handler))
        async with cloud:
            forwarder = Forwarder(settings, spool, cloud)
            results = []
            for n in range(rounds):
                if n:
                    between()
                results.append(await forwarder.round(spool.pending(64)))
            return results

    return asyncio.run(run())


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `predicate` until truthy or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class ManualClock:
    """The spool's clock in unit tests: ``now`` moves only when a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_jpeg(size: int, seed: int = 0) -> bytes:
    """SOI + deterministic bytes + EOI, exactly `size` bytes (the gateway checks markers, not pixels)."""
    block = hashlib.sha256(str(seed).encode()).digest()
    body = (block * (size // 32 + 1))[: size - 4]
    return b"\xff\xd8" + body + b"\xff\xd9"


def chunks_of(image: bytes, *, cid: str | None = None, chunk_size: int = protocol.DEFAULT_CHUNK_SIZE,
              trig: str = "automatic", tid: str | None = None, ts: int | None = None,
              bat: int = 3900) -> tuple[str, list[bytes]]:
    """Encode an image as protocol chunk payloads; returns (capture id, payloads in order)."""
    cid = cid or uuid.uuid4().hex[:20]
    sha = hashlib.sha256(image).hexdigest()
    n = protocol.chunk_count(len(image), chunk_size)
    ts = ts or int(time.time())
    payloads = [
        protocol.encode_chunk(cid, i, n, len(image), sha, trig, tid, ts, bat, image[i * chunk_size:][:chunk_size])
        for i in range(n)
    ]
    return cid, payloads


class Publisher:
    """A device (or anyone) publishing with paho, QoS 1, waiting for each PUBACK."""

    def __init__(self, host: str, port: int, *, client_id: str | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.received: list[paho.MQTTMessage] = []
        self.client.on_message = lambda c, u, m: self.received.append(m)
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.connect(host, port, 30)
        self.client.loop_start()
        if not self.answered.wait(10) or not self.connected.is_set():
            self.close()
            raise ConnectionError("publisher could not connect")

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if not reason.is_failure:
            self.connected.set()
        else:
            client.disconnect()
        self.answered.set()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=10)

    def capture(self, serial: str, image: bytes, *, order: list[int] | None = None, **kwargs: Any) -> str:
        cid, payloads = chunks_of(image, **kwargs)
        for i in order if order is not None else range(len(payloads)):
            self.publish(protocol.topic(serial, protocol.CAPTURE), payloads[i])
        return cid

    def telemetry(self, serial: str, **fields: Any) -> None:
        values = {"ts": int(time.time()), "bat": 3800, "rssi": -60, "wake": "timer", "awake_ms": 900,
                  "fw": "1.0.0", "boot": 1, "err": None, "pending": 0}
        values.update(fields)
        self.publish(protocol.topic(serial, protocol.TELEMETRY), protocol.encode_telemetry(**values))

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class GatewayProcess:
    """`python -m gateway` with MAILCAM_GATEWAY_* settings; kill -9 / restart at will."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self) -> GatewayProcess:
        env = dict(os.environ)
        env.update({f"MAILCAM_GATEWAY_{k.upper()}": str(v) for k, v in self.env.items()})
        env["MAILCAM_GATEWAY_DATA_DIR"] = str(self.data_dir)
        env.setdefault("MAILCAM_GATEWAY_METRICS_PORT", "0")
        self.log_path = self.data_dir / "gateway.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.kv("broker") == "connected" or self._died(), 20, "gateway connected to the broker")
        assert not self._died(), self.log()
        return self

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def store(self) -> Spool:
        return Spool(self.data_dir / "gateway.db")

    def kv(self, key: str) -> str | None:
        """``key`` in the gateway's store, or None while it has none (or no store yet)."""
        path = self.data_dir / "gateway.db"
        if not path.exists():
            return None
        try:
            store = self.store()
        except sqlite3.OperationalError as exc:
            # The gateway is creating the file this instant (its switch to WAL): opening it beside that
            # can fail at once with "database is locked" (seen once in a PostgreSQL CI phase; SQLite
            # gives up without waiting where waiting could deadlock). The callers poll: not yet.
            if "locked" not in str(exc):
                raise
            return None
        try:
            return store.get_kv(key)
        finally:
            store.close()

    def read(self, fn: Callable[[Spool], Any]) -> Any:
        store = self.store()
        try:
            return fn(store)
        finally:
            store.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
