"""Dead letters: what was refused, with the reason and the size, and the quarantine.

Two sorts, by what a replay could achieve:

- **Refused input** (a malformed chunk, a bad topic, a sha mismatch...): the device sent something
  that can never become a capture; the record keeps reason, topic and size, not the bytes.
- **Quarantined** (``kind`` set): something that *could* succeed later, so its bytes are kept and
  `mailcam gateway dead-letters replay` sends it on again: a capture or report the cloud refused
  with its own error code (``cloud_<code>``, ``kind`` = the outbox kind, ``payload`` = the image),
  a device the cloud never listed (``unknown_device``), a message that hit a bug in the gateway
  (``internal_error``, ``kind = "mqtt"``: the raw topic and payload, replayed through ingest).

Retention: records older than ``DEAD_LETTER_RETENTION_S`` or beyond ``DEAD_LETTER_MAX_COUNT`` are
deleted, oldest first; when the kept bytes exceed ``DEAD_LETTER_MAX_BYTES`` the oldest payloads are
dropped (the record stays, marked ``bytes dropped``). Bytes are never logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gateway.spool.base import SpoolBase

log = logging.getLogger("mailcam.gateway.spool")

MQTT = "mqtt"  # kind of a quarantined raw MQTT message (replayed through ingest)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    at: float
    reason: str
    detail: str | None
    topic: str | None
    serial: str | None
    key: str | None
    size: int
    kind: str | None = None  # set when the letter can be replayed
    kept_bytes: int = 0  # bytes kept in the quarantine

    @property
    def replayable(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class Quarantined:
    """A replayable dead letter with its content."""

    letter: DeadLetter
    meta: dict[str, Any] | None
    payload: bytes | None


_COLUMNS = "id, at, reason, detail, topic, serial, key, size, kind, COALESCE(length(payload), 0)"


class DeadLetters(SpoolBase):
    dead_letter_max_bytes: int = 128 * 1024 * 1024
    _dead_bytes: int | None = None  # payload bytes kept (None: count again)

    def dead_letter(
        self, reason: str, *, size: int, detail: str | None = None, topic: str | None = None,
        serial: str | None = None, key: str | None = None, kind: str | None = None,
        meta: dict[str, Any] | None = None, payload: bytes | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dead_letters(at, reason, detail, topic, serial, key, size, kind, meta, payload) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (self.clock(), reason, (detail or "")[:500] or None, topic, serial, key, size, kind,
                 json.dumps(meta) if meta is not None else None, payload),
            )
            self.count(f"dead_lettered:{reason}")
            if payload:
                self._dead_bytes = self._kept_bytes() + len(payload)
                if self._dead_bytes > self.dead_letter_max_bytes:
                    self._shed_payloads(self.dead_letter_max_bytes)
        log.warning(
            "dead letter: reason=%s serial=%s key=%s topic=%s size=%d kept=%s detail=%s",
            reason, serial, key, topic, size, "yes" if kind else "no", (detail or "")[:200],
        )

    def _kept_bytes(self) -> int:
        if self._dead_bytes is None:
            self._dead_bytes = self._scalar("SELECT COALESCE(SUM(length(payload)),0) FROM dead_letters")
        return self._dead_bytes

    def _undo(self, used_before: int) -> None:
        super()._undo(used_before)
        self._dead_bytes = None

    def _shed_payloads(self, max_bytes: int) -> int:
        """Drop the oldest kept payloads until at most `max_bytes` remain (inside `transaction()`)."""
        excess = self._kept_bytes() - max_bytes
        shed = 0
        rows = self._db.execute(
            "SELECT id, length(payload) FROM dead_letters WHERE payload IS NOT NULL ORDER BY id"
        ).fetchall()
        for letter_id, length in rows:
            if excess <= 0:
                break
            self._db.execute(
                "UPDATE dead_letters SET payload = NULL, kind = NULL, "
                "detail = substr(COALESCE(detail, '') || ' [bytes dropped: quarantine full]', 1, 560) WHERE id = ?",
                (letter_id,),
            )
            excess -= length
            self._dead_bytes = (self._dead_bytes or 0) - length
            shed += 1
        if shed:
            self.count("dead_letter_payloads_dropped", shed)
            log.warning("dead-letter quarantine over %d bytes: dropped the %d oldest payloads", max_bytes, shed)
        return shed

    def dead_letters(self, limit: int = 100, *, reason: str | None = None) -> list[DeadLetter]:
        """The newest `limit` dead letters, newest first."""
        where, args = ("WHERE reason = ?", (reason,)) if reason else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def quarantined(self, letter_id: int) -> Quarantined | None:
        """A replayable dead letter with its meta and bytes (None if absent or not replayable)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS}, meta, payload FROM dead_letters WHERE id = ? AND kind IS NOT NULL", (letter_id,)
            ).fetchone()
        if row is None:
            return None
        meta = json.loads(row[10]) if row[10] is not None else None
        return Quarantined(DeadLetter(*row[:10]), meta, row[11])

    def replayable_ids(self, reason: str | None = None) -> list[int]:
        where, args = (" AND reason = ?", (reason,)) if reason else ("", ())
        with self._lock:
            return [r[0] for r in self._db.execute(
                f"SELECT id FROM dead_letters WHERE kind IS NOT NULL{where} ORDER BY id", args)]

    def forget_dead_letter(self, letter_id: int) -> None:
        """Remove a dead letter (inside the transaction that replays it)."""
        with self.transaction() as db:
            db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
            self._dead_bytes = None

    def prune_dead_letters(self, *, max_age_s: float, max_count: int, max_bytes: int) -> int:
        """Apply the retention limits; returns how many records were deleted."""
        with self.transaction() as db:
            deleted = db.execute("DELETE FROM dead_letters WHERE at < ?", (self.clock() - max_age_s,)).rowcount
            deleted += db.execute(
                "DELETE FROM dead_letters WHERE id NOT IN (SELECT id FROM dead_letters ORDER BY id DESC LIMIT ?)",
                (max_count,),
            ).rowcount
            self._dead_bytes = None
            self._shed_payloads(max_bytes)
            if deleted:
                self.count("dead_letters_pruned", deleted)
        return deleted
