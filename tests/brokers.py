"""A real Mosquitto broker per test session, on a free port.

Tests never rely on the machine's broker at 1883: each run starts its own so
that suites (and parallel developers) never see each other's retained
messages or persistent sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mailcam.broker import free_port
from mailcam.broker import wait_for_port as _wait_for_port

__all__ = ["Mosquitto", "free_port", "wait_for_port"]


def wait_for_port(host: str, port: int, deadline_s: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    _wait_for_port(port, deadline_s, host)


@dataclass
class Mosquitto:
    """One mosquitto process; `restart()` keeps its port and persistence file."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra_conf: str = ""
    persistence: bool = True
    process: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "message_size_limit 0",
            f"log_dest file {self.workdir}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user "mosquitto", which cannot write our temp folder:
            # persistence (sessions across a restart) and the log would silently be lost.
            lines.append("user root")
        if "allow_anonymous" not in self.extra_conf and "password_file" not in self.extra_conf:
            lines.append("allow_anonymous true")
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_conf)

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.write_conf()
        self.process = subprocess.Popen(
            [binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"
