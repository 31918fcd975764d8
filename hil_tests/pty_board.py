"""The virtual board on a serial line: a pseudo-terminal that speaks MicroPython's serial protocol.

A host folder is the board's flash. Behind the pty, the real MicroPython unix port runs
``pty_agent.py`` (one interpreter, one namespace, until a reset) and this module does what a
board's REPL does with the bytes of the line, so the real ``mpremote`` works on it unchanged:

    friendly REPL ──Ctrl-A──► raw REPL ──code, Ctrl-D──► "OK" out \\x04 err \\x04 ">"
         ▲  ◄──Ctrl-B──          │ Ctrl-E "A" Ctrl-A: raw paste ("R\\x01", a 256-byte window,
         │                       │   \\x01 per window consumed, Ctrl-D ends, Ctrl-D acknowledges)
         │                       │ Ctrl-D on an empty line: soft reset (new interpreter, boot.py)
         │                       ▼ machine.reset(): hard reset
     asleep ◄── firmware ends ── boot: boot.py + main.py with the simulated HAL (as
       └──Ctrl-C (the installer's "reset, then interrupt main.py")──► friendly REPL
                                  HILBoard.wake runs it), its output on the line

What it is not: a UART (no baud rate, no DTR/RTS — a reset through the adapter's lines is not
possible, which is why Ctrl-C wakes a sleeping virtual board), and not the ROM bootloader
(esptool finds no chip here). ``corrupt`` names files whose last byte the "flash" flips once
written, to test hash verification.

    python -m hil_tests.pty_board FOLDER     # prints the port; then: mpremote connect PORT fs ls
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import tty
from enum import Enum
from pathlib import Path

AGENT = Path(__file__).with_name("pty_agent.py")
HEAP = "256k"
WINDOW = 256  # raw-paste flow-control window, as on a board with a 256-byte stdin buffer
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_BANNER = b'\r\nMicroPython (mailcam virtual board; unix port)\r\nType "help()" for more information.\r\n>>> '
RESET_EXIT = 99  # pty_agent.py exits with this when the code called machine.reset()


class Mode(Enum):
    FRIENDLY = "friendly"
    RAW = "raw"
    PASTE = "paste"
    RUNNING = "running"  # a code block executes in the agent
    BOOTING = "booting"  # a fresh agent runs boot.py
    FIRMWARE = "firmware"  # after a hard reset: main.py runs
    ASLEEP = "asleep"


def micropython() -> str:
    local = Path(sys.executable).parent / "micropython"
    return str(local) if local.exists() else "micropython"


class PtyBoard:
    """``with PtyBoard(folder) as board: board.port`` — a virtual ESP32-CAM on ``board.port``."""

    def __init__(
        self,
        flash: Path,
        *,
        sim: dict | None = None,
        jpeg: bytes | None = None,
        corrupt: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.flash = Path(flash).resolve()
        self.sim = {"wake": "power_on", **(sim or {})}
        self.jpeg = jpeg
        self.corrupt = set(corrupt)
        self.boots = 0  # hard resets so far (a test can wait for the firmware to have run)
        self.booted = threading.Condition()
        self._mode = Mode.BOOTING
        self._after_boot = Mode.FRIENDLY
        self._code = bytearray()
        self._paste_seen = 0
        self._eots = 0
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> PtyBoard:
        self.flash.mkdir(parents=True, exist_ok=True)
        self._write_hardware()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: a UART passes bytes as they are
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._master, selectors.EVENT_READ, "line")
        self._start_agent(Mode.FRIENDLY)
        self._thread = threading.Thread(target=self._loop, name=f"pty-board-{self.port}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self._kill()
        self._sel.close()
        os.close(self._master)
        os.close(self._slave)

    def _write_hardware(self) -> None:
        """The simulated hardware's settings (hal_sim's sim.json) and what its camera sees."""
        (self.flash / "sim.json").write_text(json.dumps({**self.sim, "quiet": False}))
        if self.jpeg is not None:
            (self.flash / "capture.jpg").write_bytes(self.jpeg)

    def wait_boots(self, n: int, timeout: float) -> bool:
        """Wait until the board was hard-reset ``n`` times and its firmware ran to deep sleep."""
        with self.booted:
            return self.booted.wait_for(lambda: self.boots >= n and self._mode is not Mode.FIRMWARE, timeout)

    # ---------------------------------------------------------------- processes
    def _env(self) -> dict[str, str]:
        return dict(os.environ, MICROPYPATH=str(self.flash / "lib"), MCAM_SIM_DIR=str(self.flash))

    def _spawn(self, args: list[str]) -> None:
        self._proc = subprocess.Popen(
            args,
            cwd=self.flash,
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
        )
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._sel.register(self._proc.stdout, selectors.EVENT_READ, "proc")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._sel.unregister(proc.stdout)
        except (KeyError, ValueError):
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()

    def _start_agent(self, then: Mode) -> None:
        self._kill()
        self._mode, self._after_boot, self._eots = Mode.BOOTING, then, 0
        self._spawn([micropython(), "-X", f"heapsize={HEAP}", str(AGENT)])

    def _boot_firmware(self) -> None:
        """A hard reset: the firmware runs one wake (boot.py, main.py) with its output on the line."""
        self._kill()
        self._write_hardware()
        self._mode = Mode.FIRMWARE
        with self.booted:
            self.boots += 1
        self._spawn(
            [
                micropython(),
                "-X",
                f"heapsize={HEAP}",
                "-c",
                "exec(open('boot.py').read())\nexec(open('main.py').read())",
            ]
        )

    # ---------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                if key.data == "line":
                    try:
                        data = os.read(self._master, 4096)
                    except OSError:
                        continue
                    self._on_bytes(data)
                elif self._proc is not None and key.fileobj is self._proc.stdout:
                    self._on_output()

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
        except OSError as exc:  # nobody reads the line and its buffer is full: bytes are lost, as on a UART
            if exc.errno not in (errno.EAGAIN, errno.EIO):
                raise

    def _send_code(self, code: bytes) -> None:
        self._mode, self._eots = Mode.RUNNING, 0
        try:
            self._proc.stdin.write(b"%d\n" % len(code) + code)
        except (BrokenPipeError, AttributeError):
            self._start_agent(Mode.RAW)

    def _on_output(self) -> None:
        proc = self._proc
        data = proc.stdout.read(65536)
        if data:
            self._relay(data)
            return
        code = proc.wait()  # end of output: the process ended
        self._kill()
        if code == RESET_EXIT:
            self._boot_firmware()
        elif self._mode is Mode.FIRMWARE:
            self._mode = Mode.ASLEEP
            with self.booted:
                self.booted.notify_all()
        else:  # the interpreter died (or was interrupted): the board comes back to its REPL
            self._start_agent(Mode.FRIENDLY if self._mode is Mode.FRIENDLY else Mode.RAW)

    def _relay(self, data: bytes) -> None:
        if self._mode is Mode.FIRMWARE:
            self._write(data.replace(b"\n", b"\r\n"))
            return
        while data:
            cut = data.find(b"\x04")
            if cut < 0:
                self._write(data)  # boot.py's output and the code's output alike
                return
            self._write(data[:cut])
            data = data[cut + 1 :]
            self._eots += 1
            if self._mode is Mode.RUNNING:
                self._write(b"\x04")
            if self._eots == 2:
                self._block_done()

    def _block_done(self) -> None:
        if self._mode is Mode.BOOTING:
            self._mode = self._after_boot
            self._write(RAW_BANNER if self._mode is Mode.RAW else FRIENDLY_BANNER)
        else:
            self._apply_flash_faults()
            self._mode = Mode.RAW
            self._write(b">")
        self._eots = 0

    def _apply_flash_faults(self) -> None:
        for name in list(self.corrupt):
            path = self.flash / name
            if path.exists() and path.stat().st_size:
                data = bytearray(path.read_bytes())
                data[-1] ^= 0xFF
                path.write_bytes(bytes(data))
                self.corrupt.discard(name)

    # ---------------------------------------------------------------- the REPL
    def _on_bytes(self, data: bytes) -> None:
        while data:
            if self._mode is Mode.PASTE:  # the bulk of an install: take it a block at a time
                data = self._on_paste_block(data)
            else:
                self._on_line(data[0])
                data = data[1:]

    def _on_line(self, byte: int) -> None:
        mode = self._mode
        if mode is Mode.ASLEEP:
            if byte == 3:  # reset + Ctrl-C on a real board; here: wake straight into the REPL
                self._start_agent(Mode.FRIENDLY)
        elif mode in (Mode.RUNNING, Mode.FIRMWARE):
            if byte == 3 and self._proc is not None:
                self._proc.send_signal(signal.SIGINT)
        elif mode is Mode.BOOTING:
            if byte == 1:
                self._after_boot = Mode.RAW
            elif byte == 2:
                self._after_boot = Mode.FRIENDLY
        elif mode is Mode.FRIENDLY:
            self._on_friendly(byte)
        elif mode is Mode.RAW:
            self._on_raw(byte)
        else:
            self._on_paste(byte)

    def _on_friendly(self, byte: int) -> None:
        if byte == 1:
            self._mode, self._code = Mode.RAW, bytearray()
            self._write(b"\r\n" + RAW_BANNER)
        elif byte == 3:
            self._write(b"\r\n>>> ")
        elif byte == 4:
            self._write(b"MPY: soft reboot\r\n")
            self._start_agent(Mode.FRIENDLY)

    def _on_raw(self, byte: int) -> None:
        code = self._code
        if code == b"\x05A" and byte == 1:  # Ctrl-E "A" Ctrl-A: raw paste, with flow control
            self._mode, self._code, self._paste_seen = Mode.PASTE, bytearray(), 0
            self._write(b"R\x01" + WINDOW.to_bytes(2, "little"))
        elif byte == 1:
            self._code = bytearray()
            self._write(b"\r\n" + RAW_BANNER)
        elif byte == 2:
            self._mode = Mode.FRIENDLY
            self._write(FRIENDLY_BANNER)
        elif byte == 3:
            self._code = bytearray()
        elif byte == 4:
            self._code = bytearray()
            if not code:  # Ctrl-D on an empty line: soft reset
                self._write(b"OK\r\nMPY: soft reboot\r\n")
                self._start_agent(Mode.RAW)
            else:
                self._write(b"OK")
                self._send_code(bytes(code))
        else:
            code.append(byte)

    def _on_paste_block(self, data: bytes) -> bytes:
        """Take raw-paste bytes up to the ending Ctrl-D; returns what follows it."""
        end = data.find(b"\x04")
        body = data if end < 0 else data[:end]
        self._code += body
        before, self._paste_seen = self._paste_seen, self._paste_seen + len(body)
        self._write(b"\x01" * (self._paste_seen // WINDOW - before // WINDOW))  # a window per WINDOW taken
        if end < 0:
            return b""
        self._write(b"\x04")
        code, self._code = bytes(self._code), bytearray()
        self._send_code(code)
        return data[end + 1 :]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A virtual mailcam board on a pseudo-terminal.")
    parser.add_argument("flash", type=Path, help="the host folder that is the board's flash")
    parser.add_argument("--jpeg", type=Path, help="the photo the virtual camera takes")
    args = parser.parse_args()
    jpeg = args.jpeg.read_bytes() if args.jpeg else None
    with PtyBoard(args.flash, jpeg=jpeg) as board:
        print(board.port, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
