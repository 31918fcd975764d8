"""`mailcam provision gateway`: register the homeowner's gateway box and print how to start it.

The same as **Gateways → Add a gateway** in the dashboard: the cloud makes the token and the setup
text (``cloud.services.gateways``), this prints them once and can write the two files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from provisioning.cli import provision_app

EXAMPLES = """
Examples:

    mailcam provision gateway "Garage Pi" --cloud https://mailcam.example.com --token mcu_…
    sudo mailcam provision gateway "Garage Pi" --cloud … --token … --write-to /etc
      (writes /etc/mailcam/gateway.env, chmod 600, and /etc/systemd/system/mailcam-gateway.service;
       then: sudo systemctl enable --now mailcam-gateway)
"""


@provision_app.command("gateway", epilog=EXAMPLES)
def gateway(
    name: Annotated[str, typer.Argument(help="A name for the gateway, e.g. 'Garage Pi'")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="The homeowner's access token")],
    write_to: Annotated[
        Path | None,
        typer.Option(
            help="Also write <DIR>/mailcam/gateway.env (chmod 600) and "
            "<DIR>/systemd/system/mailcam-gateway.service (DIR is /etc on the gateway box)"
        ),
    ] = None,
) -> None:
    """Register a gateway for the homeowner's mailboxes; prints its token (shown only once), the
    `mailcam gateway` command line and a systemd unit with its environment file."""
    import httpx

    try:
        response = httpx.post(
            f"{cloud.rstrip('/')}/api/gateways/",
            json={"name": name},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the cloud: {exc}", err=True)
        raise typer.Exit(2) from exc
    if response.status_code != 201:
        typer.echo(f"gateway registration refused ({response.status_code}): {_detail(response)}", err=True)
        raise typer.Exit(1)
    data = response.json()
    setup = data["setup"]
    typer.echo(f"registered gateway #{data['gateway_id']} {data['name']!r}")
    typer.echo(f"gateway token: {data['gateway_token']}   (shown only now; revoke it in the dashboard)")
    typer.echo("\nRun it now:\n")
    typer.echo(f"    {setup['command']}")
    if write_to is None:
        typer.echo("\nOr keep it running with systemd (both files; `--write-to /etc` writes them):\n")
        typer.echo(setup["env_file"])
        typer.echo(setup["systemd_unit"])
        return
    env_path = write_to / "mailcam" / "gateway.env"
    unit_path = write_to / "systemd" / "system" / "mailcam-gateway.service"
    _write(env_path, setup["env_file"], mode=0o600)
    _write(unit_path, setup["systemd_unit"], mode=0o644)
    typer.echo(f"\nwrote {env_path} (chmod 600: set the broker password in it) and {unit_path}")
    typer.echo("then: sudo systemctl daemon-reload && sudo systemctl enable --now mailcam-gateway")


def _write(path: Path, text: str, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with its final mode: the token is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)  # an existing file keeps its old mode through O_CREAT


def _detail(response) -> str:  # noqa: ANN001
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text
