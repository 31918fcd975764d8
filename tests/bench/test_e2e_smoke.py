"""The end-to-end benchmark runs (short mode): figures are for people, this only checks it works."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_e2e_benchmark_quick_mode_runs_and_loses_nothing():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e.py"), "--quick"], capture_output=True,
                            text=True, timeout=300, env={"COLUMNS": "160", "PATH": "/usr/sbin:/usr/bin:/bin"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for figure in ("p50", "p99", "captures/s", "peak RSS", "CPU s", "CPU ms per capture", "gateway", "cloud",
                   "publisher", "notification queued", "pushed to an open SSE client"):
        assert figure in out
    assert "published 8 of 8, in the cloud 8, analysed 8" in out  # 4 devices, 2 wakes each: nothing lost
