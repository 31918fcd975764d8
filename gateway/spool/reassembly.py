"""Reassembly: captures arrive as chunks and become one outbox row when complete.

Tables: ``partials`` (one row per capture being reassembled, its first chunk's header fields),
``chunks`` (keyed (serial, cid, i); a repeated chunk is recognised and ignored) and ``completed``
(capture ids already assembled, so a late repeat does not start a new partial). A complete capture
keeps its chunks (the image is written once) until the cloud has it. When every chunk of a capture
arrived in the transaction that completes it (the usual case while a backlog drains), its image is
stored as ONE row (``i`` = 0, the whole image) instead of one per chunk: one table and one index
insert instead of n, and about a fifth fewer WAL bytes (a 4 KB row wastes a quarter of its 16 KiB
page; a 32 KB row fills its overflow pages). Readers are agnostic: the image is its rows' data in
``i`` order either way, and the bytes counted are the same.

Within a transaction the chunk rows, the ``partials`` rows of captures begun in it and the
``completed`` rows of captures assembled in it are buffered and written with one ``executemany``
each just before COMMIT (or before anything reads those tables): a capture whose chunks all arrive
in one transaction (the usual case when a backlog drains) never writes or deletes its ``partials``
row, and costs the ingest thread one lookup statement (is it partial, or completed already?) and
no other statement of its own (its outbox row is buffered too, `gateway.spool.uploads`).

Repeats are recognised from an in-memory index of each partial capture's stored chunk indexes
(loaded from the table on first use, so it survives restarts; dropped on any rollback; the
``INSERT OR IGNORE`` row count is checked against it).

Budgets, so that one broken or hostile device cannot hurt the others:
- a chunk that would take a capture past its declared size is refused at once (``size_mismatch``),
  not after n chunks of up to ``size`` bytes each have been stored;
- each device may hold at most ``partial_quota_bytes`` in partial captures (chunk bytes + 200 per
  capture): beyond it, that device's oldest partial captures are given up (``incomplete_capture``,
  "evicted"), never another device's, and the global outbox limit is not reached by partials alone.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from gateway.spool.base import SpoolBase
from gateway.spool.uploads import CAPTURE, DELIVERED

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"

PARTIALS_CACHED = 10_000  # partial captures kept in memory between transactions at most
PARTIAL_OVERHEAD = 200  # bytes counted against a device's quota per partial capture


class _Completed:
    """What `Reassembly._load_partial` returns for a capture assembled already."""


COMPLETED = _Completed()


class _Partial:
    """A capture being reassembled: its first chunk's header fields and the chunk indexes stored."""

    __slots__ = ("wanted", "ts", "tu", "bat", "received", "stored", "bodies", "wake")

    def __init__(self, wanted: tuple[Any, ...], ts: int, tu: bool, bat: int, received: set[int], stored: int,
                 wake: str | None) -> None:
        self.wanted = wanted  # (n, size, sha, trig, tid)
        self.wake = wake  # what woke the device for this photo (door, timer, ...), None from older firmware
        self.ts = ts
        self.tu = tu  # ts is an estimate (the device's clock was unset)
        self.bat = bat
        self.received = received
        self.stored = stored  # chunk bytes stored (or buffered) so far
        self.bodies: dict[int, bytes | memoryview] | None = None  # chunks added in the current transaction


class _Image:
    """A reassembled image's row data as its chunks' bodies, joined only when the row is written
    (`Reassembly.flush`, one image at a time).

    Memory: joined when it completed, each image of a batch lived next to the chunk payloads it came
    from until the COMMIT (a megabyte for a batch of 256 4 KB chunks, at the gateway's peak).
    """

    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes | memoryview]) -> None:
        self.parts = parts

    def join(self) -> bytes:
        return b"".join(self.parts)


