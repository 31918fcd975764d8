"""Record the real firmware's MQTT bytes for a few wakes, for ``bench/e2e.py`` to replay.

    python bench/record_wakes.py                       # writes bench/recordings/firmware_wakes.json

The firmware runs exactly as on a board (``hil_tests.boards.VirtualBoard``: mpy-cross-compiled modules
under the MicroPython unix port, 256 KB heap, the simulated HAL) against a local broker; a subscriber
keeps every message it publishes, byte for byte. Four wakes of one mailbox make one delivery round:

    timer, empty box  →  door, mail arrives  →  timer, mail still there  →  door, mail collected

Each wake photographs the same box (``mailcam.mailboxes``) a little differently, as a real camera does.
Re-record after a change of the wire protocol or the firmware's publishing; the file says which
firmware made it.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcam import protocol  # noqa: E402

from hil_tests.boards import BrokerAddress, VirtualBoard, tool  # noqa: E402
from mailcam.broker import LocalBroker  # noqa: E402
from mailcam.mailboxes import Item, Mailbox, Wake  # noqa: E402

RECORDING = ROOT / "bench" / "recordings" / "firmware_wakes.json"
SERIAL = "rec-0000"
BOX_SEED = 7
ROUND = (  # (label, wake reason, contents)
    ("timer-empty", "timer", []),
    ("door-mail", "door", [Item("letter", 11), Item("letter", 12), Item("package", 13)]),
    ("timer-mail", "timer", [Item("letter", 11), Item("letter", 12), Item("package", 13)]),
    ("door-collected", "door", []),
)


class Recorder:
    """Keeps every message on ``mailcam/v1/<serial>/#`` (what the device publishes) in arrival order."""

    def __init__(self, port: int, serial: str) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self._changed = threading.Condition()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="wake-recorder")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"{protocol.TOPIC_ROOT}/{serial}/#", qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the recorder could not subscribe")

    def _on_message(self, _client, _userdata, message) -> None:
        with self._changed:
            self.messages.append((message.topic, bytes(message.payload), message.qos))
            self._changed.notify_all()

    def wait_for(self, start: int, timeout: float = 30.0) -> list[tuple[str, bytes, int]]:
        """The messages of one wake (from index ``start``): a complete capture and the telemetry."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not _complete(self.messages[start:]):
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"wake incomplete: {len(self.messages) - start} messages")
            return self.messages[start:]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _complete(messages: list[tuple[str, bytes, int]]) -> bool:
    chunks = [protocol.decode_chunk(p)[0] for t, p, _ in messages if t.endswith("/capture")]
    telemetry = any(t.endswith("/telemetry") for t, _, _ in messages)
    return telemetry and bool(chunks) and len({c["i"] for c in chunks}) == chunks[0]["n"]


def record(path: Path = RECORDING) -> dict:
    box = Mailbox(BOX_SEED)
    with tempfile.TemporaryDirectory(prefix="mailcam-record-") as tmp:
        broker = LocalBroker(workdir=Path(tmp) / "broker").start()
        try:
            board = VirtualBoard(Path(tmp) / "board", BrokerAddress("127.0.0.1", broker.port), jpeg=b"")
            board.deploy()
            recorder = Recorder(broker.port, SERIAL)
            wakes = []
            for number, (label, reason, items) in enumerate(ROUND):
                jpeg = box.frame(items, Wake(seed=random.Random(number).randrange(1 << 30)), quality=80)
                if number == 0:
                    board.jpeg = jpeg
                    board.configure(SERIAL)
                (board.root / "capture.jpg").write_bytes(jpeg)
                start = len(recorder.messages)
                result = board.wake(wake=reason, battery_mv=3950 - 2 * number)
                if result.get("error"):
                    raise RuntimeError(f"firmware wake {label} failed: {result['error']}")
                messages = recorder.wait_for(start)
                wakes.append(
                    {
                        "label": label,
                        "wake": reason,
                        "mail": bool(items),
                        "messages": [
                            {"kind": protocol.parse_topic(t)[1], "qos": q, "payload": base64.b64encode(p).decode()}
                            for t, p, q in messages
                        ],
                    }
                )
            recorder.close()
        finally:
            broker.stop()
    fw = subprocess.run(
        [tool("micropython"), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    telemetry = next(m for m in wakes[0]["messages"] if m["kind"] == "telemetry")
    recording = {
        "about": "MQTT messages the mailcam firmware published, recorded by bench/record_wakes.py",
        "serial": SERIAL,
        "firmware_version": protocol.decode_telemetry(base64.b64decode(telemetry["payload"]))["fw"],
        "micropython": fw,
        "wakes": wakes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recording, indent=1) + "\n")
    return recording


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RECORDING, help="where to write the recording")
    args = parser.parse_args()
    recording = record(args.out)
    sizes = [sum(len(m["payload"]) * 3 // 4 for m in w["messages"]) for w in recording["wakes"]]
    print(
        f"recorded {len(recording['wakes'])} wakes ({', '.join(f'{s / 1000:.0f} KB' for s in sizes)}) "
        f"from firmware {recording['firmware_version']} → {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
