"""The `mailcam` command: one entry point for every part of the system."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

app = typer.Typer(
    help="mailcam: camera mailboxes that tell their owners when mail arrives.\n\n"
    "Start with `mailcam demo` to see the whole system run on this machine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
    )


@app.command()
def cloud(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[bool, typer.Option(help="Run the analysis/notification workers and scheduler here")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the cloud API (and its workers) on embedded defaults or MAILCAM_* settings.

    Settings come from the environment, e.g. MAILCAM_DATABASE_URL=postgresql://… or
    MAILCAM_VISION__PROVIDER=openai. The schema is upgraded on start.
    """
    import uvicorn

    from cloud.app import create_app
    from cloud.settings import Settings

    _logging(verbose)
    settings = Settings(run_workers=workers, run_scheduler=workers)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info" if verbose else "warning")


@app.command()
def migrate() -> None:
    """Upgrade the cloud database to the newest schema (the app also does this on start)."""
    from cloud import migrate as migrations
    from cloud.db import make_engine
    from cloud.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrations.upgrade(make_engine(settings.resolved_database_url))
    typer.echo(f"schema up to date: {settings.resolved_database_url.split('@')[-1]}")


images_app = typer.Typer(help="The cloud's image store (a local folder, or an S3-compatible bucket).",
                         no_args_is_help=True)
app.add_typer(images_app, name="images")


@images_app.command("migrate")
def images_migrate(
    source: Annotated[
        str | None, typer.Option("--from", help="the image folder (default: MAILCAM_IMAGE_DIR or data_dir/images)")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--to", help="s3://bucket/prefix (default: MAILCAM_IMAGES__URL)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uploads at once")] = 8,
) -> None:
    """Copy the image folder into the bucket; run it again to resume (what is there is skipped).

    The endpoint, region and credentials come from MAILCAM_IMAGES__* as for the cloud. Typical move:
    stop the cloud, run this, set MAILCAM_IMAGES__URL, start the cloud, run this once more (it copies
    nothing new), then remove the folder.
    """
    from pathlib import Path

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from cloud.imagestore import copy
    from cloud.imagestore.s3 import S3ImageStore
    from cloud.settings import Settings

    settings = Settings()
    folder = Path(source) if source else settings.resolved_image_dir
    image_settings = settings.images.model_copy(update={"url": target}) if target else settings.images
    if not image_settings.url:
        raise typer.BadParameter("name the bucket: --to s3://bucket/prefix or MAILCAM_IMAGES__URL", param_hint="--to")
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint="--from")
    store = S3ImageStore.from_settings(image_settings, thumbnail_side=settings.thumbnail_side)
    paths = list(copy.originals(folder))
    total_bytes = sum(p.stat().st_size for p in paths)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[files]} images"),
               DownloadColumn(), TimeRemainingColumn())
    done = 0
    with Progress(*columns) as progress:
        task = progress.add_task(f"{folder} → {image_settings.url}", total=total_bytes, files=f"0/{len(paths)}")

        def advance(n: int, nbytes: int) -> None:
            nonlocal done
            done += n
            progress.update(task, advance=nbytes, files=f"{done}/{len(paths)}")

        report = copy.copy_folder(folder, store, workers=workers, progress=advance)
    typer.echo(f"copied {report.copied} images ({report.bytes_copied} bytes), {report.already_there} already there")
    for path in report.damaged:
        typer.echo(f"not copied, its bytes do not match its name (damaged): {path}", err=True)
    if report.damaged:
        raise typer.Exit(1)


@app.command("set-tier")
def set_tier(
    email: Annotated[str, typer.Argument(help="The user's email")],
    tier: Annotated[str, typer.Argument(help="free or premium")],
) -> None:
    """Change a user's subscription tier (support and billing use)."""
    from sqlalchemy import select

    from cloud.clock import SystemClock
    from cloud.db import make_engine, make_session_factory
    from cloud.models import Tier, User
    from cloud.services import accounts
    from cloud.settings import Settings

    try:
        wanted = Tier(tier)
    except ValueError:
        raise typer.BadParameter("tier must be 'free' or 'premium'") from None
    sessions = make_session_factory(make_engine(Settings().resolved_database_url))
    with sessions() as session:
        user = session.scalar(select(User).where(User.email == email.lower()))
        if user is None:
            typer.echo(f"no user {email}", err=True)
            raise typer.Exit(1)
        accounts.set_tier(session, user, wanted, SystemClock().now())
        session.commit()
    typer.echo(f"{email} is now {wanted.value}")


@app.command("set-role")
def set_role(
    email: Annotated[str, typer.Argument(help="The user's email")],
    role: Annotated[str, typer.Argument(help="installer or homeowner")],
) -> None:
    """Make an account an installer (it may register devices) or a plain homeowner again.

    An installer sees the devices they register until a homeowner claims them, then only if the
    owner allows it (read-only). Taking the role away does not touch devices already registered.

        mailcam set-role fitter@example.com installer
    """
    from cloud.db import make_engine, make_session_factory
    from cloud.models import Role
    from cloud.services import accounts
    from cloud.settings import Settings

    try:
        wanted = Role(role)
    except ValueError:
        raise typer.BadParameter("role must be 'installer' or 'homeowner'") from None
    sessions = make_session_factory(make_engine(Settings().resolved_database_url))
    with sessions() as session:
        if not accounts.set_role(session, email, wanted):
            typer.echo(f"no user {email}", err=True)
            raise typer.Exit(1)
        session.commit()
    typer.echo(f"{email} is now {wanted.value}")


from gateway.cli import gateway_app  # noqa: E402

app.add_typer(gateway_app, name="gateway")

from provisioning import gateway_setup  # noqa: E402, F401  (adds `provision gateway`)
from provisioning.cli import provision_app  # noqa: E402

app.add_typer(provision_app, name="provision")

from mailcam.release_cli import release_app  # noqa: E402

app.add_typer(release_app, name="release")


from mailcam.simulate_cli import simulate  # noqa: E402

app.command("simulate")(simulate)


@app.command()
def demo(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=50, help="Simulated mailboxes")] = 3,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between a mailbox's wakes")] = 10.0,
    port: Annotated[int, typer.Option(help="Cloud API/dashboard port (a free one is used if taken)")] = 8000,
    openai: Annotated[bool, typer.Option("--openai", help="Analyse with OpenAI (needs OPENAI_API_KEY)")] = False,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    exit_after_analyses: Annotated[int | None, typer.Option(help="Stop after this many analyses")] = None,
) -> None:
    """Run the whole system here: broker, cloud, gateway and simulated mailboxes, with a live log.

    Starts from a clean ./mailcam-data/demo each time. Open the printed dashboard URL and log in
    with the demo account to watch mail arrive; Ctrl-C stops everything.
    """
    from mailcam.demo import DemoOptions, pick_port, run_demo

    options = DemoOptions(
        devices=devices, interval_s=interval, port=pick_port(port), openai=openai, duration_s=duration,
        exit_after_analyses=exit_after_analyses,
    )
    raise typer.Exit(run_demo(options))

if __name__ == "__main__":
    app()