class Reassembly(SpoolBase):
    partial_quota_bytes: int = 16 * 1024 * 1024

    def _init_reassembly(self) -> None:
        # (serial, cid) -> _Partial: the partial captures touched lately. Exact while cached: a repeat
        # is recognised without a statement. Cleared on any rollback, trimmed between transactions only.
        self._partials: dict[tuple[str, str], _Partial] = {}
        # chunk rows added in the current transaction, per capture, written with one executemany before
        # COMMIT; a capture completed with all its rows still here gets one row instead (`_assemble`)
        self._pending_chunks: dict[tuple[str, str], list[tuple[str, str, int, bytes, float]]] = {}
        # partials rows of captures begun in the current transaction, not written yet (same rule)
        self._pending_partials: dict[tuple[str, str], tuple[Any, ...]] = {}
        # completed rows of captures assembled in the current transaction (same rule) -> at
        self._pending_completed: dict[tuple[str, str], float] = {}
        self._touched: list[_Partial] = []
        # serial -> bytes in its partial captures; None: load from the tables on next use (only ever
        # set to None when no chunk rows are buffered, so the tables are then the whole truth)
        self._device_bytes: dict[str, int] | None = None

    # -- transaction hooks ------------------------------------------------------------------------
    def _before_transaction(self) -> None:
        super()._before_transaction()
        if len(self._partials) > PARTIALS_CACHED:
            self._partials.clear()

    def _after_transaction(self) -> None:
        super()._after_transaction()
        for state in self._touched:
            state.bodies = None
        self._touched.clear()

    def _undo(self, used_before: int) -> None:
        super()._undo(used_before)
        self._partials.clear()
        self._pending_chunks.clear()
        self._pending_partials.clear()
        self._pending_completed.clear()
        self._device_bytes = None

    def flush(self) -> None:
        if self._pending_partials:
            partials, self._pending_partials = list(self._pending_partials.values()), {}
            self._db.executemany(
                "INSERT INTO partials(serial, cid, n, size, sha, trig, tid, ts, bat, first_at, tu, wake) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                partials,
            )
        if self._pending_chunks:
            pending, self._pending_chunks = self._pending_chunks, {}
            count = sum(map(len, pending.values()))
            # a generator: a whole image's row is joined as it is written, one image at a time
            rows = (row if type(row[3]) is not _Image else (*row[:3], row[3].join(), row[4])
                    for capture in pending.values() for row in capture)
            inserted = self._db.executemany(
                "INSERT OR IGNORE INTO chunks(serial, cid, i, data, at) VALUES (?,?,?,?,?)", rows
            ).rowcount
            if inserted != count:  # the cache said new, the table disagrees: never ack on that
                raise sqlite3.IntegrityError(f"{count - inserted} of {count} chunk rows already stored")
        if self._pending_completed:
            completed, self._pending_completed = self._pending_completed, {}
            self._db.executemany("INSERT OR REPLACE INTO completed(serial, cid, at) VALUES (?,?,?)",
                                 [(serial, cid, at) for (serial, cid), at in completed.items()])
        super().flush()

    # -- chunks -------------------------------------------------------------------------------------
    def add_chunk(self, serial: str, header: dict[str, Any], body: bytes | memoryview, topic: str, *,
                  held: bool = False) -> str:
        """Store one chunk; returns what happened: duplicate | stored | completed | dead | conflict.

        Must run inside `transaction()`. Completing a capture checks it and turns its partial into an
        outbox row (``held`` if its device is not listed yet) in the same transaction.
        """
        cid = header["cid"]
        key = (serial, cid)
        wanted = (header["n"], header["size"], header["sha"], header["trig"], header["tid"])
        device_bytes = self._device_bytes if self._device_bytes is not None else self._load_device_bytes()
        state = self._partials.get(key)
        if state is None:
            state = COMPLETED if key in self._pending_completed else self._load_partial(key)
            if state is COMPLETED:
                self.count("duplicate_chunks")
                return "duplicate"
            if state is None:
                self._pending_partials[key] = (serial, cid, *wanted, header["ts"], header["bat"], self.clock(),
                                               int(bool(header.get("tu"))), header.get("wake"))
                if header["tid"]:
                    self._enqueue(DELIVERED, serial, header["tid"], {"trigger_id": header["tid"]}, None, held=held)
                state = _Partial(wanted, header["ts"], bool(header.get("tu")), header["bat"], set(), 0,
                                 header.get("wake"))
                device_bytes[serial] = device_bytes.get(serial, 0) + PARTIAL_OVERHEAD
            self._partials[key] = state
        if state.wanted != wanted:
            self.dead_letter(
                "inconsistent_chunk", size=len(body), topic=topic, serial=serial, key=cid,
                detail=f"chunk {header['i']} header differs from the capture's first chunk",
            )
            return "conflict"
        i = header["i"]
        if i in state.received:
            self.count("duplicate_chunks")
            return "duplicate"
        size = len(body)
        if state.stored + size > wanted[1]:
            self._give_up(serial, cid, "size_mismatch", topic=topic,
                          detail=f"chunks add up to more than the declared {wanted[1]} bytes")
            return "dead"
        if device_bytes.get(serial, 0) + size > self.partial_quota_bytes:
            if not self._make_room(serial, cid, size):
                self._give_up(serial, cid, "over_quota", topic=topic,
                              detail=f"device holds {self.partial_quota_bytes} bytes of partial captures already")
                return "dead"
            device_bytes = self._device_bytes if self._device_bytes is not None else self._load_device_bytes()
        pending = self._pending_chunks.get(key)
        if pending is None:
            pending = self._pending_chunks[key] = []
        pending.append((serial, cid, i, body, self.clock()))
        state.received.add(i)
        state.stored += size
        if state.bodies is None:
            state.bodies = {}
            self._touched.append(state)
        state.bodies[i] = body
        self.used_bytes += size
        device_bytes[serial] = device_bytes.get(serial, 0) + size
        if len(state.received) < wanted[0]:
            return "stored"
        return self._assemble(serial, cid, topic, state, held)

    def _load_partial(self, key: tuple[str, str]) -> _Partial | _Completed | None:
        """The stored partial capture, COMPLETED if it was assembled already, None if it is new.

        One statement for both questions (a new capture is the common case): each statement lets the
        GIL go, and paho's thread, busy reading the backlog, then makes the ingest thread wait for it.
        """
        row = self._db.execute(
            "SELECT n, size, sha, trig, tid, ts, bat, tu, wake FROM partials WHERE serial = ?1 AND cid = ?2 "
            "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM completed "
            "WHERE serial = ?1 AND cid = ?2",
            key,
        ).fetchone()
        if row is None:
            return None
        if row[0] is None:
            return COMPLETED
        sizes = dict(self._db.execute("SELECT i, length(data) FROM chunks WHERE serial = ? AND cid = ?", key))
        return _Partial(tuple(row[:5]), row[5], bool(row[7]), row[6], set(sizes), sum(sizes.values()), row[8])

    def _load_device_bytes(self) -> dict[str, int]:
        totals = {serial: count * PARTIAL_OVERHEAD
                  for serial, count in self._db.execute("SELECT serial, COUNT(*) FROM partials GROUP BY serial")}
        for serial, stored in self._db.execute(
            "SELECT c.serial, SUM(length(c.data)) FROM partials p "
            "JOIN chunks c ON c.serial = p.serial AND c.cid = p.cid GROUP BY c.serial"
        ):
            totals[serial] += stored
        self._device_bytes = totals
        return totals

    def _make_room(self, serial: str, keep_cid: str, need: int) -> bool:
        """Give up the device's oldest other partial captures until `need` more bytes fit its quota."""
        quota = self.partial_quota_bytes
        self.flush()  # the query below reads partials
        while self._bytes_of(serial) + need > quota:
            oldest = self._db.execute(
                "SELECT cid FROM partials WHERE serial = ? AND cid != ? ORDER BY first_at, cid LIMIT 16",
                (serial, keep_cid),
            ).fetchall()
            if not oldest:
                return False
            for (cid,) in oldest:
                self._give_up(serial, cid, "incomplete_capture",
                              detail=f"evicted: the device went over its partial-capture quota of {quota} bytes")
                if self._bytes_of(serial) + need <= quota:
                    return True
        return True

    def _bytes_of(self, serial: str) -> int:
        device_bytes = self._device_bytes if self._device_bytes is not None else self._load_device_bytes()
        return device_bytes.get(serial, 0)

    def _give_up(self, serial: str, cid: str, reason: str, *, detail: str, topic: str | None = None) -> None:
        """Drop a partial capture and its chunks, and record why (inside `transaction()`)."""
        self._drop_partial(serial, cid)
        size = self._drop_chunks(serial, cid)  # flushes first: the tables hold every chunk of it
        if self._device_bytes is not None:
            self._device_bytes[serial] = self._device_bytes.get(serial, 0) - size - PARTIAL_OVERHEAD
        self.dead_letter(reason, size=size, topic=topic, serial=serial, key=cid, detail=detail)

    def _drop_chunks(self, serial: str, cid: str) -> int:
        self.flush()
        freed = self._scalar("SELECT COALESCE(SUM(length(data)),0) FROM chunks WHERE serial = ? AND cid = ?",
                             serial, cid)
        self._db.execute("DELETE FROM chunks WHERE serial = ? AND cid = ?", (serial, cid))
        self.used_bytes -= freed
        return freed

    def _drop_partial(self, serial: str, cid: str) -> None:
        if self._pending_partials.pop((serial, cid), None) is None:  # else it was never written
            self._db.execute("DELETE FROM partials WHERE serial = ? AND cid = ?", (serial, cid))
        self._partials.pop((serial, cid), None)

    def image(self, serial: str, cid: str) -> bytes:
        """The reassembled image of a capture (its chunks in order)."""
        with self._lock:
            if self._depth:
                self.flush()
            rows = self._db.execute("SELECT data FROM chunks WHERE serial = ? AND cid = ? ORDER BY i", (serial, cid))
            return b"".join(row[0] for row in rows)

    def _assemble(self, serial: str, cid: str, topic: str, state: _Partial, held: bool) -> str:
        db = self._db
        n, size, sha, trig, tid = state.wanted
        bodies = state.bodies or {}
        if len(bodies) < n:  # some chunks came in earlier transactions: read those back
            bodies = dict(bodies)
            for i, data in db.execute("SELECT i, data FROM chunks WHERE serial = ? AND cid = ?", (serial, cid)):
                bodies.setdefault(i, data)
        parts = [bodies[i] for i in range(n)]
        # joined here for the checks only (one hash call: sha256 lets the GIL go once per call), and
        # again when its row is written: not kept until then (`_Image`)
        image = b"".join(parts)
        pending = self._pending_chunks.get((serial, cid))
        if pending is not None and len(pending) == n:  # none of its rows written yet: one row for the image
            self._pending_chunks[(serial, cid)] = [(serial, cid, 0, _Image(parts), pending[-1][4])]
        self._drop_partial(serial, cid)
        if self._device_bytes is not None:
            self._device_bytes[serial] -= state.stored + PARTIAL_OVERHEAD
        reason = None
        if len(image) != size:
            reason, detail = "size_mismatch", f"chunks hold {len(image)} bytes, header says {size}"
        elif hashlib.sha256(image).hexdigest() != sha:
            reason, detail = "sha256_mismatch", "reassembled image does not match the header's sha"
        elif not (image.startswith(SOI) and image.rstrip(b"\x00").endswith(EOI)):
            reason, detail = "not_jpeg", "no JPEG SOI/EOI markers"
        if reason:
            self._drop_chunks(serial, cid)
            self.dead_letter(reason, size=len(image), topic=topic, serial=serial, key=cid, detail=detail)
            return "dead"
        meta = {"capture_id": cid, "trigger_type": trig, "trigger_id": tid, "ts": state.ts, "bat_mv": state.bat,
                "time_uncertain": state.tu, "wake": state.wake,
                "size": size}
        self._enqueue(CAPTURE, serial, cid, meta, None, held=held)  # the image stays in `chunks` until forwarded
        self._pending_completed[(serial, cid)] = self.clock()
        self.count("captures_assembled")
        return "completed"

    def expire_partials(self, timeout_s: float) -> int:
        """Dead-letter captures whose chunks stopped arriving more than `timeout_s` ago."""
        cutoff = self.clock() - timeout_s
        with self.transaction() as db:
            self.flush()
            stale = db.execute(
                "SELECT p.serial, p.cid, p.n, COUNT(c.i) FROM partials p "
                "LEFT JOIN chunks c ON c.serial = p.serial AND c.cid = p.cid "
                "GROUP BY p.serial, p.cid HAVING COALESCE(MAX(c.at), p.first_at) < ?",
                (cutoff,),
            ).fetchall()
            for serial, cid, n, received in stale:
                self._give_up(serial, cid, "incomplete_capture",
                              detail=f"{received} of {n} chunks, none for {timeout_s:.0f}s")
        return len(stale)

    def prune_completed(self, retention_s: float) -> None:
        cutoff = self.clock() - retention_s
        with self.transaction() as db:
            self.flush()
            db.execute("DELETE FROM completed WHERE at < ?", (cutoff,))
            db.execute("DELETE FROM done_triggers WHERE at < ?", (cutoff,))
