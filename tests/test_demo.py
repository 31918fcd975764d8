"""`mailcam demo` — the README's main command — runs the whole system and stops cleanly."""

import subprocess
import sys

import pytest

from tests.brokers import free_port

pytestmark = pytest.mark.slow


def test_demo_shows_mail_arriving_and_stops_cleanly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mailcam.cli", "demo", "--devices", "2", "--interval", "2",
         "--exit-after-analyses", "6", "--duration", "150", "--port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Login:" in out and "demo@mailcam.example" in out
    assert out.count("☁  cloud") >= 4, "captures reached the cloud through broker and gateway"
    assert out.count("🔎 vision") >= 4, "captures were analysed"
    assert "the box is calibrated, mail alerts are on" in out, "the demo's installer calibrated the boxes"
    assert "stopped cleanly" in out
    assert "Traceback" not in out
    assert (tmp_path / "mailcam-data" / "demo" / "cloud" / "mailcam.db").exists()
