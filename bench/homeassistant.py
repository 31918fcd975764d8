"""Home Assistant latency: from the cloud's decision to the entity on the home's broker, and back.

    python bench/homeassistant.py              # 20 rounds
    python bench/homeassistant.py --quick      # 4 rounds

A real Mosquitto, the cloud under uvicorn (SQLite, offline analyzer run in this process), the real
gateway (`python -m gateway`, MAILCAM_GATEWAY_HOMEASSISTANT=true, the default 25 s long-poll) and an
MQTT client in Home Assistant's place. Each round: a photo of mail, then of the empty box, each
analysed here; timed from the analysis's commit to the Mail state arriving at the client (the
state feed's long-poll woken by the commit), and from a "Take a photo now" press to its result
(a trigger made through the cloud). Prints medians and maxima.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.app import create_app  # noqa: E402
from cloud.context import AppContext  # noqa: E402
from cloud.vision.worker import process_pending  # noqa: E402
from gateway.homeassistant.discovery import PRESS, Topics  # noqa: E402
from mailcam import scenes  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402
from tests.cloudkit import LiveServer, capture_body, make_settings, new_account, new_device  # noqa: E402
from tests.gateway.kit import GatewayProcess  # noqa: E402

console = Console()


class Observer:
    """Home Assistant's side: the arrival time of every message under mailcam/ha/."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[float, str, bytes]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("mailcam/ha/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self.cond:
            self.seen.append((time.perf_counter(), message.topic, bytes(message.payload)))
            self.cond.notify_all()

    def wait_for(self, topic: str, payload_ok, after: int, timeout: float = 60) -> float:
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((t for t, top, p in self.seen[after:] if top == topic and payload_ok(p)), None), timeout
            )
        if found is None:
            raise TimeoutError(topic)
        return found

    def mark(self) -> int:
        with self.cond:
            return len(self.seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="4 rounds")
    args = parser.parse_args()
    rounds = 4 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), rounds)


def run(tmp: Path, rounds: int) -> None:
    broker = Mosquitto(workdir=tmp / "broker").start()
    settings = make_settings(tmp, f"sqlite:///{tmp / 'mailcam.db'}", free_clicks_per_day=10_000)
    ctx = AppContext.build(settings)
    gateway = None
    try:
        with LiveServer(create_app(ctx=ctx)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            owner = new_account(client, "bench@example.com")
            device = new_device(client, owner, "box-1")
            token = client.post("/api/gateways/", json={"name": "home"}, headers=owner.headers).json()
            gateway = GatewayProcess(
                tmp / "gw",
                env={
                    "cloud_url": server.url,
                    "token": token["gateway_token"],
                    "broker_port": broker.port,
                    "homeassistant": "true",
                    "sqlite_synchronous": "NORMAL",
                },
            )
            observer = Observer(broker.port)
            gateway.start()
            topics = Topics("box-1")
            mark = observer.mark()

            def capture(kind: str) -> None:
                body = capture_body(
                    "box-1", scenes.render(kind, 7), capture_id=uuid.uuid4().hex, timestamp=ctx.clock.now().isoformat()
                )
                assert client.post("/api/device/capture/", json=body, headers=device.headers).status_code == 200

            capture("empty")
            first = client.get("/api/devices/box-1/captures/", headers=owner.headers).json()["items"][0]
            client.post(f"/api/captures/{first['capture_id']}/reference", headers=owner.headers)
            process_pending(ctx)
            observer.wait_for(topics.mail, lambda p: p == b"OFF", mark)
            to_state, to_result = [], []
            with console.status("rounds") as status:
                for i in range(rounds):
                    status.update(f"round {i + 1}/{rounds}")
                    for kind, expected in (("letters", b"ON"), ("empty", b"OFF")):
                        capture(kind)
                        mark = observer.mark()
                        process_pending(ctx)
                        committed = time.perf_counter()
                        to_state.append(observer.wait_for(topics.mail, lambda p, e=expected: p == e, mark) - committed)
                    mark = observer.mark()
                    pressed = time.perf_counter()
                    observer.client.publish(topics.press, PRESS.encode(), qos=1)
                    to_result.append(
                        observer.wait_for(topics.press_result, lambda p: b"queued" in p or b"triggered" in p, mark)
                        - pressed
                    )
            observer.client.loop_stop()
        table = Table(title=f"Home Assistant latency ({rounds} rounds, ms)")
        for column in ("path", "n", "median", "max"):
            table.add_column(column)
        for name, values in (
            ("analysis commit → Mail state on the broker", to_state),
            ("press → result on the broker (trigger made in the cloud)", to_result),
        ):
            table.add_row(
                name, str(len(values)), f"{statistics.median(values) * 1000:.0f}", f"{max(values) * 1000:.0f}"
            )
        console.print(table)
    finally:
        if gateway is not None:
            gateway.stop()
        broker.stop()
        ctx.engine.dispose()


if __name__ == "__main__":
    main()
