"""Remote settings: the cloud's desired settings of each device → a retained command on its `settings` topic.

The cloud lists them with the device list (``GET /api/gateway/devices/``: ``settings_version``,
``settings``), which the gateway refreshes every ``devices_refresh_s``; a device reads its retained
settings on its next wake anyway, so no faster path is needed. A version is published once (QoS 1,
retained) and remembered in the spool, so a restart or a refresh does not publish it again; one
the broker did not acknowledge is tried again at the next refresh.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcam import protocol

from gateway.inbox import Link
from gateway.spool import Spool

log = logging.getLogger("mailcam.gateway.settings")


def _published_key(serial: str) -> str:
    return f"settings:{serial}"


async def publish_changed(store: Spool, link: Link, devices: list[dict[str, Any]]) -> bool:
    """Publish each device's desired settings whose version was not published yet; False if one failed
    (then the rest wait for the next round)."""
    for device in devices:
        serial, ver, values = device["serial"], device.get("settings_version"), device.get("settings")
        if ver is None or values is None:
            continue
        if await asyncio.to_thread(store.get_kv, _published_key(serial)) == str(ver):
            continue
        try:
            topic = protocol.topic(serial, protocol.SETTINGS)
            payload = protocol.encode_settings(ver, values)
        except protocol.ProtocolError as exc:
            log.warning("cloud listed unusable settings for %r: %s", serial[:40], exc)
            continue
        if not await asyncio.to_thread(link.publish, topic, payload, retain=True):
            log.warning("could not publish settings ver %d for %s (broker away?); will retry", ver, serial)
            return False  # the broker is away: the others would each wait out the timeout too
        await asyncio.to_thread(store.set_kv, _published_key(serial), str(ver))
        log.info("settings ver %d published to %s (retained)", ver, serial)
    return True
