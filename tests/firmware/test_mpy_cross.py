"""Every firmware file compiles with mpy-cross: a gate against CPython-only syntax."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.firmware.conftest import FIRMWARE, tool

SOURCES = sorted(FIRMWARE.rglob("*.py"))


def test_firmware_has_entry_points_and_hals():
    names = {p.name for p in SOURCES}
    assert {"boot.py", "main.py", "protocol.py", "mqtt.py", "cycle.py", "hal_sim.py", "hal_esp32.py"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_compiles_with_mpy_cross(source: Path, tmp_path: Path):
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run([tool("mpy-cross"), "-o", str(out), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
