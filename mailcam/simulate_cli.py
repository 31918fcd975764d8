"""``mailcam simulate``: virtual mailboxes on the real firmware cycle (register in mailcam/cli.py)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from .simulate import CycleReport


def simulate(
    devices: Annotated[int, typer.Option("--devices", "-n", help="Number of virtual mailboxes.")] = 3,
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    serial_prefix: Annotated[str, typer.Option(help="Serials are <prefix>-<n>.")] = "sim",
    interval: Annotated[float, typer.Option(help="Seconds between wakes of each device.")] = 30.0,
    door_probability: Annotated[float, typer.Option(help="Chance that a wake is a door opening.")] = 0.3,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    cycles: Annotated[int | None, typer.Option(help="Stop after this many wakes per device.")] = None,
    username: Annotated[str | None, typer.Option(help="Broker user (same for every device).")] = None,
    password: Annotated[str | None, typer.Option(help="Broker password.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for doors and scenes.")] = 0,
) -> None:
    """Run N virtual mailboxes against a broker (and the gateway behind it)."""
    from . import simulate as sim  # lazily: Pillow and the firmware only when simulating

    console = Console()
    stats: Counter[str] = Counter()
    last: dict[str, str] = {}
    lock = threading.Lock()

    def line() -> Text:
        return Text(f"{devices} devices  wakes {stats['cycles']}  ok {stats['ok']}  "
                    f"failed {stats['failed']}  "
                    f"captures {stats['captures']}  manual {stats['manual']}  bytes {stats['bytes']:,}  "
                    f"last: {' | '.join(last.values())[-90:]}")

    with Live(line(), console=console, refresh_per_second=4) as live:
        def on_cycle(r: CycleReport) -> None:
            with lock:
                stats["cycles"] += 1
                stats["ok" if r.ok else "failed"] += 1
                stats["captures"] += len(r.result.get("captures", []))
                stats["manual"] += 1 if r.result.get("manual_tid") else 0
                stats["bytes"] += r.result.get("bytes_out", 0)
                last[r.serial] = f"{r.serial} {r.wake} {r.scene} {r.battery_mv}mV"
                live.update(line())

        creds = (lambda serial: (username, password or "")) if username else None
        try:
            sim.run(host, port, devices=devices, serial_prefix=serial_prefix, interval_s=interval,
                    door_probability=door_probability, duration_s=duration, cycles=cycles,
                    credentials=creds, on_cycle=on_cycle, seed=seed)
        except KeyboardInterrupt:
            pass
    console.print(f"done: {stats['cycles']} wakes, {stats['failed']} failed")
