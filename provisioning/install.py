"""`mailcam provision install`: a bare board to a calibrated mailbox in one resumable run.

    micropython? ─► firmware ─► precheck ─► register ─► claim? ─► broker-login ─► config ─► reset
    (esptool)       copy+hash   Wi-Fi etc.   cloud                 mosquitto       copy+hash
                                on the board                       passwd + ACL
    ─► telemetry ─► calibrate ─► check ─► claim sheet (text, terminal QR, PNG, printable page)
       (broker)     (cloud)      (board)

Everything that can fail because of the board, the port, the cable or the Wi-Fi password comes
before ``register``: those failures leave nothing in the cloud. From ``register`` on, each step
done is recorded in a state file per serial (``~/.local/state/mailcam/install/<serial>.json``,
readable by its owner only): a run that stopped — no telemetry, the cloud down — is continued by
running the same command again; a changed config (a corrected broker address) redoes the config
and what follows it. The device token (= the device's broker password, see ``register``) lives
there and in the board's config.json only until the install passed, then it is removed from the
state file. Nothing secret is printed: passwords and tokens show as ``••••``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from provisioning import board as boards

STEPS = (
    "micropython",
    "firmware",
    "precheck",
    "register",
    "claim",
    "broker-login",
    "config",
    "reset",
    "telemetry",
    "calibrate",
    "check",
)
CLOUD_STEPS = STEPS[STEPS.index("register") :]  # recorded in the state file (resumable)
AFTER_CONFIG = STEPS[STEPS.index("config") :]  # redone when the config changes
PRECHECKS = ("config", "camera", "battery", "wifi")  # what a bare board can prove before any login exists
DEFAULT_STATE_DIR = Path.home() / ".local" / "state" / "mailcam" / "install"


UNCLAIMED_PHOTO_WAIT_S = 20.0  # in case the gateway does act for an unclaimed mailbox (it may hold it)


class StepPending(RuntimeError):
    """Not possible yet, through no fault (the homeowner has not claimed the mailbox); a re-run does it."""


class StepFailed(RuntimeError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class InstallOptions:
    """What ``mailcam provision install`` was told (see its --help)."""

    serial: str
    port: str
    cloud: str
    token: str
    ssid: str
    wifi_password: str
    broker_host: str
    broker_port: int = 1883
    passwd: Path = Path("/etc/mosquitto/mailcam.passwd")
    acl: Path = Path("/etc/mosquitto/mailcam.acl")
    reload_command: str = "systemctl reload mosquitto"
    watch_user: str | None = None
    watch_password: str | None = None
    watch_host: str | None = None  # the broker as this machine reaches it (default: broker_host)
    micropython: Path | None = None
    claim: bool = False
    name: str | None = None
    wake_interval_s: int = 3600
    state_dir: Path = DEFAULT_STATE_DIR
    mpy_cross: str | None = None
    telemetry_wait_s: float = 120.0
    calibrate_wait_s: float = 120.0
    board_timeout_s: float = 10.0
    yes: bool = False


@dataclass
class InstallState:
    """The state file of one serial: steps done (with what they found) and what later steps need."""

    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path, serial: str) -> InstallState:
        path = state_dir / f"{serial}.json"
        data = json.loads(path.read_text()) if path.exists() else {"serial": serial, "done": {}}
        return cls(path, data)

    def save(self) -> None:
        from provisioning.cli import write_secret

        write_secret(self.path, json.dumps(self.data, indent=2) + "\n")

    def done(self, step: str) -> str | None:
        return self.data["done"].get(step)

    def mark(self, step: str, detail: str) -> None:
        self.data["done"][step] = detail
        self.save()

    def forget(self, steps: tuple[str, ...]) -> None:
        for step in steps:
            self.data["done"].pop(step, None)
        self.save()


def mask(secret: str | None) -> str:
    return "(none)" if not secret else "••••"


@dataclass
class Outcome:
    step: str
    ok: bool | None  # None: skipped
    detail: str
    earlier: bool = False  # done by an earlier run


class Installer:
    """One run of the install; ``run()`` returns the outcomes, raising nothing but reporting failures."""

    def __init__(self, opts: InstallOptions, console: Console, confirm: Callable[[str], bool]) -> None:
        self.opts = opts
        self.console = console
        self.confirm = confirm
        self.state = InstallState.load(opts.state_dir, opts.serial)
        self.outcomes: list[Outcome] = []
        self.build_dir = Path(tempfile.mkdtemp(prefix="mailcam-install-"))

    # ------------------------------------------------------------ the run
    def run(self) -> list[Outcome]:
        o = self.opts
        try:
            if self.state.done("reset"):  # the board runs our firmware: never erase it again on a re-run
                self._skip(
                    "micropython",
                    "not written again: the board runs mailcam since an earlier run" if o.micropython else "not asked",
                )
                self._skip("firmware", "installed by an earlier run", earlier=True)
                self._skip("precheck", "passed in an earlier run", earlier=True)
            else:
                if o.micropython:
                    self._step("micropython", self._write_micropython)
                else:
                    self._skip("micropython", "not asked (--micropython FIRMWARE.bin writes MicroPython first)")
                self._step("firmware", self._copy_firmware)
                self._step("precheck", self._precheck)
            self._cloud_step("register", self._register)
            if o.claim:
                self._cloud_step("claim", self._claim)
            else:
                self._skip("claim", "for the homeowner (claim code below)")
            self._cloud_step("broker-login", self._broker_login)
            self._config_changed()
            self._cloud_step("config", self._write_config)
            self._cloud_step("reset", self._reset_and_watch)
            self._cloud_step("telemetry", self._wait_telemetry)
            self._cloud_step("calibrate", self._calibrate)
            self._cloud_step("check", self._final_check)
            self.state.data.pop("device_token", None)  # on the board now; nothing else needs it
            self.state.save()
        except StepFailed as exc:
            self.outcomes.append(Outcome(exc.step, False, str(exc)))
        finally:
            shutil.rmtree(self.build_dir, ignore_errors=True)
        return self.outcomes

    def _step(self, name: str, fn: Callable[[], str]) -> None:
        with self.console.status(f"[bold]{name}[/]…") as self.status:
            try:
                detail = fn()
            except StepFailed:
                raise
            except boards.BoardError as exc:
                raise StepFailed(name, str(exc)) from exc
        self.outcomes.append(Outcome(name, True, detail))
        self.console.print(f"[green]✓[/] {name}: {detail}")

    def _cloud_step(self, name: str, fn: Callable[[], str]) -> None:
        earlier = self.state.done(name)
        if earlier is not None:
            self._skip(name, earlier, earlier=True)
            return
        try:
            self._step(name, fn)
        except StepPending as exc:
            self.outcomes.append(Outcome(name, None, f"pending: {exc}"))
            self.console.print(f"[yellow]… {name}[/]: pending: {exc}")
            return
        self.state.mark(name, self.outcomes[-1].detail)

    def _skip(self, name: str, detail: str, *, earlier: bool = False) -> None:
        self.outcomes.append(Outcome(name, True if earlier else None, detail, earlier=earlier))
        self.console.print(f"[dim]{'✓' if earlier else '–'} {name}: {detail}[/]")

    # ------------------------------------------------------------ steps before the cloud
    def _write_micropython(self) -> str:
        from provisioning import esp

        o = self.opts
        if not o.yes and not self.confirm(f"Erase the whole board on {o.port} and write {o.micropython.name}?"):
            raise StepFailed("micropython", "not confirmed; nothing was written")
        try:
            family = esp.write_micropython(o.port, o.micropython, step=lambda s: self.console.log(f"esptool: {s}"))
        except esp.EspError as exc:
            raise StepFailed("micropython", str(exc)) from exc
        self._wait_for_repl()
        return f"{o.micropython.name} written to the {family} and verified"

    def _wait_for_repl(self) -> None:
        """A freshly written MicroPython formats its filesystem on first boot: give it time."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with boards.open_board(self.opts.port, timeout=5):
                    return
            except boards.NoAnswer:
                if time.monotonic() > deadline:
                    raise

    def _copy_firmware(self) -> str:
        from provisioning.firmware import stage_firmware

        with boards.open_board(self.opts.port, timeout=self.opts.board_timeout_s) as board:
            # A board that is not an ESP32 is the virtual one: its "hardware" is the simulator HAL.
            files = stage_firmware(
                self.build_dir, mpy_cross=self.opts.mpy_cross, include_sim=board.platform() != "esp32"
            )
            done: list[str] = []

            def progress(remote: str) -> None:  # each file twice: copied, then hash-checked
                done.append(remote)
                what = "copying" if len(done) <= len(files) else "checking SHA-256 of"
                self.status.update(f"[bold]firmware[/]: {what} {remote} ({len(done)}/{2 * len(files)})")

            boards.install_firmware(board, files, progress)
        size = sum(local.stat().st_size for local, _ in files)
        return f"{len(files)} files ({size // 1024} KB) copied in one session; every SHA-256 matches on the board"

    def _precheck(self) -> str:
        probe = self._config(broker_password=None)
        with boards.open_board(self.opts.port, timeout=self.opts.board_timeout_s) as board:
            results = board.selftest(PRECHECKS, json.dumps(probe))
        failed = [f"{name}: {detail}" for name, (ok, detail) in results.items() if not ok]
        if failed:
            raise StepFailed("precheck", "; ".join(failed) + ". Nothing was registered; fix it and run again.")
        return ", ".join(f"{name} {detail}" for name, (ok, detail) in results.items() if name != "config")

    # ------------------------------------------------------------ the cloud, the broker
    def _register(self) -> str:
        from provisioning.cli import RegistrationError, register_device, release_key

        o = self.opts
        try:
            data = register_device(o.cloud, o.token, o.serial, name=o.name, wake_interval_s=o.wake_interval_s)
            ota_key = release_key(o.cloud, o.token)  # public: the device runs only releases signed with it
        except RegistrationError as exc:
            raise StepFailed("register", str(exc)) from exc
        self.state.data.update(claim_code=data["claim_code"], device_token=data["device_token"], ota_key=ota_key)
        self.state.save()
        updates = "takes signed updates" if ota_key else "takes no over-the-air updates (the cloud signs none)"
        return f"{o.serial} registered at {o.cloud}; {updates}"

    def _claim(self) -> str:
        import httpx

        o = self.opts
        body = {"claim_code": self.state.data["claim_code"], "name": o.name}
        try:
            response = httpx.post(
                f"{o.cloud.rstrip('/')}/api/devices/claim/",
                json=body,
                headers={"Authorization": f"Bearer {o.token}"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            raise StepFailed("claim", f"cannot reach the cloud: {exc}") from exc
        if response.status_code != 200:
            raise StepFailed("claim", f"the cloud refused the claim ({response.status_code}): {response.text[:200]}")
        self.state.data["claimed"] = True
        self.state.save()
        return "claimed for this account (your gateway acts for it)"

    def _device_token(self) -> str:
        token = self.state.data.get("device_token")
        if not token:
            raise StepFailed(
                "config",
                "the device token is gone from the state file (the install passed "
                "before?); rotate it in the dashboard and run `mailcam provision config`",
            )
        return token

    def _broker_login(self) -> str:
        from provisioning import mosquitto

        o = self.opts
        try:
            mosquitto.set_password(o.passwd, o.serial, self._device_token())
            mosquitto.write_acl(o.acl)
        except (OSError, subprocess.CalledProcessError, ValueError) as exc:
            raise StepFailed("broker-login", f"cannot write the broker login to {o.passwd}: {exc}") from exc
        if o.reload_command:
            try:
                proc = subprocess.run(shlex.split(o.reload_command), capture_output=True, text=True, timeout=60)
            except OSError as exc:
                raise StepFailed("broker-login", f"cannot run `{o.reload_command}`: {exc}") from exc
            if proc.returncode != 0:
                raise StepFailed("broker-login", f"`{o.reload_command}` failed: {proc.stderr.strip()[:300]}")
        return f"login {o.serial} (password: its device token {mask('x')}) in {o.passwd}; ACL {o.acl}"

    # ------------------------------------------------------------ config, reset
    def _config(self, broker_password: str | None) -> dict:
        from mcam import config as fw_config

        from provisioning.cli import build_config

        o = self.opts
        try:
            return build_config(
                o.serial,
                ssid=o.ssid,
                broker_host=o.broker_host,
                wifi_password=o.wifi_password,
                broker_port=o.broker_port,
                broker_password=broker_password,
                wake_interval_s=o.wake_interval_s,
                ota_key=self.state.data.get("ota_key"),
            )
        except fw_config.ConfigError as exc:
            raise StepFailed("config", f"invalid config: {exc}") from exc

    def _config_changed(self) -> None:
        """A re-run with other Wi-Fi or broker settings redoes config.json and what follows it."""
        if not self.state.data.get("device_token"):
            return
        digest = hashlib.sha256(json.dumps(self._config(self._device_token()), sort_keys=True).encode()).hexdigest()
        if self.state.data.get("config_sha256") not in (None, digest):
            self.console.print("[yellow]the config changed since the last run: writing it again[/]")
            self.state.forget(AFTER_CONFIG)
        self.state.data["config_sha256"] = digest
        self.state.save()

    def _write_config(self) -> str:
        from provisioning.cli import write_secret

        cfg = self._config(self._device_token())
        local = self.state.path.with_name(f"{self.opts.serial}.config.json")
        write_secret(local, json.dumps(cfg, indent=2) + "\n")
        try:
            with boards.open_board(self.opts.port, timeout=self.opts.board_timeout_s) as board:
                board.put_files([(local, "config.json")])
                board.verify([(local, "config.json")])
        finally:
            local.unlink()
        return (
            f"config.json: Wi-Fi {cfg['wifi']['ssid']!r} (password {mask(cfg['wifi']['password'])}), broker "
            f"{cfg['broker']['host']}:{cfg['broker']['port']} as {cfg['broker']['user']} "
            f"(password {mask(cfg['broker']['password'])}); SHA-256 matches on the board"
        )

    def _reset_and_watch(self) -> str:
        o = self.opts
        if not o.yes and not self.confirm("Is the mailbox EMPTY and CLOSED? Its first photo becomes its reference"):
            raise StepFailed("reset", "not confirmed; empty and close the box, then run the command again")
        self.watcher = TelemetryWatch(self.opts)
        self.watcher.start()
        # whole seconds, one back: the board stamps its photo in whole seconds, maybe in this very second
        self.state.data["reset_at"] = (datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)).isoformat()
        self.state.save()
        with boards.open_board(o.port, timeout=o.board_timeout_s) as board:
            board.reset()
        return "the board restarts into the firmware and takes its first photo"

    # ------------------------------------------------------------ after the reset
    def _wait_telemetry(self) -> str:
        from mcam import protocol

        watcher = getattr(self, "watcher", None)
        if watcher is None:  # a re-run after a stop here: the board must wake again
            watcher = self.watcher = TelemetryWatch(self.opts).start()
            with boards.open_board(self.opts.port, timeout=self.opts.board_timeout_s) as board:
                board.reset()
        try:
            payload = watcher.wait(self.opts.telemetry_wait_s)
        finally:
            watcher.stop()
        if payload is None:
            raise StepFailed(
                "telemetry",
                f"no telemetry from {self.opts.serial} within {self.opts.telemetry_wait_s:.0f} s. {self._diagnose()}",
            )
        t = protocol.decode_telemetry(payload)
        return f"battery {t['bat']} mV, RSSI {t['rssi']} dBm, firmware {t['fw']}, woke by {t['wake']}"

    def _diagnose(self) -> str:
        """Why the board did not report: the self-test on the board names the failing step."""
        try:
            results = self._selftest()
        except boards.BoardError as exc:
            return f"The board did not answer either: {exc}"
        failed = [f"{name}: {detail}" for name, (ok, detail) in results.items() if not ok]
        return (
            ("The self-test on the board says: " + "; ".join(failed))
            if failed
            else ("The self-test on the board passes: is the gateway running and connected to this broker?")
        )

    def _selftest(self) -> dict:
        from mcam import selftest

        with boards.open_board(self.opts.port, timeout=self.opts.board_timeout_s) as board:
            return board.selftest(selftest.ALL)

    def _calibrate(self) -> str:
        from provisioning.cli import CalibrationError, take_reference

        o = self.opts
        claimed = self.state.data.get("claimed")
        since = self.state.data["reset_at"]
        # The homeowner's gateway acts for its owner's mailboxes: an unclaimed one's photo waits there.
        wait = o.calibrate_wait_s if claimed else min(o.calibrate_wait_s, UNCLAIMED_PHOTO_WAIT_S)
        try:
            data = take_reference(o.cloud, o.token, o.serial, {"taken_after": since}, wait=wait)
        except CalibrationError as exc:
            if exc.status == 409 and not claimed:
                raise StepPending(
                    f"the first photo reaches the cloud once the homeowner has claimed the mailbox; then run "
                    f"`mailcam provision calibrate {o.serial} --since {since}` (or this command again)"
                ) from exc
            raise StepFailed("calibrate", str(exc)) from exc
        return f"photo {data['capture_id']} is the empty reference; mail alerts are on"

    def _final_check(self) -> str:
        results = self._selftest()
        failed = [f"{name}: {detail}" for name, (ok, detail) in results.items() if not ok]
        if failed:
            raise StepFailed("check", "; ".join(failed))
        return ", ".join(f"{name} ✓" for name in results)


class TelemetryWatch:
    """Subscribed to the device's telemetry topic before the reset, so the first report is not missed."""

    def __init__(self, opts: InstallOptions) -> None:
        self.opts = opts
        self.got: bytes | None = None
        self.arrived = threading.Event()
        self.client = None

    def start(self) -> TelemetryWatch:
        import uuid

        import paho.mqtt.client as paho
        from mcam import protocol

        o = self.opts
        subscribed = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mailcam-install-" + uuid.uuid4().hex[:8])
        if o.watch_user:
            client.username_pw_set(o.watch_user, o.watch_password)
        topic = protocol.topic(o.serial, protocol.TELEMETRY)
        client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = self._on_message
        host = o.watch_host or o.broker_host
        try:
            client.connect(host, o.broker_port)
        except OSError as exc:
            raise StepFailed("reset", f"cannot reach the broker at {host}:{o.broker_port} from here: {exc}") from exc
        client.loop_start()
        self.client = client
        if not subscribed.wait(10):
            self.stop()
            raise StepFailed(
                "reset",
                f"the broker at {host}:{o.broker_port} did not let this machine subscribe "
                f"(--watch-user/--watch-password: a login that may read mailcam/v1/#)",
            )
        return self

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        self.got = bytes(msg.payload)  # type: ignore[attr-defined]
        self.arrived.set()

    def wait(self, timeout: float) -> bytes | None:
        self.arrived.wait(timeout)
        return self.got

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()
            self.client = None


# ---------------------------------------------------------------- the claim sheet
def claim_url(cloud: str, code: str) -> str:
    return f"{cloud.rstrip('/')}/?claim={code}"


@dataclass
class ClaimSheet:
    png: Path
    html: Path


def write_claim_sheet(state_dir: Path, serial: str, cloud: str, code: str, console: Console) -> ClaimSheet:
    """The homeowner's claim code: printed, as a terminal QR code, a PNG and a printable page."""
    import base64
    import html
    import io

    import segno

    qr = segno.make(claim_url(cloud, code), error="m")
    qr.terminal(out=console.file, compact=True)
    png = state_dir / f"{serial}-claim.png"
    qr.save(png, scale=8, border=4)
    svg = io.BytesIO()
    qr.save(svg, kind="svg", scale=6, xmldecl=False)
    page = state_dir / f"{serial}-claim.html"
    page.write_text(
        CLAIM_PAGE.format(
            serial=html.escape(serial),
            code=html.escape(code),
            url=html.escape(claim_url(cloud, code)),
            qr=base64.b64encode(svg.getvalue()).decode(),
        )
    )
    return ClaimSheet(png, page)


CLAIM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your mailbox {serial}</title>
<style>body{{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}} .code{{font:bold 2em monospace;
letter-spacing:.1em}} @media print{{button{{display:none}}}}</style></head>
<body><h1>Your mailbox is installed</h1>
<p>Scan the code with your phone, or open <b>{url}</b>, sign in (or create an account) and enter:</p>
<p class="code">{code}</p>
<p><img alt="QR code of the claim link" src="data:image/svg+xml;base64,{qr}"></p>
<p>Mailbox <b>{serial}</b>. The code works once; keep this page until you have claimed the mailbox.</p>
<button onclick="print()">Print</button></body></html>
"""


def outcome_table(outcomes: list[Outcome], serial: str) -> Table:
    table = Table(title=f"install {serial}")
    table.add_column("step")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    marks = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[dim]skipped[/]"}
    for o in outcomes:
        mark = "[yellow]pending[/]" if o.ok is None and o.detail.startswith("pending") else marks[o.ok]
        table.add_row(o.step, mark + (" (earlier run)" if o.earlier else ""), o.detail)
    return table


def check_table(results: dict, port: str) -> Table:
    table = Table(title=f"self-test on {port}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for name, (ok, detail) in results.items():
        table.add_row(name, "[green]pass[/]" if ok else "[red]FAIL[/]", detail)
    return table
