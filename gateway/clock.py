"""The clock beacon: the gateway's time as a retained message on ``mailcam/v1/clock``.

A mailbox's ESP32 has no battery-backed clock worth trusting: after a power loss its RTC reads
2000-01-01, and its slow RC oscillator drifts by minutes a day. The device already opens one round
trip per wake that brings its retained ``cmd``; subscribing to the retained clock in the same
SUBSCRIBE gives it true time at no extra round trip (no SNTP server, no extra packet exchange).

The beacon is republished every ``clock_every_s`` seconds and says so (``every``), so a device knows
the true time lies in ``[t, t + every]`` (``mcam.protocol.corrected_time``). A stale beacon would set
devices back in time, so it is cleared when the gateway stops (and by its MQTT will if it vanishes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mcam import protocol

from gateway.inbox import Link

log = logging.getLogger("mailcam.gateway.clock")


class ClockBeacon:
    def __init__(self, link: Link, *, every_s: int, now: Callable[[], float] = time.time) -> None:
        self.link = link
        self.every_s = every_s
        self.now = now

    async def publish_once(self) -> bool:
        payload = protocol.encode_clock(int(self.now()), self.every_s)
        ok = await asyncio.to_thread(self.link.publish, protocol.CLOCK_TOPIC, payload, retain=True)
        if not ok:
            log.info("could not publish the clock (broker away?); next try in %ss", self.every_s)
        return ok

    async def run(self) -> None:
        while True:
            await self.publish_once()
            await asyncio.sleep(self.every_s)
