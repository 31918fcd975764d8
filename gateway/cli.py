"""`mailcam gateway` (run the service, the default) and `mailcam gateway status`."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

gateway_app = typer.Typer(help="The edge gateway: MQTT → durable outbox → cloud, and the trigger relay.")


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


@gateway_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """Print outbox depth and age, totals, dead letters and the broker state."""
    from gateway.metrics import snapshot
    from gateway.settings import GatewaySettings
    from gateway.store import Store

    settings = GatewaySettings()
    if not settings.db_path.exists():
        typer.echo(f"no gateway store at {settings.db_path}", err=True)
        raise typer.Exit(1)
    store = Store(settings.db_path, synchronous=settings.sqlite_synchronous)
    try:
        s = snapshot(store)
        letters = store.dead_letters(limit=10)
    finally:
        store.close()
    if as_json:
        s["recent_dead_letters"] = [letter.__dict__ for letter in letters]
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    c = s["counters"]
    depth = s["depth"]
    typer.echo(f"broker:          {s['broker']}{'  (INGEST PAUSED: outbox full)' if s['ingest_paused'] else ''}")
    typer.echo(f"cloud:           {s['cloud']}")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(depth.items())) or "empty"
    typer.echo(f"outbox:          {sum(depth.values())} items ({kinds}),"
               f" {s['used_bytes'] / 1e6:.1f} MB, oldest {s['oldest_age_s']:.0f}s")
    typer.echo(f"partial:         {s['partials']} captures being reassembled")
    forwarded = {k.split(':', 1)[1]: v for k, v in c.items() if k.startswith("forwarded:")}
    typer.echo(f"forwarded:       {', '.join(f'{k} {v}' for k, v in sorted(forwarded.items())) or 'nothing yet'}")
    typer.echo(f"retried:         {c.get('retried', 0)}   ingested messages: {c.get('ingested_messages', 0)}"
               f"   dropped telemetry: {c.get('dropped_telemetry', 0)}")
    dead = {k.split(':', 1)[1]: v for k, v in c.items() if k.startswith("dead_lettered:")}
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dead.items())) or "none"
    typer.echo(f"dead letters:    {s['dead_letters']} ({reasons})")
    for letter in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.at))
        typer.echo(f"  {when} {letter.reason:<20} {letter.serial or '-':<16} {letter.key or '-':<24} "
                   f"{letter.size}B {letter.detail or ''}")
