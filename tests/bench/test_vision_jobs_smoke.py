"""bench/vision_jobs.py runs (three boxes, two wakes): figures are for people, this checks the bench works
and reports every phase of a vision job and the statements it ran."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_vision_jobs_benchmark_reports_each_phase_and_the_statements_per_job():
    command = [sys.executable, "bench/vision_jobs.py", "--boxes", "3", "--rounds", "2", "--statements"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    header = next(line for line in out.splitlines() if line.startswith("round"))
    assert header.split() == ["round", "total", "claim", "plan", "image", "decide", "finish"]
    warm = next(line for line in out.splitlines() if line.startswith("warm rounds, all jobs"))
    total, claim, plan, image, decide, finish = (float(x) for x in warm.split()[4:])
    assert min(claim, plan, image, finish) >= 0 and decide > 0, warm
    assert total >= claim + plan + image + decide + finish - 0.05, warm  # the phases are parts of the job
    assert "SQL statements per job (warm rounds): SELECT" in out
