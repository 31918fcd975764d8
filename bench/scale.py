"""Scaling: captures/s with 1 and 2 cloud processes on PostgreSQL with images in object storage.

    .venv/bin/python bench/scale.py                 # 3 rounds x 5 s per target, 32 clients
    .venv/bin/python bench/scale.py --quick         # a few seconds in all
    MAILCAM_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/scale.py

In one run, on one fresh PostgreSQL database and one bucket:

* ``1 process``: one ``cloud.app`` uvicorn process (workers and scheduler off, as in cloud_ingest.py);
* ``2 processes``: that one and a second, same settings; the clients are split evenly between them
  (what a reverse proxy does);
* ``bare``: the bare FastAPI endpoint of cloud_ingest.py (validate the JSON, decode the base64).

The bucket is moto's standalone server (``moto[server]``), a *stand-in* for a real S3-compatible
service: it keeps objects in its own process's memory, over loopback HTTP, so a PUT costs a
request and moto's CPU, not a real service's replication and disk. The same 32 KB JPEGs with a
unique COM segment per request as cloud_ingest.py. Figures, not pass/fail; on a 2-core machine
the second process competes with the first, the load generator, PostgreSQL and moto for the same
cores, so the scaling factor shows the cost per capture more than what a second host would add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cloud_ingest import RoundResult, Server, make_jpegs, process_cpu_s, register_device, run_round  # noqa: E402


def fresh_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"mailcam_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run_spread(
    servers: list[Server], headers: dict, serial: str, jpegs: list[bytes], *, clients: int, duration: float
) -> RoundResult:
    """``clients`` split evenly over the servers, all at once; one result for the lot."""
    share = [clients // len(servers) + (1 if i < clients % len(servers) else 0) for i in range(len(servers))]
    parts = await asyncio.gather(
        *(
            run_round("real", s.url, headers, serial, jpegs, clients=n, duration=duration)
            for s, n in zip(servers, share, strict=True)
        )
    )
    merged = RoundResult(
        f"{len(servers)}p", sum(p.ok for p in parts), sum(p.errors for p in parts), max(p.seconds for p in parts)
    )
    for p in parts:
        merged.latencies.extend(p.latencies)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MAILCAM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an admin URL: a fresh database is made there and dropped after",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 1.5, 1

    from rich.console import Console
    from rich.table import Table

    from tests.objectstore import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

    console = Console()
    db_url, db_name = fresh_database(args.postgres)
    moto = MotoServer().start()
    bucket = moto.new_bucket()
    os.environ.update(
        {
            "MAILCAM_DATABASE_URL": db_url,
            "MAILCAM_IMAGES__URL": f"s3://{bucket}/images",
            "MAILCAM_IMAGES__ENDPOINT_URL": moto.endpoint_url,
            "MAILCAM_IMAGES__REGION": REGION,
            "MAILCAM_IMAGES__ACCESS_KEY_ID": ACCESS_KEY,
            "MAILCAM_IMAGES__SECRET_ACCESS_KEY": SECRET_KEY,
            "MAILCAM_IMAGES__ADDRESSING_STYLE": "path",
        }
    )
    temp = Path(tempfile.mkdtemp(prefix="mailcam-scale-"))
    opts = {"http": "auto", "loop": "auto"}
    jpegs = make_jpegs(100)
    reals = [Server("real", temp / f"r{i}", opts) for i in range(2)]
    bare = Server("bare", temp / "bare", opts)
    results: dict[str, list[RoundResult]] = {"1 process": [], "2 processes": [], "bare": []}
    cpu: dict[str, list[float]] = {k: [] for k in results}
    try:
        for server in [*reals, bare]:
            server.wait_ready(120)
        serial, token = register_device(reals[0].url, temp / "r0")
        headers = {"Authorization": f"Bearer {token}"}
        console.print(
            f"PostgreSQL {db_name}, bucket s3://{bucket} on moto (stand-in) at {moto.endpoint_url}; "
            f"{args.clients} clients, {args.rounds} x {args.duration:g} s per target"
        )
        for _ in range(args.rounds):
            for label, servers in (("1 process", reals[:1]), ("2 processes", reals), ("bare", [bare])):
                pids = [s.proc.pid for s in servers] + ([moto.process.pid] if label != "bare" else [])
                before = [process_cpu_s(p) or 0.0 for p in pids]
                if label == "bare":
                    result = asyncio.run(
                        run_round(
                            "bare", bare.url, headers, serial, jpegs, clients=args.clients, duration=args.duration
                        )
                    )
                else:
                    result = asyncio.run(
                        run_spread(servers, headers, serial, jpegs, clients=args.clients, duration=args.duration)
                    )
                after = [process_cpu_s(p) or 0.0 for p in pids]
                used = [b - a for a, b in zip(before, after, strict=True)]
                results[label].append(result)
                per = [1000 * u / max(1, result.ok) for u in used]
                cpu[label].append(sum(per[: len(servers)]))
                moto_note = f", moto {per[-1]:.1f} ms/capture" if label != "bare" else ""
                console.print(
                    f"  {label:12} {result.rate:7.1f} captures/s ({result.ok} ok, {result.errors} errors; "
                    f"cloud CPU {sum(per[: len(servers)]):.1f} ms/capture{moto_note})"
                )
    finally:
        for server in [*reals, bare]:
            server.stop()
        moto.stop()
        drop_database(args.postgres, db_name)

    def med(label: str) -> float:
        return statistics.median(r.rate for r in results[label])

    def p50(label: str) -> float:
        lats = [x for r in results[label] for x in r.latencies]
        return 1000 * statistics.median(lats) if lats else 0.0

    table = Table(
        title=f"POST /api/device/capture/ on PostgreSQL + S3 (moto stand-in), {args.clients} clients, "
        f"median of {args.rounds} x {args.duration:g} s"
    )
    for column in ("target", "captures/s", "p50 ms", "cloud CPU ms/capture", "vs bare", "errors"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for label in results:
        table.add_row(
            label,
            f"{med(label):.1f}",
            f"{p50(label):.1f}",
            f"{statistics.median(cpu[label]):.2f}",
            f"{med(label) / med('bare'):.2f}",
            str(sum(r.errors for r in results[label])),
        )
    console.print(table)
    console.print(
        f"scaling factor 2 processes / 1 process: {med('2 processes') / med('1 process'):.2f} "
        f"on {os.cpu_count()} cores (load average now {os.getloadavg()[0]:.1f})"
    )
    if any(r.errors for rs in results.values() for r in rs):
        sys.exit(1)


if __name__ == "__main__":
    main()
