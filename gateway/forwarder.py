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
from collections import deque
from collections.abc import Callable

from gateway.cloud import CloudClient, CloudError, Rejected, Retryable, RouteMissing, Unreachable, item_answer
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, TELEMETRY, Spool, Upload

log = logging.getLogger("mailcam.gateway.forwarder")
BATCHED = (CAPTURE, TELEMETRY)  # what POST /api/gateway/uploads/ takes (trigger reports have their own route)
UPLOAD_OVERHEAD = 1024  # a generous allowance per item for its JSON around the image


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
        self.batch_items = settings.upload_batch_items  # 1 once the cloud turns out to have no uploads endpoint

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
                todo = deque(queue)
                while todo:
                    if unreachable:
                        return False
                    try:
                        batch = await self._next_batch(todo)
                        done = await (self.forward(*batch[0]) if len(batch) == 1 else self.forward_many(batch))
                    except Unreachable:
                        unreachable = True
                        return False
                    if not done:
                        return False
                return True

        results = await asyncio.gather(*(lane(queue) for queue in lanes.values()))
        return all(results)

    async def _next_batch(self, todo: deque[Upload]) -> list[tuple[Upload, bytes | None]]:
        """The lane's next items for one request, each capture with its image: captures and telemetry in a
        row, up to ``upload_batch_items`` and ``upload_batch_bytes`` (a larger capture goes alone)."""
        batch: list[tuple[Upload, bytes | None]] = []
        size = 0
        while todo:
            item = todo[0]
            if batch and (len(batch) >= self.batch_items or item.kind not in BATCHED):
                break
            image = await self._image(item)
            size += len(image or b"") * 4 // 3 + UPLOAD_OVERHEAD
            if batch and size > self.settings.upload_batch_bytes:
                break  # it starts the next request instead (its image is read again then)
            batch.append((todo.popleft(), image))
            if item.kind not in BATCHED:
                break
        return batch

    async def _image(self, item: Upload) -> bytes | None:
        if item.kind != CAPTURE:
            return None
        if item.body is not None:  # a replayed capture carries its image; otherwise it is in the chunks
            return item.body
        return await asyncio.to_thread(self.store.image, item.serial, item.key)

    async def forward_many(self, batch: list[tuple[Upload, bytes | None]]) -> bool:
        """Send a lane's items in one request (`CloudClient.send_many`) and settle each by its own result,
        in order, as `forward` would; False at the first that is to be retried.

        If the request as a whole fails (anything but Unreachable: a proxy's 413 for the size, a cloud
        without the endpoint, a timeout) the items go one by one instead, each with its own outcome. A
        cloud without the endpoint gets single requests from then on."""
        try:
            results = await self.cloud.send_many(batch)
        except Unreachable as exc:
            await self._failed(batch[0][0], exc)
            raise
        except CloudError as exc:
            if isinstance(exc, RouteMissing):
                log.warning("the cloud has no uploads endpoint: forwarding one item per request")
                self.batch_items = 1
            for item, image in batch:
                if not await self.forward(item, image):
                    return False
            return True
        for (item, image), result in zip(batch, results, strict=True):
            try:
                item_answer(result)
            except CloudError as exc:
                if not await self._settle_error(item, image, exc):
                    return False
                continue
            await self._settled(item)
        return True

    async def forward(self, item: Upload, image: bytes | None = None) -> bool:
        """Send one item (a capture with its ``image``, read here if not given); True when it is settled
        (delivered or dead-lettered), False to retry it later.

        Raises `Unreachable` (after recording the failed attempt) when no connection could be made.
        """
        if image is None:
            image = await self._image(item)
        try:
            await self.cloud.send(item, image)
        except Unreachable as exc:
            await self._failed(item, exc)
            raise
        except CloudError as exc:
            return await self._settle_error(item, image, exc)
        await self._settled(item)
        return True

    async def _settle_error(self, item: Upload, image: bytes | None, exc: CloudError) -> bool:
        """An item the cloud did not take: False (kept, to retry later) or True (held or dead-lettered)."""
        if isinstance(exc, Retryable):
            await self._failed(item, exc)
            return False
        assert isinstance(exc, Rejected)
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

    async def _failed(self, item: Upload, exc: CloudError) -> None:
        if self.cloud_reachable is not False:
            log.warning("forwarding %s %s of %s failed, will retry: %s", item.kind, item.key, item.serial, exc)
        self.cloud_reachable = False
        await asyncio.to_thread(self.store.failed, item.id, str(exc))

    async def _settled(self, item: Upload) -> None:
        if self.cloud_reachable is False:
            log.info("cloud reachable again")
        self.cloud_reachable = True
        await asyncio.to_thread(self.store.done, item, f"forwarded:{item.kind}")
        if self.on_forwarded:
            self.on_forwarded(item)
