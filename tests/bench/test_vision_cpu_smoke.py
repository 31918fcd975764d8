"""bench/vision_cpu.py runs (one box, one repeat): figures are for people, this checks the bench works,
side by side with a git revision (HEAD: the same code, so every photo's outcome must agree)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_vision_cpu_benchmark_measures_both_photo_sets_against_a_revision():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("--against reads the revision with git")
    command = [sys.executable, "bench/vision_cpu.py", "--boxes", "1", "--repeat", "1", "--against", "HEAD"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for figure in ("generated mailboxes", "recorded firmware wakes", "compare", "judge, 2 refs", "phash"):
        assert figure in out
    assert out.count("comparisons or verdicts that differ (any number of compare, the verdict): 0 of") == 2, out
    assert out.count("perceptual hashes that differ: 0 of") == 2, out
