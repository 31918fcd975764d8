"""WAL checkpoints in their own thread (`gateway.spool.checkpoint`), on a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from gateway.spool import Spool
from gateway.spool.checkpoint import Checkpointer
from tests.gateway.kit import REPO


def write_rows(store: Spool, count: int, size: int) -> None:
    with store.transaction() as db:
        db.executemany("INSERT INTO kv(key, value) VALUES (?, ?)", [(f"k{n}", "x" * size) for n in range(count)])


def test_the_checkpointer_copies_committed_pages_into_the_database_file_off_the_writers_thread(tmp_path):
    store = Spool(tmp_path / "gateway.db")
    store.set_wal_autocheckpoint(0)  # the writer's connection never checkpoints by itself here
    checkpointer = Checkpointer(store.path, synchronous="FULL", every_bytes=500_000, every_s=3600)
    checkpointer.start()
    try:
        before = os.path.getsize(store.path)
        write_rows(store, 100, 10_000)  # ~1 MB, all of it in the WAL
        assert os.path.getsize(store.path) == before
        checkpointer.committed(400_000)  # not enough yet
        checkpointer.committed(600_000)
        assert checkpointer.done.wait(10), "no checkpoint after 1 MB committed"
        assert checkpointer.checkpoints == 1
        assert os.path.getsize(store.path) >= before + 1_000_000
        assert store.get_kv("k99") == "x" * 10_000
    finally:
        checkpointer.stop()
        store.close()
    assert not checkpointer.is_alive()


def test_writes_nobody_counted_are_checkpointed_every_few_seconds_anyway(tmp_path):
    """The forwarder's and housekeeping's transactions do not tell the checkpointer: a timer covers them."""
    store = Spool(tmp_path / "gateway.db")
    store.set_wal_autocheckpoint(0)
    checkpointer = Checkpointer(store.path, synchronous="FULL", every_bytes=10**12, every_s=0.05)
    try:
        before = os.path.getsize(store.path)
        write_rows(store, 50, 10_000)
        checkpointer.start()
        assert checkpointer.done.wait(10), "no timed checkpoint"
        assert os.path.getsize(store.path) >= before + 500_000
    finally:
        checkpointer.stop()
        store.close()


def test_a_checkpointer_stopped_before_any_work_ends_at_once(tmp_path):
    store = Spool(tmp_path / "gateway.db")
    checkpointer = Checkpointer(store.path, synchronous="FULL", every_s=3600)
    checkpointer.start()
    checkpointer.stop()
    assert not checkpointer.is_alive()
    assert checkpointer.checkpoints == 0
    store.close()


WRITER = r"""
import sys
from pathlib import Path
from gateway.spool import Spool
from gateway.spool.checkpoint import Checkpointer

store = Spool(Path(sys.argv[1]))
store.set_wal_autocheckpoint(4000)
checkpointer = Checkpointer(store.path, synchronous="FULL", every_bytes=100_000)
checkpointer.start()
n = 0
while True:
    n += 1
    with store.transaction() as db:
        db.execute("INSERT INTO kv(key, value) VALUES (?, ?)", (f"k{n}", str(n) * 5000))
    checkpointer.committed(20_000)
    print(n, checkpointer.checkpoints, flush=True)  # "acked": printed only after the commit returned
"""


def test_rows_committed_before_a_sigkill_survive_checkpoints_running_beside_the_writer(tmp_path):
    """Nothing acknowledged is lost when the process dies while the checkpoint thread copies pages."""
    db = tmp_path / "gateway.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    child = subprocess.Popen([sys.executable, str(script), str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    acked, checkpoints = 0, 0
    deadline = time.monotonic() + 60
    try:
        while checkpoints < 5 or acked < 300:  # killed while checkpoints keep running beside the commits
            line = child.stdout.readline()
            assert line, "the writer died"
            acked, checkpoints = map(int, line.split())
            assert time.monotonic() < deadline, f"only {acked} rows and {checkpoints} checkpoints in 60 s"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    store = Spool(db)
    try:
        with store.transaction() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0] for row in conn.execute("SELECT key FROM kv WHERE key LIKE 'k%'")}
        assert {f"k{n}" for n in range(1, acked + 1)} <= stored
    finally:
        store.close()
