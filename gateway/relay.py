"""Trigger relay: the cloud's open manual triggers → a retained command on each device's `cmd` topic.

Long-poll (``GET /api/gateway/triggers/?wait=25&version=V``), not SSE or a fixed poll: the request
returns as soon as the set of open triggers changes, so a click reaches the broker in well under a
second, with one idle request per gateway and plain HTTP through any proxy; when nothing changes
it returns after ``wait`` s and the relay re-applies the same set (so a publish that failed while
the broker was away is retried).

The retained command of a device is cleared (empty retained payload) when its trigger is no longer
open in the cloud (fulfilled, expired, cancelled), when it expires locally, or as soon as the
manual capture answering it has been forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from mcam import protocol

from gateway.cloud import CloudClient, CloudError
from gateway.forwarder import Backoff
from gateway.inbox import Link
from gateway.settings import GatewaySettings
from gateway.spool import Spool

log = logging.getLogger("mailcam.gateway.relay")


def _unix(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


class TriggerRelay:
    """Keeps each device's retained `cmd` equal to its newest open trigger."""

    def __init__(self, settings: GatewaySettings, store: Spool, cloud: CloudClient, link: Link) -> None:
        self.settings = settings
        self.store = store
        self.cloud = cloud
        self.link = link
        self.version: str | None = None
        self.open: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while True:
            try:
                snapshot = await self.cloud.triggers(version=self.version, wait=self.settings.trigger_wait_s)
            except CloudError as exc:
                delay = backoff.next_delay()
                log.info("trigger poll failed (%s); retrying in %.1fs", exc, delay)
                await self.apply()  # still expire commands locally while the cloud is away
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.version = snapshot["version"]
            self.open = snapshot["triggers"]
            await self.apply()

    async def apply(self) -> None:
        """Publish/clear retained commands so they match the open triggers."""
        async with self._lock:
            done = await asyncio.to_thread(self.store.done_triggers)
            now = time.time()
            wanted: dict[str, tuple[str, int]] = {}
            for trigger in sorted(self.open, key=lambda t: t["expires_at"]):
                exp = _unix(trigger["expires_at"])
                if trigger["trigger_id"] in done or exp <= now:
                    continue
                wanted[trigger["device_serial"]] = (trigger["trigger_id"], exp)
            current = await asyncio.to_thread(self.store.cmds)
            for serial, (tid, exp) in wanted.items():
                if current.get(serial, (None, 0))[0] != tid:
                    await self._publish(serial, tid, exp)
            for serial in set(current) - set(wanted):
                await self._publish(serial, None, 0)

    async def fulfilled(self, serial: str, tid: str) -> None:
        """The manual capture answering `tid` reached the cloud: clear the device's command."""
        await asyncio.to_thread(self.store.trigger_done, tid)
        await self.apply()

    async def _publish(self, serial: str, tid: str | None, exp: int) -> None:
        try:
            topic = protocol.topic(serial, protocol.CMD)
        except protocol.ProtocolError:
            log.warning("cloud listed a trigger for an invalid serial %r", serial[:40])
            return
        payload = protocol.encode_cmd(tid, exp) if tid else b""
        ok = await asyncio.to_thread(self.link.publish, topic, payload, retain=True)
        if not ok:
            log.warning("could not publish the command for %s (broker away?); will retry", serial)
            return
        await asyncio.to_thread(self.store.set_cmd, serial, tid, exp)
        if tid:
            log.info("trigger %s relayed to %s (retained)", tid, serial)
        else:
            log.info("cleared the retained command of %s", serial)
