"""`mailcam demo`: the whole system on one machine, on embedded defaults.

    broker (Mosquitto if installed, else embedded amqtt)
      ↑ simulated mailboxes (the real firmware cycle under CPython)
      ↓ gateway (durable outbox) → cloud (SQLite, offline analyzer, console notifier)

A demo user owns the mailboxes; the live log shows captures, analyses, mail
deliveries and notifications as they happen. The demo plays the installer too:
each box's first photo (taken empty) is marked "this is empty", which calibrates
it. Ctrl-C stops everything, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.panel import Panel
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.events import DomainEvent, Event
from mailcam.broker import LocalBroker, free_port
from mailcam.orchestration import wait_gateway_connected

DEMO_EMAIL = "demo@mailcam.example"
DEMO_PASSWORD = "mailcam-demo"


@dataclass
class DemoOptions:
    devices: int = 3
    interval_s: float = 10.0
    door_probability: float = 0.5
    port: int = 8000
    data_dir: Path = Path("mailcam-data/demo")
    openai: bool = False
    duration_s: float | None = None
    exit_after_analyses: int | None = None


@dataclass
class LiveFeed:
    """Prints domain events as they are committed-to-be; counts analyses for --exit-after."""

    console: Console
    analyses: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    target: int | None = None
    # Photos the installer should mark "this is empty" (each box's first, taken with the box empty).
    to_calibrate: queue.Queue = field(default_factory=queue.Queue)

    def emit(self, session: Session, event: Event) -> None:
        data = event.data
        serial = data.get("device_serial", "?")
        if event.kind == DomainEvent.CAPTURE_RECEIVED:
            self.console.print(f"[cyan]☁  cloud[/]   {serial}: capture {data.get('capture_id')} stored "
                               f"({data.get('trigger_type')})")
        elif event.kind == DomainEvent.ANALYSIS_COMPLETED:
            verdict = "[bold green]mail[/]" if data.get("mail_detected") else "empty"
            quality = data.get("image_quality")
            if quality and quality != "ok":
                verdict = f"[yellow]{quality}[/]"
            self.console.print(f"[magenta]🔎 vision[/]  {serial}: {verdict} "
                               f"(confidence {data.get('confidence') or 0:.2f}) {data.get('description') or ''}")
            self._count()
        elif event.kind == DomainEvent.CALIBRATION_NEEDED:
            self.to_calibrate.put(data.get("capture_id"))
        elif event.kind == DomainEvent.MAIL_DELIVERY:
            words = {"arrived": "[bold green]mail arrived[/] (alert)", "more": "[bold green]more mail[/] (alert)",
                     "collected": "mail collected"}
            self.console.print(f"[green]📬 mailbox[/] {serial}: {words.get(data.get('transition'), '?')}")
        elif event.kind == DomainEvent.ANALYSIS_FAILED:
            self.console.print(f"[red]🔎 vision[/]  {serial}: analysis failed: {data.get('error')}")
            self._count()
        elif event.kind == DomainEvent.TRIGGER_FULFILLED:
            self.console.print(f"[green]📸 trigger[/] {serial}: manual trigger {data.get('trigger_id')} answered")

    def _count(self) -> None:
        self.analyses += 1
        if self.target is not None and self.analyses >= self.target:
            self.done.set()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the demo owns Ctrl-C
        pass


def _serve_cloud(app, port: int) -> tuple[_Server, threading.Thread]:  # noqa: ANN001
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="cloud", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the cloud did not start on port {port} (is it in use? try --port)")
        time.sleep(0.05)
    return server, thread


def _seed_demo_account(base_url: str, serials: list[str], ctx: AppContext) -> str:
    """Create the demo user (its own installer), its mailboxes and a gateway; returns the gateway token."""
    from cloud.models import Role
    from cloud.services import accounts

    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/api/users/", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "name": "Demo"})
        with ctx.sessions() as session:  # the operator's `mailcam set-role EMAIL installer`
            accounts.set_role(session, DEMO_EMAIL, Role.INSTALLER)
            session.commit()
        token = client.post("/api/auth/token/", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for serial in serials:
            reg = client.post("/api/devices/", json={"serial": serial, "name": f"Mailbox {serial}",
                                                     "wake_interval_s": 60}, headers=headers)
            if reg.status_code == 201:
                claim = client.post("/api/devices/claim/", json={"claim_code": reg.json()["claim_code"]},
                                    headers=headers)
                claim.raise_for_status()
        gateway = client.post("/api/gateways/", json={"name": "demo gateway"}, headers=headers)
        gateway.raise_for_status()
        return gateway.json()["gateway_token"]


def _installer(base_url: str, feed: LiveFeed, stop: threading.Event) -> threading.Thread:
    """Plays the installer: each box's first photo shows it empty, so it becomes the box's reference."""

    def main() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            token = client.post("/api/auth/token/", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            while not stop.is_set():
                try:
                    capture_id = feed.to_calibrate.get(timeout=0.5)
                except queue.Empty:
                    continue
                reply = client.post(f"/api/captures/{capture_id}/reference", headers=headers)
                if reply.status_code == 201:
                    feed.console.print(f"[yellow]🛠  installer[/] {reply.json()['device_serial']}: photo {capture_id} "
                                       "marked 'this is empty' — the box is calibrated, mail alerts are on")

    thread = threading.Thread(target=main, name="installer", daemon=True)
    thread.start()
    return thread


def _run_gateway(settings, stop: threading.Event) -> threading.Thread:  # noqa: ANN001
    from gateway.service import GatewayService

    def main() -> None:
        async def run() -> None:
            gateway = GatewayService(settings)
            task = asyncio.create_task(gateway.run())
            while not stop.is_set() and not task.done():
                await asyncio.sleep(0.2)
            await gateway.stop()
            await task

        asyncio.run(run())

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    return thread


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    console = console or Console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-5s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "httpx", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("mailcam.notify").setLevel(logging.INFO)

    from cloud.app import create_app
    from cloud.settings import Settings
    from gateway.settings import GatewaySettings
    from mailcam import simulate

    data_dir = options.data_dir.resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a demo starts from a clean slate every time
    data_dir.mkdir(parents=True)

    vision = {"provider": "offline"}
    if options.openai:
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("MAILCAM_VISION__OPENAI_API_KEY"):
            console.print("[red]--openai needs OPENAI_API_KEY (or MAILCAM_VISION__OPENAI_API_KEY) to be set[/]")
            return 2
        vision = {"provider": "openai", "fallback_provider": "offline",
                  "openai_api_key": os.environ.get("MAILCAM_VISION__OPENAI_API_KEY") or os.environ["OPENAI_API_KEY"]}

    stop = threading.Event()
    feed = LiveFeed(console, target=options.exit_after_analyses)
    broker = LocalBroker(workdir=data_dir / "broker").start()
    console.print(f"[dim]broker: {broker.kind} on 127.0.0.1:{broker.port}[/]")
    settings = Settings(data_dir=data_dir / "cloud", vision=vision)
    ctx = AppContext.build(settings)
    ctx.add_event_sink(feed)
    server, cloud_thread = _serve_cloud(create_app(ctx=ctx), options.port)
    base_url = f"http://127.0.0.1:{options.port}"
    serials = [f"demo-{n}" for n in range(1, options.devices + 1)]
    gateway_token = _seed_demo_account(base_url, serials, ctx)
    _installer(base_url, feed, stop)
    gateway_settings = GatewaySettings(
        cloud_url=base_url, token=gateway_token, broker_host="127.0.0.1", broker_port=broker.port,
        data_dir=data_dir / "gateway", metrics_port=0, trigger_wait_s=10,
    )
    gateway_thread = _run_gateway(gateway_settings, stop)
    wait_gateway_connected(data_dir / "gateway" / "gateway.db")

    console.print(Panel.fit(
        f"[bold]mailcam demo[/] — {options.devices} simulated mailboxes waking every {options.interval_s:g}s\n\n"
        f"Dashboard:  {base_url}/\nAPI docs:   {base_url}/docs\n"
        f"Login:      {DEMO_EMAIL} / {DEMO_PASSWORD}\n\n"
        "Press [bold]Take a photo now[/] in the dashboard to send a manual trigger.\n"
        "Press [bold]Notify me on this device[/] there to get the mail alerts as browser notifications.\n"
        "Ctrl-C stops everything.",
        title="running", border_style="green",
    ))

    def on_cycle(report) -> None:  # noqa: ANN001
        result = report.result
        status = "[green]sent[/]" if report.ok else f"[yellow]kept for later ({result.get('error')})[/]"
        console.print(f"[blue]📫 device[/]  {report.serial}: {report.wake} wake, scene '{report.scene}', "
                      f"battery {report.battery_mv} mV → {status}")

    sim_thread = threading.Thread(
        target=simulate.run, name="mailboxes",
        kwargs={"broker_host": "127.0.0.1", "broker_port": broker.port, "devices": options.devices,
                "serial_prefix": "demo", "interval_s": options.interval_s,
                "door_probability": options.door_probability, "stop_event": stop, "on_cycle": on_cycle,
                "state_dir": data_dir / "mailboxes"},
        daemon=True,
    )
    sim_thread.start()

    exit_code = 0
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    try:
        while not feed.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                if options.exit_after_analyses is not None:
                    console.print(f"[red]only {feed.analyses} analyses before the deadline[/]")
                    exit_code = 1
                break
            if not (cloud_thread.is_alive() and gateway_thread.is_alive()):
                console.print("[red]a service stopped unexpectedly[/]")
                exit_code = 1
                break
            feed.done.wait(0.5)
    except KeyboardInterrupt:
        console.print("\n[dim]stopping…[/]")
    finally:
        stop.set()
        sim_thread.join(timeout=30)
        gateway_thread.join(timeout=30)
        server.should_exit = True
        cloud_thread.join(timeout=30)
        ctx.engine.dispose()
        broker.stop()
        console.print(f"[dim]stopped cleanly; {feed.analyses} analyses. Data kept in {data_dir}[/]")
    return exit_code


def pick_port(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()
