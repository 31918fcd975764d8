"""Forwarding: the outbox to the cloud, per-device order kept, a few devices at a time.

Each round reads the oldest rows, groups them by device (a lane per device, in id order) and
runs up to ``forward_concurrency`` lanes at once. A lane stops at its first retryable failure so
that a device's items never overtake each other; after a round with failures the forwarder waits
with capped exponential backoff and full jitter. When the cloud cannot be reached at all
(`Unreachable`) the whole round stops: no lane takes another item, because each would fail the
same way and cost an image read and a committed (fsync'd) failure record while the ingest thread
is committing a backlog; at most ``forward_concurrency`` requests fail per round.
Only the cloud's own error codes are final (see `gateway.cloud`): the item is quarantined with
its bytes (replayable), next item; except the cloud's 404 for a capture or telemetry ("unknown
device": not claimed yet), which holds the item until the cloud lists the device.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from gateway.cloud import CloudClient, Rejected, Retryable, Unreachable
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, TELEMETRY, Spool, Upload

log = logging.getLogger("mailcam.gateway.forwarder")


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(ceiling / 2, ceiling)


class Forwarder:
    """Sends outbox items to the cloud until stopped."""

    def __init__(self, settings: GatewaySettings, store: Spool, cloud: CloudClient,
                 *, on_forwarded: Callable[[Upload], None] | None = None,
                 on_unknown_device: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.cloud = cloud
        self.on_forwarded = on_forwarded
        self.on_unknown_device = on_unknown_device
        self.wake = asyncio.Event()
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self.cloud_reachable: bool | None = None

    async def run(self) -> None:
        while True:
            items = await asyncio.to_thread(self.store.pending, self.settings.forward_batch)
            if not items:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                continue
            if await self.round(items):
                self.backoff.reset()
            else:
                delay = self.backoff.next_delay()
                log.info("cloud unavailable; retrying in %.1fs", delay)
                await asyncio.sleep(delay)

    async def round(self, items: list[Upload]) -> bool:
        """Forward one batch; returns False if any lane hit a retryable failure."""
        lanes: dict[str, list[Upload]] = {}
        for item in items:
            lanes.setdefault(item.serial, []).append(item)
        gate = asyncio.Semaphore(self.settings.forward_concurrency)
        unreachable = False

        async def lane(queue: list[Upload]) -> bool:
            nonlocal unreachable
            async with gate:
                for item in queue:
                    if unreachable:
                        return False
                    try:
                        if not await self.forward(item):
                            return False
                    except Unreachable:
                        unreachable = True
                        return False
                return True

        results = await asyncio.gather(*(lane(queue) for queue in lanes.values()))
        return all(results)

    async def forward(self, item: Upload) -> bool:
        """Send one item; True when it is settled (delivered or dead-lettered), False to retry it later.

        Raises `Unreachable` (after recording the failed attempt) when no connection could be made.
        """
        image = None
        if item.kind == CAPTURE:  # a replayed capture carries its image; otherwise it is in the chunks
            image = item.body if item.body is not None else await asyncio.to_thread(self.store.image, item.serial,
                                                                                     item.key)
        try:
            await self.cloud.send(item, image)
        except Retryable as exc:
            if self.cloud_reachable is not False:
                log.warning("forwarding %s %s of %s failed, will retry: %s", item.kind, item.key, item.serial, exc)
            self.cloud_reachable = False
            await asyncio.to_thread(self.store.failed, item.id, str(exc))
            if isinstance(exc, Unreachable):
                raise
            return False
        except Rejected as exc:
            if exc.status == 404 and item.kind in (CAPTURE, TELEMETRY):
                # "unknown device": not this gateway's (yet), e.g. not claimed, and our device list
                # was missing or stale. Held like any unlisted device's item: the claim releases it.
                log.info("cloud does not know %s for this gateway (yet): holding %s %s", item.serial, item.kind,
                         item.key)
                await asyncio.to_thread(self.store.hold, item)
                if self.on_unknown_device:
                    self.on_unknown_device()
                return True
            log.warning("cloud rejected %s %s of %s: %s", item.kind, item.key, item.serial, exc)
            await asyncio.to_thread(self.store.reject, item, exc.reason, exc.detail, image)
            return True
        if self.cloud_reachable is False:
            log.info("cloud reachable again")
        self.cloud_reachable = True
        await asyncio.to_thread(self.store.done, item, f"forwarded:{item.kind}")
        if self.on_forwarded:
            self.on_forwarded(item)
        return True
