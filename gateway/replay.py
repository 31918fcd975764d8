"""Replaying quarantined dead letters: the operator's way back after a fault was fixed.

- a capture, telemetry report or delivery report the cloud refused (``cloud_<code>``) or whose
  device it never listed (``unknown_device``) goes back into the outbox with its bytes;
- a raw MQTT message that hit a bug (``internal_error``) goes through ingest again.

Each replay is one transaction: the dead letter is removed and its content queued together (a
message that fails again becomes a new dead letter). Safe while the service runs: it polls the
outbox, and recounts the queued bytes when it sees the ``recount`` flag set here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import GatewaySettings
from gateway.spool import MQTT, Spool
from gateway.subscriber import Ingestor


@dataclass(frozen=True)
class Replayed:
    letter_id: int
    outcome: str  # queued | stored | completed | duplicate | dead | ... | not_replayable


def replay(store: Spool, settings: GatewaySettings, letter_ids: list[int]) -> list[Replayed]:
    ingestor = Ingestor(settings, store)
    results = []
    for letter_id in letter_ids:
        quarantined = store.quarantined(letter_id)
        if quarantined is None:
            results.append(Replayed(letter_id, "not_replayable"))
            continue
        letter = quarantined.letter
        with store.transaction():
            store.forget_dead_letter(letter_id)
            if letter.kind == MQTT:
                outcome = ingestor.handle((letter.topic or "").encode(), quarantined.payload or b"")
            else:
                store.enqueue(letter.kind, letter.serial or "", letter.key or "", quarantined.meta or {},
                              quarantined.payload)
                outcome = "queued"
        results.append(Replayed(letter_id, outcome))
    if results:
        store.set_kv("recount", "1")
    return results
