"""`mailcam gateway` (run the service, the default), `… status` and `… dead-letters [replay]`."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings
    from gateway.spool import Spool

gateway_app = typer.Typer(help="The edge gateway: MQTT → durable spool → cloud, and the trigger relay.")
dead_letters_app = typer.Typer(
    help="""What the gateway refused or could not deliver, newest first.

Quarantined letters (KEPT = yes) still hold their bytes and can be sent again once the cause is
fixed (a device claimed, the cloud fixed, a gateway bug fixed):

    mailcam gateway dead-letters                      # list the newest 50
    mailcam gateway dead-letters --reason cloud_invalid_image
    mailcam gateway dead-letters replay 12 13         # send letters 12 and 13 again
    mailcam gateway dead-letters replay --all         # every quarantined letter
    mailcam gateway dead-letters replay --all --reason unknown_device

Retention: MAILCAM_GATEWAY_DEAD_LETTER_RETENTION_S / _MAX_COUNT / _MAX_BYTES (gateway/README.md).""",
)
gateway_app.add_typer(dead_letters_app, name="dead-letters")

STATUS_NOT_RUNNING = 3  # like `systemctl status` for a stopped unit


def _open() -> tuple[GatewaySettings, Spool]:
    from gateway.settings import GatewaySettings
    from gateway.spool import Spool

    settings = GatewaySettings()
    if not settings.db_path.exists():
        typer.echo(f"no gateway store at {settings.db_path}", err=True)
        raise typer.Exit(1)
    return settings, Spool.open(settings)


@gateway_app.callback(invoke_without_command=True)
def gateway_main(ctx: typer.Context) -> None:
    """The edge gateway (runs the service when no subcommand is given)."""
    if ctx.invoked_subcommand is None:
        from gateway.service import run_service

        run_service()


@gateway_app.command("run")
def run() -> None:
    """Run the gateway service (MAILCAM_GATEWAY_* settings; see gateway/README.md)."""
    from gateway.service import run_service

    run_service()


def service_health(recorded: str | None, heartbeat: str | None, now: float) -> dict[str, Any]:
    """Whether the service runs, judged from its own record and the age of the watchdog's heartbeat."""
    beat = json.loads(heartbeat) if heartbeat else None
    age = now - beat["at"] if beat else None
    if recorded == "running" and beat and age <= 3 * beat["every_s"]:
        return {"running": True, "text": f"running (pid {beat['pid']}, heartbeat {age:.0f}s ago)"}
    if recorded and recorded.startswith("failed"):
        text = f"NOT RUNNING: {recorded}"
    elif recorded == "running":
        text = ("NOT RUNNING: no heartbeat for " + (f"{age:.0f}s" if age is not None else "ever")
                + " (killed or hung; systemd restarts it if enabled)")
    else:
        text = f"not running ({recorded or 'never started'})"
    return {"running": False, "text": text, "heartbeat_age_s": age}


@gateway_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """Print whether the service runs, outbox depth and age, totals, dead letters and the broker state.

    Exit status 0 when the service runs (a fresh heartbeat), 3 when it does not.
    """
    from gateway.metrics import snapshot

    _, store = _open()
    try:
        s = snapshot(store)
        letters = store.dead_letters(limit=10)
        health = service_health(store.get_kv("service"), store.get_kv("heartbeat"), time.time())
    finally:
        store.close()
    s["service"] = health
    code = 0 if health["running"] else STATUS_NOT_RUNNING
    if as_json:
        s["recent_dead_letters"] = [letter.__dict__ for letter in letters]
        typer.echo(json.dumps(s, indent=2, default=str))
        raise typer.Exit(code)
    c = s["counters"]
    depth = s["depth"]
    typer.echo(f"service:         {health['text']}")
    broker = s["broker"] if health["running"] else f"unknown (last recorded: {s['broker']})"
    typer.echo(f"broker:          {broker}{'  (INGEST PAUSED: outbox full)' if s['ingest_paused'] else ''}")
    typer.echo(f"cloud:           {s['cloud']}")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(depth.items())) or "empty"
    typer.echo(f"outbox:          {sum(depth.values())} items ({kinds}),"
               f" {s['used_bytes'] / 1e6:.1f} MB, oldest {s['oldest_age_s']:.0f}s")
    if s["held"]:
        typer.echo(f"held:            {s['held']} items of devices the cloud does not list (yet)")
    typer.echo(f"partial:         {s['partials']} captures being reassembled")
    forwarded = {k.split(':', 1)[1]: v for k, v in c.items() if k.startswith("forwarded:")}
    typer.echo(f"forwarded:       {', '.join(f'{k} {v}' for k, v in sorted(forwarded.items())) or 'nothing yet'}")
    typer.echo(f"retried:         {c.get('retried', 0)}   ingested messages: {c.get('ingested_messages', 0)}"
               f"   dropped telemetry: {c.get('dropped_telemetry', 0)}")
    dead = {k.split(':', 1)[1]: v for k, v in c.items() if k.startswith("dead_lettered:")}
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dead.items())) or "none"
    typer.echo(f"dead letters:    {s['dead_letters']} ({reasons}); {s['dead_letters_replayable']} replayable"
               " (mailcam gateway dead-letters --help)")
    for letter in letters:
        typer.echo("  " + _line(letter))
    raise typer.Exit(code)


def _line(letter: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.at))
    kept = f"kept {letter.kept_bytes}B" if letter.replayable else "not kept"
    return (f"#{letter.id:<5} {when} {letter.reason:<20} {letter.serial or '-':<16} {letter.key or '-':<24} "
            f"{letter.size}B {kept:<14} {letter.detail or ''}")


@dead_letters_app.callback(invoke_without_command=True)
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first")] = 50,
    reason: Annotated[str | None, typer.Option("--reason", help="Only this reason, e.g. unknown_device")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List dead letters (newest first); `replay` sends quarantined ones again."""
    if ctx.invoked_subcommand is not None:
        return
    _, store = _open()
    try:
        letters = store.dead_letters(limit=limit, reason=reason)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([{**letter.__dict__, "replayable": letter.replayable} for letter in letters], indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for letter in letters:
        typer.echo(_line(letter))


@dead_letters_app.command("replay")
def replay_dead_letters(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids (the #N of the listing)")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every quarantined (replayable) letter")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="With --all: only this reason")] = None,
) -> None:
    """Send quarantined dead letters again: captures and reports back to the outbox, raw messages
    through ingest. A letter that fails again becomes a new dead letter. Safe while the service runs."""
    from gateway.replay import replay

    if bool(ids) == replay_all:
        typer.echo("give dead letter ids, or --all (see: mailcam gateway dead-letters --help)", err=True)
        raise typer.Exit(2)
    settings, store = _open()
    try:
        chosen = store.replayable_ids(reason) if replay_all else list(ids or [])
        results = replay(store, settings, chosen)
    finally:
        store.close()
    failed = 0
    for result in results:
        typer.echo(f"#{result.letter_id}: {result.outcome}")
        failed += result.outcome == "not_replayable"
    typer.echo(f"replayed {len(results) - failed} of {len(results)}")
    if failed:
        raise typer.Exit(1)
