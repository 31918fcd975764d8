"""Firmware updates through the gateway: the retained offer per device, and the chunks devices ask for.

The cloud lists each device's pending release with the device list (``GET /api/gateway/devices/``:
``firmware`` = ``{release_id, version, size, signature}`` or null). Like remote settings, a change is
published once, retained, on the device's ``ota`` topic (an empty payload clears it) and remembered
in the spool.

A device asks for a piece of the bundle (``fwreq``: release, offset, length, chunk size); the answer
goes out at once as QoS 0 chunks on its ``fw`` topic. With ``firmware_cache`` (default) each bundle
is fetched from the cloud once and kept under ``<data dir>/firmware/``; without it the gateway only
relays: every request fetches just its range. Only a release offered to that device is served.
Nothing here is stored in the spool or acknowledged to the cloud: a lost request or chunk is simply
asked for again on the device's next wake, and the device checks every byte against the signed
manifest anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from mcam import protocol

from gateway.cloud import CloudClient, CloudError
from gateway.inbox import Link
from gateway.spool import Spool

log = logging.getLogger("mailcam.gateway.firmware")


def _offer_key(serial: str) -> str:
    return f"ota:{serial}"


class FirmwareRelay:
    def __init__(self, *, cloud: CloudClient, link: Link, store: Spool, cache_dir: Path | None) -> None:
        self.cloud = cloud
        self.link = link
        self.store = store
        self.cache_dir = cache_dir
        self.offers: dict[str, dict[str, Any]] = {}  # serial -> the cloud's current offer
        self._fetching: dict[int, asyncio.Lock] = {}

    # ---------------------------------------------------------------- offers

    async def publish_offers(self, devices: list[dict[str, Any]]) -> bool:
        """Publish each device's changed offer (retained); False if the broker did not take one."""
        all_ok = True
        for device in devices:
            serial, fw = device["serial"], device.get("firmware")
            if fw:
                self.offers[serial] = fw
            else:
                self.offers.pop(serial, None)
            want = str(fw["release_id"]) if fw else ""
            published = await asyncio.to_thread(self.store.get_kv, _offer_key(serial))
            if published == want or (published is None and not fw):
                continue
            try:
                topic = protocol.topic(serial, protocol.OTA)
                payload = (
                    protocol.encode_offer(fw["release_id"], fw["version"], fw["size"], fw["signature"]) if fw else b""
                )
            except (protocol.ProtocolError, KeyError, TypeError) as exc:
                log.warning("cloud listed an unusable firmware offer for %r: %s", serial[:40], exc)
                continue
            # once one failed the broker is away: the others would each wait out the timeout too
            if not all_ok or not await asyncio.to_thread(self.link.publish, topic, payload, retain=True):
                all_ok = False
                continue
            await asyncio.to_thread(self.store.set_kv, _offer_key(serial), want)
            log.info("firmware offer for %s: %s", serial, f"release {want}" if fw else "none")
        return all_ok

    # ---------------------------------------------------------------- requests

    async def serve(self, serial: str, payload: bytes) -> None:
        """Answer one ``fwreq``: the asked range of an offered bundle, in chunks on the device's ``fw`` topic."""
        try:
            req = protocol.decode_fwreq(payload)
        except protocol.ProtocolError as exc:
            log.info("bad firmware request from %s: %s", serial, exc)
            return
        offer = self.offers.get(serial)
        if not offer or offer["release_id"] != req["rid"]:
            log.info("%s asked for release %s, which is not offered to it", serial, req["rid"])
            return
        size = offer["size"]
        off, end = req["off"], min(size, req["off"] + req["len"])
        if off >= end:
            return
        try:
            data = await self._range(req["rid"], off, end - off)
        except CloudError as exc:
            log.warning("release %s not available from the cloud: %s", req["rid"], exc)
            return
        topic = protocol.topic(serial, protocol.FW)
        cs = req["cs"]
        for pos in range(0, len(data), cs):
            chunk = protocol.encode_fw_chunk(req["rid"], off + pos, size, data[pos : pos + cs])
            if not self.link.publish_qos0(topic, chunk):
                log.info("broker away while sending release %s to %s", req["rid"], serial)
                return
        log.info("sent %s bytes of release %s at %s to %s", len(data), req["rid"], off, serial)

    async def _range(self, rid: int, off: int, length: int) -> bytes:
        if self.cache_dir is None:
            return await self.cloud.firmware(rid, offset=off, length=length)
        path = self.cache_dir / f"{rid}.bin"
        lock = self._fetching.setdefault(rid, asyncio.Lock())
        async with lock:  # one fetch per release, however many devices ask at once
            if not path.exists():
                data = await self.cloud.firmware(rid)
                await asyncio.to_thread(_write_atomically, path, data)
                log.info("release %s fetched from the cloud (%d bytes) and cached", rid, len(data))
        return await asyncio.to_thread(_read_range, path, off, length)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_range(path: Path, off: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(off)
        return f.read(length)
