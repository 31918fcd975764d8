"""One serial session with a MicroPython board: the one way the installer and the HIL kit reach it.

mpremote is used as a library (its ``SerialTransport``), so a whole install — folders, every file,
the hash check, the self-test, the reset — is one connection and one raw REPL, not one mpremote
process per file. This module is the adapter around mpremote's transport: if an upgrade changes
it, tests/provisioning/test_board_session.py fails, not somewhere in the installer.

Errors (all ``BoardError``, each with a message an installer can act on)::

    BoardError
     ├── PortNotFound     the serial port does not exist or cannot be opened
     ├── NoAnswer         the port opened, but no MicroPython REPL answered
     ├── BoardCommandError code sent to the board raised (its traceback attached)
     └── HashMismatch     a file on the board differs from the one sent
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

FIRMWARE_PACKAGE = "lib/mcam"
CHUNK = 2048  # bytes per write and per hash step: fewer round trips than mpremote's 256, well within
# what raw-paste flow control hands a 4 KB-stdin ESP32
SELFTEST_MARK = "MCAM_CHECK "


class BoardError(RuntimeError):
    """Something went wrong talking to the board; ``str()`` says what to do about it."""


class PortNotFound(BoardError):
    pass


class NoAnswer(BoardError):
    pass


class BoardCommandError(BoardError):
    pass


class HashMismatch(BoardError):
    def __init__(self, port: str, files: list[str]) -> None:
        self.files = files
        super().__init__(
            f"{len(files)} file(s) on the board at {port} differ from what was sent: {', '.join(files)}. "
            "The copy was damaged (a loose cable, a failing flash chip, or a full filesystem); run the "
            "same command again, and if it repeats erase the board (--micropython FIRMWARE.bin)."
        )


@dataclass
class Board:
    """The board at ``port`` in raw REPL mode; use through ``open_board``."""

    port: str
    transport: SerialTransport

    def exec(self, code: str, timeout: float = 30) -> bytes:
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout)
        except TransportError as exc:
            raise NoAnswer(f"the board at {self.port} stopped answering: {exc}") from exc
        if err:
            raise BoardCommandError(f"the board at {self.port} refused a command: {err.decode(errors='replace')}")
        return out

    def platform(self) -> str:
        """``sys.platform`` on the board: "esp32" for an ESP32-CAM, "linux" for the virtual board."""
        return self.exec("import sys\nprint(sys.platform)").decode().strip()

    def _mkdirs(self, folders: list[str]) -> None:
        code = f"import os\nfor d in {folders!r}:\n try:\n  os.mkdir(d)\n except OSError:\n  pass"
        self.exec(code)

    def clear_package(self) -> None:
        """Remove the firmware package's modules: a stale .py next to a new .mpy (or the other way)
        would shadow it."""
        self.exec(
            f"import os\ntry:\n for f in os.listdir({FIRMWARE_PACKAGE!r}):\n"
            f"  os.remove({FIRMWARE_PACKAGE!r} + '/' + f)\nexcept OSError:\n pass"
        )

    def put_files(self, files: list[tuple[Path, str]], progress: Callable[[str], None] | None = None) -> None:
        """Copy (local file, path on the board) pairs, creating their folders first."""
        folders = sorted(
            {str(p) for _, remote in files for p in PurePosixPath(remote).parents if str(p) != "."}, key=len
        )
        self._mkdirs(folders)
        for local, remote in files:
            try:
                self.transport.fs_writefile(remote, local.read_bytes(), chunk_size=CHUNK)
            except TransportError as exc:
                raise NoAnswer(f"copying {remote} to the board at {self.port} failed: {exc}") from exc
            if progress:
                progress(remote)

    def verify(self, files: list[tuple[Path, str]], progress: Callable[[str], None] | None = None) -> None:
        """Hash every file on the board (SHA-256, computed by the board) against the local copy."""
        bad = []
        for local, remote in files:
            try:
                on_board = self.transport.fs_hashfile(remote, "sha256", chunk_size=CHUNK)
            except (TransportError, OSError):
                on_board = b""  # missing or unreadable: as wrong as a bad byte
            if on_board != hashlib.sha256(local.read_bytes()).digest():
                bad.append(remote)
            if progress:
                progress(remote)
        if bad:
            raise HashMismatch(self.port, bad)

    def selftest(self, checks: tuple[str, ...], config_text: str | None = None, timeout: float = 90) -> dict:
        """Run mcam.selftest on the board; {check: (ok, detail)}."""
        code = (
            "import json\nfrom mcam import board, selftest\n"
            f"print({SELFTEST_MARK!r} + json.dumps(selftest.run(board.hal(), {config_text!r}, {checks!r})))"
        )
        out = self.exec(code, timeout=timeout).decode(errors="replace")
        lines = [ln for ln in out.splitlines() if ln.startswith(SELFTEST_MARK)]
        if not lines:
            raise BoardCommandError(f"the self-test printed no result: {out[-400:]}")
        found = json.loads(lines[-1][len(SELFTEST_MARK) :])
        order = ["config", *checks]  # MicroPython's dicts keep no order
        return {name: (bool(found[name][0]), found[name][1]) for name in sorted(found, key=order.index)}

    def reset(self) -> None:
        """Hard reset (as ``mpremote reset``): the board boots its firmware and runs a wake."""
        try:
            self.transport.exec_raw_no_follow("import time, machine; time.sleep_ms(100); machine.reset()")
        except TransportError as exc:
            raise NoAnswer(f"the board at {self.port} did not take the reset: {exc}") from exc


def install_firmware(
    board: Board, files: list[tuple[Path, str]], progress: Callable[[str], None] | None = None
) -> None:
    """The one staging path, for the installer and the HIL kit: clean the package, copy, verify."""
    board.clear_package()
    board.put_files(files, progress)
    board.verify(files, progress)


def _interrupt(transport: SerialTransport, port: str, timeout: float) -> None:
    """Reset the board through the adapter's RTS line (EN), then Ctrl-C until the REPL prompt: a
    board in deep sleep or busy in main.py answers nothing otherwise. A line without modem
    control (a pseudo-terminal: the virtual board) gets the Ctrl-C only."""
    serial = transport.serial
    serial.timeout = 0.2  # short reads while probing; mpremote itself reads blocking (restored below)
    try:
        serial.dtr = False  # IO0 high: boot the firmware, not the ROM downloader
        serial.rts = True  # EN low
        time.sleep(0.1)
        serial.rts = False
    except OSError:
        pass
    seen = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        serial.write(b"\r\x03")
        seen = (seen + serial.read(max(1, serial.in_waiting)))[-512:]
        if b">>> " in seen or b"raw REPL" in seen:
            serial.timeout = None
            return
    shown = seen[-120:].decode(errors="replace").strip() or "nothing"
    raise NoAnswer(
        f"no MicroPython REPL answered on {port} within {timeout:.0f} s (it sent: {shown!r}). Is this the "
        "board's port, is MicroPython on it (bare board: --micropython FIRMWARE.bin), and is no other "
        "program (a serial monitor, screen, another mpremote) holding the port?"
    )


@contextmanager
def open_board(port: str, *, timeout: float = 10.0) -> Iterator[Board]:
    """Connect, stop whatever the board runs and enter the raw REPL; closed (friendly REPL) on exit."""
    if not Path(port).exists() and not port.startswith(("COM", "rfc2217:", "socket:")):
        raise PortNotFound(
            f"{port} does not exist. Is the board plugged in? Candidates: "
            "ls /dev/ttyUSB* /dev/ttyACM* (Linux), /dev/cu.* (macOS)"
        )
    try:
        transport = SerialTransport(port, baudrate=115200)
    except TransportError as exc:
        raise PortNotFound(
            f"cannot open {port}: {exc} (in use by another program, or no permission: "
            "add yourself to the dialout group)"
        ) from exc
    try:
        _interrupt(transport, port, timeout)
        try:
            transport.enter_raw_repl(soft_reset=False, timeout_overall=timeout)
        except TransportError as exc:
            raise NoAnswer(f"the board at {port} answered but would not enter the raw REPL: {exc}") from exc
        yield Board(port, transport)
        try:
            transport.exit_raw_repl()
        except (TransportError, OSError):
            pass  # a reset board has nothing to exit from
    finally:
        transport.close()
