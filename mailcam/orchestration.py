"""Helpers for running the parts together on one machine (demo, benchmarks, chaos tests)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def gateway_connected(db_path: Path) -> bool:
    """True once the gateway (in any process) has connected and subscribed to the broker."""
    if not db_path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute("SELECT value FROM kv WHERE key = 'broker'").fetchone()
    except sqlite3.Error:
        return False  # not created yet
    return row is not None and row[0] == "connected"


def wait_gateway_connected(db_path: Path, timeout_s: float = 60.0) -> None:
    """Block until the gateway has its persistent session, so no device message predates it."""
    deadline = time.monotonic() + timeout_s
    while not gateway_connected(db_path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway did not connect to the broker within {timeout_s}s")
        time.sleep(0.05)
