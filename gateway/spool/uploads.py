"""Uploads: what waits for the cloud (captures, telemetry, trigger delivery reports).

(Not to be confused with the cloud's notification outbox. The SQLite table and the
``outbox_*`` counters and settings keep their old name: renaming them would change the file
format and the operators' settings.)

Autoincrement id, read ``ORDER BY id``, deleted after the cloud's 2xx. A capture row carries no
image: the image stays in the reassembly chunks (written once) until the cloud has it; a capture
replayed from the quarantine carries its image in ``body``.

A row whose device the cloud does not list (yet) is **held**: kept with its bytes, not forwarded.
When a refreshed device list names the device, its rows are released in order; after
``UNKNOWN_DEVICE_HOLD_S`` they move to the quarantine (a replayable `unknown_device` dead letter),
from where a later listing (the claim) still brings them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.spool.base import SpoolBase

CAPTURE = "capture"
TELEMETRY = "telemetry"
DELIVERED = "delivered"
ROW_OVERHEAD = 200  # bytes counted per upload row besides its body


@dataclass(frozen=True)
class Upload:
    id: int
    kind: str
    serial: str
    key: str
    meta: dict[str, Any]
    body: bytes | None
    attempts: int


class Uploads(SpoolBase):
    def _init_uploads(self) -> None:
        # rows enqueued in the current transaction, in order, written with one executemany before COMMIT
        # (or before any statement on the outbox): one statement per batch instead of one per capture,
        # and the ingest thread lets the GIL go once for them, not once each (paho's thread then takes it)
        self._pending_outbox: list[tuple[Any, ...]] = []

    def _undo(self, used_before: int) -> None:
        super()._undo(used_before)
        self._pending_outbox.clear()

    def flush(self) -> None:
        if self._pending_outbox:
            rows, self._pending_outbox = self._pending_outbox, []
            self._db.executemany(
                "INSERT INTO outbox(kind, serial, key, meta, body, bytes, created_at, held) VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
        super().flush()

    def _outbox_current(self) -> None:
        """Inside a transaction, write the buffered rows before a statement reads or changes the outbox."""
        if self._depth:
            self.flush()

    def _enqueue(self, kind: str, serial: str, key: str, meta: dict[str, Any], body: bytes | None,
                 *, held: bool = False) -> None:
        """Queue a row (inside `transaction()`; written by `flush`, in order, before COMMIT)."""
        size = len(body or b"") + ROW_OVERHEAD
        self._pending_outbox.append((kind, serial, key, json.dumps(meta), body, size, self.clock(), int(held)))
        self.used_bytes += size

    def enqueue(self, kind: str, serial: str, key: str, meta: dict[str, Any], body: bytes | None = None,
                *, held: bool = False) -> None:
        with self.transaction():
            self._enqueue(kind, serial, key, meta, body, held=held)

    def pending(self, limit: int) -> list[Upload]:
        """The oldest `limit` rows that may be forwarded (not held), oldest first."""
        with self._lock:
            self._outbox_current()
            rows = self._db.execute(
                "SELECT id, kind, serial, key, meta, body, attempts FROM outbox WHERE held = 0 ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Upload(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def held(self, limit: int = 1000) -> list[Upload]:
        """Rows held for devices the cloud does not list (yet), oldest first."""
        with self._lock:
            self._outbox_current()
            rows = self._db.execute(
                "SELECT id, kind, serial, key, meta, body, attempts FROM outbox WHERE held = 1 ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Upload(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def _remove(self, item: Upload) -> bool:
        self._outbox_current()
        size = self._scalar("SELECT bytes FROM outbox WHERE id = ?", item.id)
        if size is None:
            return False
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item.id,))
        self.used_bytes -= size
        if item.kind == CAPTURE:
            self._drop_chunks(item.serial, item.key)
        return True

    def done(self, item: Upload, counter: str | None = None) -> None:
        """The cloud took it: delete it and a capture's chunks (and count it under `counter`)."""
        with self.transaction():
            if self._remove(item) and counter:
                self.count(counter)

    def failed(self, item_id: int, error: str) -> None:
        with self.transaction() as db:
            self._outbox_current()
            db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error[:300], item_id))
            self.count("retried")

    def quarantine(self, item: Upload, reason: str, detail: str, image: bytes | None = None) -> None:
        """Move an item to the dead letters *with* what is needed to send it again (its image, its body)."""
        with self.transaction():
            if item.kind == CAPTURE and image is None:
                image = item.body if item.body is not None else self.image(item.serial, item.key)
            payload = image if item.kind == CAPTURE else item.body
            size = item.meta.get("size") or len(payload or b"")
            if self._remove(item):
                self.dead_letter(reason, size=size, serial=item.serial, key=item.key, detail=detail,
                                 kind=item.kind, meta=item.meta, payload=payload)

    def reject(self, item: Upload, reason: str, detail: str, image: bytes | None = None) -> None:
        """The cloud refused it for good (its own JSON error code): quarantine it as ``cloud_<reason>``."""
        self.quarantine(item, f"cloud_{reason}", detail, image)

    def hold(self, item: Upload) -> None:
        """Hold a row the cloud said belongs to no device of ours (yet): like an unlisted device's."""
        with self.transaction() as db:
            self._outbox_current()
            db.execute("UPDATE outbox SET held = 1 WHERE id = ?", (item.id,))
            db.execute("UPDATE devices SET listed = 0 WHERE serial = ?", (item.serial,))  # until the cloud lists it

    def release_held(self) -> int:
        """Let rows of devices the cloud now lists be forwarded; returns how many were released.

        Those a late claim finds already quarantined (``unknown_device``, past the hold time, bytes
        kept) go back to the queue too, in the same transaction: the claim is what they waited for.
        """
        with self.transaction() as db:
            self._outbox_current()
            released = db.execute(
                "UPDATE outbox SET held = 0 WHERE held = 1 AND serial IN (SELECT serial FROM devices WHERE listed = 1)"
            ).rowcount
            letters = db.execute(
                "SELECT id, kind, serial, key, meta, payload FROM dead_letters WHERE reason = 'unknown_device' "
                "AND kind IS NOT NULL AND serial IN (SELECT serial FROM devices WHERE listed = 1) ORDER BY id"
            ).fetchall()
            for letter_id, kind, serial, key, meta, payload in letters:
                db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
                self._enqueue(kind, serial, key or "", json.loads(meta) if meta else {}, payload)
            if letters:
                self._dead_bytes = None  # the quarantine's kept bytes: counted again when next needed
            released += len(letters)
            if released:
                self.count("released_held", released)
        return released

    def expire_held(self, hold_s: float) -> int:
        """Quarantine rows held longer than `hold_s` (device never listed) as `unknown_device`, bytes kept."""
        cutoff = self.clock() - hold_s
        with self._lock:
            self._outbox_current()
            rows = self._db.execute(
                "SELECT id, kind, serial, key, meta, body, attempts FROM outbox WHERE held = 1 AND created_at < ? "
                "ORDER BY id", (cutoff,),
            ).fetchall()
        for r in rows:
            item = Upload(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])
            self.quarantine(item, "unknown_device",
                            f"the cloud did not list this serial for {hold_s / 3600:.0f} h; replayable")
        return len(rows)

    def drop_oldest_telemetry(self, target_bytes: int) -> int:
        """Free space by deleting the oldest queued telemetry until `used_bytes <= target_bytes`."""
        dropped = 0
        with self.transaction() as db:
            self._outbox_current()
            while self.used_bytes > target_bytes:
                rows = db.execute(
                    "SELECT id, bytes FROM outbox WHERE kind = ? ORDER BY id LIMIT 100", (TELEMETRY,)
                ).fetchall()
                if not rows:
                    break
                for row_id, size in rows:
                    if self.used_bytes <= target_bytes:
                        break
                    db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                    self.used_bytes -= size
                    dropped += 1
            if dropped:
                self.count("dropped_telemetry", dropped)
        return dropped

    def recount_bytes(self) -> int:
        """Recompute `used_bytes` from the tables (after another process, e.g. a replay, changed them)."""
        with self._lock:
            self._outbox_current()
            self.used_bytes = self._scalar("SELECT COALESCE(SUM(bytes),0) FROM outbox") + self._scalar(
                "SELECT COALESCE(SUM(length(data)),0) FROM chunks"
            )
            return self.used_bytes

    def outbox_stats(self) -> dict[str, Any]:
        with self._lock:
            self._outbox_current()
            depth = dict(self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
            held = self._scalar("SELECT COUNT(*) FROM outbox WHERE held = 1")
            oldest = self._scalar("SELECT MIN(created_at) FROM outbox WHERE held = 0")
            partials = self._scalar("SELECT COUNT(*) FROM partials")
            dead = self._scalar("SELECT COUNT(*) FROM dead_letters")
            kept = self._scalar("SELECT COUNT(*) FROM dead_letters WHERE payload IS NOT NULL OR meta IS NOT NULL")
        return {
            "depth": depth,
            "held": held,
            "oldest_age_s": max(0.0, self.clock() - oldest) if oldest is not None else 0.0,
            "partials": partials,
            "dead_letters": dead,
            "dead_letters_replayable": kept,
            "used_bytes": self.used_bytes,
        }
