"""Writing MicroPython itself onto a bare board, with esptool (its CLI, the interface Espressif keeps
stable): detect the chip, erase the flash, write the image, verify it.

Which image: a MicroPython build with the camera driver. The maintained one is
cnadler86/micropython-camera-API (https://github.com/cnadler86/micropython-camera-API/releases):
take the ESP32-CAM (AI-Thinker) firmware image of the newest release (its ``firmware.bin``);
``mcam/hal_esp32.py`` drives its ``camera.Camera`` API. The image goes at 0x1000 on an ESP32 and
an ESP32-S2 (the second-stage bootloader's place), at 0x0 on the S3/C3/C6 families.

The board must be in its ROM bootloader: an ESP32-CAM-MB adapter does that through DTR/RTS (the
default ``--before default-reset``); with a bare FTDI adapter, hold IO0 to GND while pressing reset.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CAMERA_BUILDS = "https://github.com/cnadler86/micropython-camera-API/releases"
OFFSETS = {"ESP32": 0x1000, "ESP32-S2": 0x1000}  # every other family: 0x0


class EspError(RuntimeError):
    """esptool failed; the message says what the installer can do."""


def esptool_args(
    port: str, *command: str, chip: str = "auto", baud: int = 460800, connect_attempts: int = 7
) -> list[str]:
    """The full esptool command line (this Python's esptool) for one command."""
    return [
        sys.executable,
        "-m",
        "esptool",
        "--port",
        port,
        "--chip",
        chip,
        "--baud",
        str(baud),
        "--connect-attempts",
        str(connect_attempts),
        *command,
    ]


def chip_family(esptool_output: str) -> str:
    """'ESP32', 'ESP32-S3', … from esptool's "Chip type: …" (v5) or "Chip is …" (v4) line."""
    found = re.search(r"Chip (?:type:|is)\s+(ESP32(?:-[SCHP]\d+)?)", esptool_output)
    if not found:
        raise EspError(f"esptool did not name the chip:\n{esptool_output[-600:]}")
    return found.group(1)


def flash_offset(family: str) -> int:
    return OFFSETS.get(family, 0x0)


def _explain(port: str, output: str) -> str:
    if "could not open" in output.lower() or "doesn't exist" in output.lower():
        return f"cannot open {port}: wrong port, or in use by another program (a serial monitor, mpremote)"
    if "failed to connect" in output.lower() or "no serial data received" in output.lower():
        return (
            f"no ESP32 bootloader answered on {port}. Put the board in download mode: with an "
            "ESP32-CAM-MB adapter this is automatic (try another USB cable); with a bare USB-serial "
            "adapter, connect IO0 to GND, press reset, run again, then remove the wire"
        )
    return "esptool failed"


def run_esptool(args: list[str], port: str, timeout: float = 600) -> str:
    """Run one esptool command; its output, or EspError with an explanation and esptool's own words."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        errors = [ln.strip() for ln in output.splitlines() if "error" in ln.lower()]
        raise EspError(f"{_explain(port, output)} (esptool: {errors[-1] if errors else output.strip()[-300:]})")
    return output


def write_micropython(
    port: str,
    image: Path,
    *,
    baud: int = 460800,
    connect_attempts: int = 7,
    step: Callable[[str], None] = lambda name: None,
) -> str:
    """Detect, erase, write, verify; returns the chip family. ``step(name)`` is called before each."""
    if not image.is_file():
        raise EspError(f"{image} is not a file (download the ESP32-CAM firmware.bin from {CAMERA_BUILDS})")
    step("detect chip")
    family = chip_family(run_esptool(esptool_args(port, "chip-id", baud=baud, connect_attempts=connect_attempts), port))
    offset = hex(flash_offset(family))
    chip = family.lower().replace("-", "")
    step(f"erase flash ({family})")
    run_esptool(esptool_args(port, "erase-flash", chip=chip, baud=baud), port)
    step(f"write {image.name} at {offset}")
    run_esptool(esptool_args(port, "write-flash", offset, str(image), chip=chip, baud=baud), port)
    step("verify")
    run_esptool(esptool_args(port, "verify-flash", offset, str(image), chip=chip, baud=baud), port)
    return family
