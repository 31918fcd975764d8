"""WAL checkpoints in their own thread (`gateway.spool.checkpoint`), on a real SQLite file."""

from __future__ import annotations

import os

from gateway.spool import Spool
from gateway.spool.checkpoint import Checkpointer


def write_rows(store: Spool, count: int, size: int) -> None:
    with store.transaction() as db:
        db.executemany("INSERT INTO kv(key, value) VALUES (?, ?)", [(f"k{n}", "x" * size) for n in range(count)])


def test_the_checkpointer_copies_committed_pages_into_the_database_file_off_the_writers_thread(tmp_path):
    store = Spool(tmp_path / "gateway.db")
    store.set_wal_autocheckpoint(0)  # the writer's connection never checkpoints by itself here
    checkpointer = Checkpointer(store.path, synchronous="FULL", every_bytes=500_000)
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


def test_a_checkpointer_stopped_before_any_work_ends_at_once(tmp_path):
    store = Spool(tmp_path / "gateway.db")
    checkpointer = Checkpointer(store.path, synchronous="FULL")
    checkpointer.start()
    checkpointer.stop()
    assert not checkpointer.is_alive()
    assert checkpointer.checkpoints == 0
    store.close()
