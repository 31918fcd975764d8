"""Virtual mailboxes: N devices running the real firmware cycle (``mcam.cycle``) under CPython.

Each device is a thread with its own flash/RTC directory and the simulated HAL (``mcam.hal_sim``); its
camera photographs a box of its own (``mailcam.mailboxes``: the same box every wake, the light and the
camera's pose varying a little), whose contents change only when the door opens: the postman adds mail,
or the owner takes it all. Its battery discharges with the modelled awake time; the door opens at random.
Use it as the demo's device and as the load tests' device::

    from mailcam import simulate
    simulate.run("127.0.0.1", 1883, devices=3, interval_s=5, duration_s=60)
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcam import cycle, hal_sim

from .mailboxes import Item, Mailbox, Wake, random_contents

Credentials = Mapping[str, tuple[str, str]] | Callable[[str], tuple[str, str] | None] | None

ACTIVE_MA = 160.0  # ESP32-CAM awake with Wi-Fi
SLEEP_MA = 0.15


@dataclass
class CycleReport:
    """What one simulated wake did (``result`` is the firmware cycle's own result dict)."""

    serial: str
    cycle: int
    wake: str
    scene: str
    battery_mv: int
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result.get("error") is None


@dataclass
class VirtualMailbox:
    serial: str
    dir: Path
    rng: random.Random
    battery_mv: float = 4150.0
    items: list[Item] = field(default_factory=list)
    cycles: int = 0
    box: Mailbox | None = None

    def __post_init__(self) -> None:
        if self.box is None:
            self.box = Mailbox(self.rng.randrange(1 << 30))

    @property
    def contents(self) -> str:
        """What is in the box, in one word (for the log)."""
        kinds = {item.kind for item in self.items}
        if not kinds:
            return "empty"
        if "package" in kinds:
            return "package"
        return "letters" if kinds == {"letter"} else "mail"

    def next_wake(self, door_probability: float) -> str:
        if self.cycles == 0:
            return "power_on"
        return "door" if self.rng.random() < door_probability else "timer"

    def update_contents(self, wake: str) -> None:
        if wake != "door":
            return  # nothing moves in a closed mailbox
        if self.items and self.rng.random() < 0.4:
            self.items = []  # the owner collected the mail
        else:  # the postman: more on top of what is there
            kind = self.rng.choice(["letters", "letters", "package", "magazine"])
            self.items = self.items + random_contents(self.rng, kind)

    def photo(self, day: bool, flash: bool, wake_seed: int) -> bytes:
        """The camera's JPEG: lit by day or by the flash; without either, too dark to see."""
        assert self.box is not None
        return self.box.frame(self.items, Wake(wake_seed, night=not day and flash, dark=not day and not flash))

    def daylight(self) -> bool:
        hour = (time.time() / 3600 + self.cycles) % 24
        return 7 <= hour <= 19

    def discharge(self, awake_ms: int, interval_s: float) -> None:
        mah = (ACTIVE_MA * awake_ms / 3.6e6) + SLEEP_MA * interval_s / 3600
        self.battery_mv = max(3000.0, self.battery_mv - mah * 0.35)  # ~0.35 mV per mAh on a 2000 mAh cell


def _config(serial: str, host: str, port: int, interval_s: float, creds: tuple[str, str] | None) -> dict:
    broker: dict[str, Any] = {"host": host, "port": port, "timeout_ms": 5000}
    if creds:
        broker["user"], broker["password"] = creds
    return {"serial": serial, "wifi": {"ssid": "sim-ap", "password": "sim"}, "broker": broker,
            "wake_interval_s": max(10, int(interval_s)), "retry": {"base_s": 10, "max_s": 600},
            "door": {"pin": 13, "level": 0}, "camera": {"flash": True}}


def _lookup(credentials: Credentials, serial: str) -> tuple[str, str] | None:
    if credentials is None:
        return None
    if callable(credentials):
        return credentials(serial)
    return credentials.get(serial)


def run_device_cycle(box: VirtualMailbox, door_probability: float, interval_s: float) -> CycleReport:
    """One wake of one virtual mailbox through the firmware's real cycle."""
    wake = box.next_wake(door_probability)
    box.update_contents(wake)
    seed = box.rng.randrange(1 << 30)
    day = box.daylight()
    rendered: list[str] = []

    def camera() -> bytes:
        # The flash LED lights the box at night, unless the firmware saved it for a low battery.
        rendered.append(box.contents if day or hal.flash_used else "dark")
        return box.photo(day, hal.flash_used, seed)

    settings = {"wake": wake, "battery_mv": int(box.battery_mv), "quiet": True}
    hal = hal_sim.HAL(str(box.dir), settings=settings, jpeg=camera)
    result = cycle.run(hal, str(box.dir / "config.json"), str(box.dir / "queue"))
    box.cycles += 1
    box.discharge(result.get("awake_ms") or 0, interval_s)
    kind = rendered[0] if rendered else box.contents
    return CycleReport(box.serial, box.cycles, wake, kind, int(box.battery_mv), result)


def run(
    broker_host: str,
    broker_port: int,
    devices: int = 3,
    serial_prefix: str = "sim",
    interval_s: float = 30.0,
    door_probability: float = 0.3,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    credentials: Credentials = None,
    on_cycle: Callable[[CycleReport], None] | None = None,
    cycles: int | None = None,
    seed: int = 0,
    state_dir: str | Path | None = None,
) -> list[CycleReport]:
    """Run ``devices`` virtual mailboxes until ``duration_s``, ``cycles`` per device, or ``stop_event``.

    Serials are ``<serial_prefix>-<n>``; ``credentials`` maps a serial to (user, password) (a mapping or
    a callable). Each device wakes every ``interval_s`` real seconds. Returns every cycle's report.
    """
    stop = stop_event or threading.Event()
    root = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="mailcam-sim-"))
    reports: list[CycleReport] = []
    lock = threading.Lock()
    deadline = None if duration_s is None else time.monotonic() + duration_s

    def device(n: int) -> None:
        serial = f"{serial_prefix}-{n}"
        d = root / serial
        d.mkdir(parents=True, exist_ok=True)
        cfg = _config(serial, broker_host, broker_port, interval_s, _lookup(credentials, serial))
        (d / "config.json").write_text(json.dumps(cfg))
        box = VirtualMailbox(serial, d, random.Random(f"{seed}:{serial}"))
        while not stop.is_set():
            report = run_device_cycle(box, door_probability, interval_s)
            with lock:
                reports.append(report)
            if on_cycle:
                on_cycle(report)
            if cycles is not None and box.cycles >= cycles:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            wait = interval_s if report.ok else min(interval_s, 1.0)
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            stop.wait(wait)  # the device's deep sleep

    threads = [threading.Thread(target=device, args=(n,), name=f"{serial_prefix}-{n}", daemon=True)
               for n in range(1, devices + 1)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
    return reports
