"""The ingest and scaling benchmarks run (short mode): figures are for people, this only checks they work.

scale.py went unnoticed broken for a session (a helper it imports changed signature), so each bench
that is quoted in an issue's note gets a smoke run here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_bench(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={"COLUMNS": "160", "PATH": "/usr/sbin:/usr/bin:/bin", **(env or {})})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    return out


def test_cloud_ingest_benchmark_quick_mode_compares_real_and_bare_ingest():
    out = run_bench("bench/cloud_ingest.py", "--quick")
    for figure in ("real ingest", "bare FastAPI", "ratio real/bare", "ms/capture"):
        assert figure in out
    assert " 0 errors" in out


@pytest.mark.db
def test_scale_benchmark_quick_mode_runs_one_and_two_processes_on_postgres():
    admin = os.environ.get("MAILCAM_TEST_POSTGRES_URL")
    if not admin:
        pytest.skip("the scaling benchmark is a PostgreSQL deployment (MAILCAM_TEST_POSTGRES_URL)")
    out = run_bench("bench/scale.py", "--quick", "--postgres", admin)
    for figure in ("1 process", "2 processes", "bare", "captures/s"):
        assert figure in out


@pytest.mark.parametrize(("mqtt_process", "processes"), [("on", 2), ("off", 1)])
def test_gateway_throughput_benchmark_quick_mode_drains_the_backlog_both_ways(mqtt_process, processes):
    out = run_bench("bench/gateway_throughput.py", "--quick",
                    env={"MAILCAM_GATEWAY_MQTT_PROCESS": mqtt_process})
    assert f"gateway: {processes} processes" in out
    for figure in ("plain subscriber", "gateway durable", "ratio", "gateway peak memory", "broker"):
        assert figure in out
