"""Writing MicroPython with esptool: what can be tested without an ESP32 — chip names and offsets, and
the real esptool's failures on a port with no board and on a line with no ROM bootloader behind it.

Not exercised here (needs a board in download mode): the erase, the write and the verify themselves;
hil_tests/README.md says how an installer runs them on site.
"""

from __future__ import annotations

import pytest

from hil_tests.pty_board import PtyBoard
from provisioning import esp


@pytest.mark.parametrize("output, family, offset", [
    ("Detecting chip type... ESP32\nChip type:          ESP32-D0WD-V3 (revision v3.1)\n", "ESP32", 0x1000),
    ("Chip is ESP32-D0WDQ6 (revision 1)\nFeatures: WiFi, BT", "ESP32", 0x1000),  # esptool v4 words
    ("Chip type:          ESP32-S3 (QFN56) (revision v0.2)\n", "ESP32-S3", 0x0),
    ("Chip is ESP32-S2FNR2 (revision v0.0)", "ESP32-S2", 0x1000),
])
def test_the_chip_family_picks_the_offset_micropython_goes_to(output, family, offset):
    assert esp.chip_family(output) == family
    assert esp.flash_offset(family) == offset


def test_esptool_args_name_the_port_chip_and_command():
    args = esp.esptool_args("/dev/ttyUSB0", "write-flash", "0x1000", "fw.bin", chip="esp32", baud=115200)
    assert args[1:3] == ["-m", "esptool"]
    assert args[3:] == ["--port", "/dev/ttyUSB0", "--chip", "esp32", "--baud", "115200", "--connect-attempts", "7",
                        "write-flash", "0x1000", "fw.bin"]


def test_a_missing_image_is_refused_with_where_to_get_one(tmp_path):
    with pytest.raises(esp.EspError, match="micropython-camera-API"):
        esp.write_micropython("/dev/ttyUSB0", tmp_path / "firmware.bin")


def test_a_port_that_does_not_exist_is_named(tmp_path):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    with pytest.raises(esp.EspError, match="cannot open /dev/ttyNOPE0: wrong port"):
        esp.write_micropython("/dev/ttyNOPE0", image, connect_attempts=1)


def test_a_board_not_in_download_mode_gets_instructions(tmp_path):
    """The virtual board runs MicroPython, not the ROM bootloader: the real esptool finds no chip."""
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    steps: list[str] = []
    with PtyBoard(tmp_path / "flash") as board, pytest.raises(esp.EspError) as failure:
        esp.write_micropython(board.port, image, connect_attempts=1, step=steps.append)
    assert "no ESP32 bootloader answered" in str(failure.value) and "IO0 to GND" in str(failure.value)
    assert steps == ["detect chip"]  # nothing erased
