"""The gateway's spool: its durable queue between the devices and the cloud, one SQLite file (WAL).

One module per concept, all sharing one connection and one transaction (an MQTT batch touches
several of them and is acked only once it has committed as a whole):

- `base`: the file, schema upgrades, transactions, counters, the kv table (state for `status`)
- `reassembly`: chunks → captures, with per-device budgets
- `uploads`: what waits for the cloud, and rows *held* for devices the cloud does not list yet
- `dead_letters`: what was refused, and the quarantine (bytes kept, replayable) with its retention
- `devices`: the cloud's device list, cached
- `commands`: retained trigger commands and answered triggers
- `checkpoint`: WAL checkpoints in a thread of their own (the service starts it), off the ingest commits
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.spool.commands import Commands
from gateway.spool.dead_letters import MQTT, DeadLetter, DeadLetters, Quarantined
from gateway.spool.devices import DeviceCache
from gateway.spool.reassembly import Reassembly
from gateway.spool.uploads import CAPTURE, DELIVERED, TELEMETRY, Upload, Uploads

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

__all__ = ["CAPTURE", "DELIVERED", "MQTT", "TELEMETRY", "DeadLetter", "Upload", "Quarantined", "Spool"]


class Spool(Uploads, Reassembly, DeadLetters, DeviceCache, Commands):
    """The SQLite file; every method is one short transaction (or runs inside `transaction()`)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", clock: Callable[[], float] = time.time,
                 partial_quota_bytes: int = Reassembly.partial_quota_bytes,
                 dead_letter_max_bytes: int = DeadLetters.dead_letter_max_bytes) -> None:
        super().__init__(path, synchronous=synchronous, clock=clock)
        self.partial_quota_bytes = partial_quota_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self._init_uploads()
        self._init_reassembly()
        self.recount_bytes()

    def recount_bytes(self) -> int:
        """Recount from the tables (another process changed them) and forget the reassembly caches."""
        with self._lock:
            self._partials.clear()
            self._device_bytes = None
            return super().recount_bytes()

    @classmethod
    def open(cls, settings: GatewaySettings) -> Spool:
        """The spool of a gateway configured by `settings`."""
        return cls(settings.db_path, synchronous=settings.sqlite_synchronous,
                   partial_quota_bytes=settings.device_partial_quota_bytes,
                   dead_letter_max_bytes=settings.dead_letter_max_bytes)
