"""The gateway-request benchmarks run (short mode): figures are for people, this only checks they work."""

import pytest

from tests.bench.test_ingest_benches_smoke import run_bench

pytestmark = pytest.mark.slow


def test_gateway_work_bench_times_both_routes_in_process():
    out = run_bench("bench/gateway_work.py", "--rounds", "1", "--calls", "5", "--devices", "2")
    assert "CPU ms per call, median of 1 x 5: capture" in out and "telemetry" in out


def test_gateway_requests_bench_splits_a_real_servers_cpu_into_loop_and_threads():
    out = run_bench("bench/gateway_requests.py", "--quick", "--devices", "2")
    assert "server CPU ms per wake (capture+telemetry)" in out
    assert "event loop" in out and "worker threads" in out
