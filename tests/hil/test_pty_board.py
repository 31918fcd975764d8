"""The virtual board speaks MicroPython's serial protocol well enough for the real mpremote CLI."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from hil_tests.pty_board import PtyBoard
from provisioning.firmware import find_tool

pytestmark = pytest.mark.micropython


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool("mpremote"), "connect", port, *args], capture_output=True, text=True,
                          timeout=60)


def test_mpremote_copies_lists_reads_hashes_and_runs_code_on_the_virtual_board(tmp_path):
    local = tmp_path / "blob.bin"
    local.write_bytes(bytes(range(256)) * 40 + b"\x04\x01\x05A")  # raw REPL control bytes inside the data
    with PtyBoard(tmp_path / "flash") as board:
        copied = mpremote(board.port, "fs", "mkdir", ":data", "+", "fs", "cp", str(local), ":data/blob.bin")
        assert copied.returncode == 0, copied.stderr
        assert (tmp_path / "flash" / "data" / "blob.bin").read_bytes() == local.read_bytes()
        listed = mpremote(board.port, "fs", "ls", ":data")
        assert "blob.bin" in listed.stdout  # (sizes show as 0: the unix port's os.ilistdir gives none)
        summed = mpremote(board.port, "fs", "sha256sum", ":data/blob.bin")
        assert hashlib.sha256(local.read_bytes()).hexdigest() in summed.stdout
        (tmp_path / "flash" / "hello.txt").write_text("hello from the flash\n")
        assert mpremote(board.port, "fs", "cat", ":hello.txt").stdout.endswith("hello from the flash\n")
        ran = mpremote(board.port, "exec", "import sys; x = 6 * 7; print(sys.platform, x)")
        assert ran.stdout.strip() == "linux 42"
        failed = mpremote(board.port, "exec", "print(1 / 0)")
        assert failed.returncode == 1 and "ZeroDivisionError" in failed.stdout + failed.stderr


def test_soft_reset_forgets_the_namespace_and_reset_boots_the_firmware(tmp_path):
    with PtyBoard(tmp_path / "flash") as board:
        (tmp_path / "flash" / "main.py").write_text("open('ran.txt', 'w').write('main ran')\n")
        (tmp_path / "flash" / "boot.py").write_text("print('boot ran')\n")
        kept = mpremote(board.port, "exec", "x = 1", "+", "exec", "print(x)")
        assert kept.stdout.strip().endswith("1")
        forgot = mpremote(board.port, "exec", "x = 1", "+", "soft-reset", "+", "exec", "print(x)")
        assert "NameError" in forgot.stdout + forgot.stderr
        assert not (tmp_path / "flash" / "ran.txt").exists()  # a soft reset into the raw REPL skips main.py
        reset = mpremote(board.port, "reset")
        assert reset.returncode == 0, reset.stderr
        assert board.wait_boots(1, 30)
        assert (tmp_path / "flash" / "ran.txt").read_text() == "main ran"
