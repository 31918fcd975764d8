"""bench/phash_agreement.py runs (four boxes): figures are for people, this checks the bench works and
reports both hashes of every photo."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_phash_agreement_bench_compares_both_hashes_on_held_out_photos():
    command = [sys.executable, "bench/phash_agreement.py", "--boxes", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert out.startswith("20 photos of 4 held-out boxes"), out
    assert "consecutive photos: agree on 'unchanged'" in out and " of 16;" in out, out
    assert "contents changed (8 pairs)" in out, out
