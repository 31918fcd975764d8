"""Copying the firmware to a board: one mpremote session (the installer now) against one mpremote
process per file (the former ``flash``), on the virtual board (hil_tests/pty_board.py).

    .venv/bin/python bench/install_session.py --runs 5

The virtual board has no baud rate: the figures are the protocol's overhead (processes, raw-REPL
entries, round trips), which a real board at 115200 baud adds on top of the byte time. The session
figure includes checking every file's SHA-256 on the board; the per-process one checks nothing.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hil_tests.pty_board import PtyBoard  # noqa: E402
from provisioning.board import install_firmware, open_board  # noqa: E402
from provisioning.firmware import find_tool, stage_firmware  # noqa: E402


def one_session(port: str, files: list[tuple[Path, str]]) -> float:
    start = time.perf_counter()
    with open_board(port) as board:
        install_firmware(board, files)
    return time.perf_counter() - start


def process_per_file(port: str, files: list[tuple[Path, str]]) -> float:
    mpremote = find_tool("mpremote")
    start = time.perf_counter()
    for folder in (":lib", ":lib/mcam"):
        subprocess.run([mpremote, "connect", port, "fs", "mkdir", folder], capture_output=True)
    for local, remote in files:
        subprocess.run([mpremote, "connect", port, "fs", "cp", str(local), ":" + remote], capture_output=True,
                       check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = stage_firmware(Path(tmp) / "build", mpy_cross=find_tool("mpy-cross"), include_sim=True)
        size = sum(local.stat().st_size for local, _ in files)
        with PtyBoard(Path(tmp) / "flash") as board:
            session = [one_session(board.port, files) for _ in range(args.runs)]
            per_file = [process_per_file(board.port, files) for _ in range(args.runs)]
    s, p = statistics.median(session), statistics.median(per_file)
    print(f"{len(files)} files, {size / 1024:.0f} KB, {args.runs} runs each (median)")
    print(f"  one session, hashes checked on the board: {s:6.2f} s")
    print(f"  one mpremote process per file, no check:  {p:6.2f} s   ({p / s:.1f}x the session)")


if __name__ == "__main__":
    main()
