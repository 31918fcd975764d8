"""provisioning.board — the adapter around mpremote's transport — against the virtual board: if an
mpremote upgrade changes what the installer relies on, these fail first."""

from __future__ import annotations

import pytest

from hil_tests.pty_board import PtyBoard
from provisioning import board as boards

pytestmark = pytest.mark.micropython


def local_files(tmp_path):
    (tmp_path / "src").mkdir()
    a, b = tmp_path / "src" / "a.py", tmp_path / "src" / "b.bin"
    a.write_text("x = 1\n")
    b.write_bytes(bytes(range(256)) * 20)
    return [(a, "a.py"), (b, "lib/deep/b.bin")]


def test_one_session_copies_into_new_folders_and_verifies_by_hash_on_the_board(tmp_path):
    files = local_files(tmp_path)
    with PtyBoard(tmp_path / "flash") as pty, boards.open_board(pty.port) as board:
        assert board.platform() == "linux"  # what makes the installer add the simulator HAL
        board.put_files(files)
        board.verify(files)
        assert board.exec("print(open('a.py').read())") == b"x = 1\n\n"
    assert (tmp_path / "flash" / "lib" / "deep" / "b.bin").read_bytes() == files[1][0].read_bytes()


def test_a_damaged_or_missing_file_is_named_by_the_hash_check(tmp_path):
    files = local_files(tmp_path)
    with PtyBoard(tmp_path / "flash", corrupt={"lib/deep/b.bin"}) as pty, boards.open_board(pty.port) as board:
        board.put_files(files)
        (tmp_path / "flash" / "a.py").unlink()
        with pytest.raises(boards.HashMismatch) as failure:
            board.verify(files)
    assert failure.value.files == ["a.py", "lib/deep/b.bin"]
    assert "run the same command again" in str(failure.value)


def test_code_that_raises_on_the_board_is_reported_with_its_traceback(tmp_path):
    with PtyBoard(tmp_path / "flash") as pty, boards.open_board(pty.port) as board:
        with pytest.raises(boards.BoardCommandError, match="ZeroDivisionError"):
            board.exec("1 / 0")
        assert board.exec("print(6 * 7)") == b"42\n"  # the session goes on
