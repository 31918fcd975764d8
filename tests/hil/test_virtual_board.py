"""The hardware-in-the-loop checks (hil_tests/) against the virtual board, as part of the main suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.micropython
def test_hil_checks_pass_on_the_virtual_board(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCAM_HIL_")}  # never a real board here
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "hil_tests", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
