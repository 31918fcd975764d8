# The virtual board's interpreter (runs under the MicroPython unix port, cwd = the board's flash).
#
# pty_board.py speaks the serial protocol (raw REPL, raw paste, soft reset) and hands each code
# block here: "<length>\n<code>" on stdin. The block runs in one persistent namespace, as on a
# board; its output goes to stdout, then b"\x04", the traceback if any, b"\x04" — the raw REPL's
# own framing, relayed to the serial line as is.
import os
import sys


class _Machine:
    """``machine`` as the code sent by mpremote sees it (the unix port has no reset)."""

    def reset(self):
        sys.stdout.write("\x04\x04")
        sys.exit(99)  # pty_board.py: exit status 99 = a hard reset, the board boots its firmware

    soft_reset = reset


sys.modules["machine"] = _Machine()
sys.path[:] = ["", ".frozen", "lib"]  # an ESP32's search path, relative to the flash
stdin = sys.stdin.buffer
namespace = {"__name__": "__main__"}


def _run(code):
    try:
        exec(code, namespace)
        sys.stdout.write("\x04")
    except SystemExit as e:
        if e.args and e.args[0] == 99:
            raise
        sys.stdout.write("\x04")
    except BaseException as e:  # noqa: B036 — a board reports every exception, KeyboardInterrupt too
        sys.stdout.write("\x04")
        sys.print_exception(e, sys.stdout)
    sys.stdout.write("\x04")


try:
    os.stat("boot.py")
    _run(open("boot.py").read())  # a soft reset runs boot.py (its output precedes the raw REPL banner)
except OSError:
    sys.stdout.write("\x04\x04")
while True:
    header = stdin.readline()
    if not header:
        break
    n = int(header)
    code = stdin.read(n) if n else b""
    _run(code)
