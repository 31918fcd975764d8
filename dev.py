#!/usr/bin/env python3
"""Bootstrap and run mailcam on a fresh machine with only Python 3.11+.

    python3 dev.py demo      # the whole system on this machine (broker, cloud, gateway, mailboxes)
    python3 dev.py test      # the whole test suite, 3 workers (any pytest arguments may follow)
    python3 dev.py run ARGS  # any `mailcam` command inside the project's virtualenv

It creates ./.venv, installs the project with its test extras when
pyproject.toml changed, and (as root, for the tests) installs the system
packages the tests use: Mosquitto, Chromium and Node.js.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".mailcam-installed"
# Debian package -> the program the tests use (dashboard wording tests run under Node).
SYSTEM_PACKAGES = {"mosquitto": "/usr/sbin/mosquitto", "chromium": "/usr/bin/chromium", "nodejs": "/usr/bin/node"}


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit("mailcam needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        say(f"creating virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    say("installing mailcam and its dependencies (first run takes a few minutes)")
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def ensure_system_packages(names: list[str]) -> None:
    programs = {name: Path(SYSTEM_PACKAGES[name]) for name in names}
    missing = [name for name, program in programs.items() if not (shutil.which(program.name) or program.exists())]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say(f"not installed: {', '.join(missing)} (tests that need them will be skipped)")
        return
    say(f"installing system packages: {', '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def parallel(pytest_args: list[str]) -> list[str]:
    """Spread the tests over worker processes (pytest-xdist) unless the caller chose otherwise.

    Most tests wait on brokers, subprocesses and the browser rather than compute, so a few more
    workers than cores pays; `MAILCAM_TEST_WORKERS=0` (or `-n 0`) runs them in this process.
    """
    if any(arg.startswith(("-n", "--numprocesses", "--dist")) for arg in pytest_args):
        return []
    return ["-n", os.environ.get("MAILCAM_TEST_WORKERS", "3")]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_venv()
    os.chdir(ROOT)
    if command == "test":
        ensure_system_packages(list(SYSTEM_PACKAGES))
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *parallel(rest), *rest])
    if command == "demo":
        return subprocess.call([str(BIN / "mailcam"), "demo", *rest])
    if command == "run":
        return subprocess.call([str(BIN / "mailcam"), *rest])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
