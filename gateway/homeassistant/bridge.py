"""The Home Assistant bridge: the cloud's view of each mailbox → retained discovery configs and states on
the home's broker; Home Assistant's "Take a photo now" → a trigger through the cloud.

Why through the cloud, and why from the cloud: Home Assistant shows what the cloud decided (the
delivery state, the photo that moved it), not a second opinion made at the edge, and a press costs
the owner's click like any other (the click limit and its 429 live in one place,
``cloud.services.triggers``). The feed is a long-poll (``GET /api/gateway/states/``), woken by the
commits that change what is shown (a capture, its analysis, telemetry), so a delivery reaches Home
Assistant within a fraction of a second of its analysis.

Its own MQTT connection (client id ``<client_id>-ha``, clean session), apart from the ingest's
persistent one: nothing here can delay an acknowledgement of a capture, and its will marks every
entity unavailable if the gateway vanishes. Lost nothing on a restart: configs and states are
retained (and republished whenever Home Assistant announces itself, ``<prefix>/status`` = online);
the newest delivery announced per mailbox is remembered in the spool, so an event fires once.

A mailbox the cloud no longer lists (deleted, given away) loses its configs (empty retained
payloads, which Home Assistant reads as "remove the entity") and its retained states.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib import metadata
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cloud import CloudClient, CloudError, Rejected
from gateway.forwarder import Backoff
from gateway.homeassistant import discovery
from gateway.homeassistant.discovery import Mailbox, Topics
from gateway.settings import GatewaySettings
from gateway.spool import Spool

log = logging.getLogger("mailcam.gateway.homeassistant")

SERIALS_KEY = "ha:serials"  # the mailboxes whose configs are out there (JSON list)


def _delivery_key(serial: str) -> str:
    return f"ha:delivery:{serial}"


def _sw_version() -> str:
    try:
        return metadata.version("mailcam")
    except metadata.PackageNotFoundError:
        return "dev"


def states_of(device: dict[str, Any]) -> dict[str, bytes]:
    """State topic → retained payload, from one device of the cloud's feed."""
    t = Topics(device["serial"])
    mail = device["mail"]
    awake_ms = device.get("awake_ms")
    return {
        t.mail: b"ON" if mail["state"] == "mail" else b"OFF" if mail["state"] == "empty" else b"None",
        t.mail_attributes: _json(
            {
                "items": mail["items"],
                "categories": mail["categories"],
                "confidence": mail["confidence"],
                "since": mail["since"],
                "package": mail["package"],
            }
        ),
        t.online: b"online" if device["online"] else b"offline",
        t.state: _json(
            {
                "battery_voltage": device["battery_voltage"],
                "battery_percent": device["battery_percent"],
                "rssi": device["rssi"],
                "last_wake": device["last_seen_at"],
                "awake_s": None if awake_ms is None else round(awake_ms / 1000, 3),
                "pending_captures": device["pending_captures"],
            }
        ),
    }


def press_result(status: int | None, body: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    """What Home Assistant shows of a press: the button's attributes and the "Last photo request" sensor."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if error is not None:
        return {"result": "failed", "message": error, "at": at}
    body = body or {}
    keep = ("trigger_id", "message", "clicks_used", "clicks_limit", "reset_at")
    result = body.get("error") if status == 429 else body.get("status")
    return {"result": result, "http_status": status, "at": at, **{k: body[k] for k in keep if k in body}}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class HomeAssistantBridge:
    """Keeps Home Assistant's entities equal to the cloud's view; runs until cancelled."""

    def __init__(self, settings: GatewaySettings, store: Spool, cloud: CloudClient) -> None:
        self.settings = settings
        self.store = store
        self.cloud = cloud
        self.prefix = settings.homeassistant_prefix
        self.gateway = discovery.gateway_id(settings.client_id)
        self.availability = discovery.availability_topic(self.gateway)
        self.sw_version = _sw_version()
        self.version: str | None = None
        self.devices: list[dict[str, Any]] | None = None  # the cloud's last answer (None: none yet)
        self._sent: dict[str, bytes] = {}  # topic → payload the broker holds from this connection
        self._apply_lock = asyncio.Lock()
        self._resync = asyncio.Event()
        self._presses: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=256)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client = self._make_client()

    # paho thread ------------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{s.client_id}-ha", clean_session=True, protocol=paho.MQTTv311
        )
        if s.broker_username:
            client.username_pw_set(
                s.broker_username, s.broker_password.get_secret_value() if s.broker_password else None
            )
        client.will_set(self.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the Home Assistant connection: %s", reason)
            return
        client.subscribe([(discovery.PRESS_SUBSCRIPTION, 1), (f"{self.prefix}/status", 1)])
        client.publish(self.availability, b"online", qos=1, retain=True)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._resync.set)  # a new connection: publish everything again

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._received, message.topic, bytes(message.payload))

    # event loop -------------------------------------------------------------------------------
    def _received(self, topic: str, payload: bytes) -> None:
        if topic == f"{self.prefix}/status":
            if payload == b"online":  # Home Assistant (re)started: its birth message asks for the configs
                self._resync.set()
            return
        try:
            self._presses.put_nowait((topic, payload))
        except asyncio.QueueFull:
            log.warning("too many photo requests waiting; dropped one from %s", topic)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        self.client.connect_async(s.broker_host, s.broker_port, s.keepalive_s)
        self.client.loop_start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_cloud(), name="ha-feed")
                group.create_task(self._republish(), name="ha-resync")
                group.create_task(self._answer_presses(), name="ha-presses")
        finally:
            # A clean stop says so at once (the will only covers a vanished gateway).
            await asyncio.to_thread(self._publish, self.availability, b"offline", True, 5.0)
            self.client.disconnect()
            self.client.loop_stop()

    async def _follow_cloud(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while True:
            try:
                answer = await self.cloud.states(version=self.version, wait=self.settings.trigger_wait_s)
            except CloudError as exc:
                delay = backoff.next_delay()
                log.info("Home Assistant feed failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.version, self.devices = answer["version"], answer["devices"]
            await self.apply()

    async def _republish(self) -> None:
        while True:
            await self._resync.wait()
            self._resync.clear()
            self._sent.clear()  # what the broker holds is unknown: send it all again
            await self.apply()

    async def apply(self) -> None:
        """Publish what changed since the last call (configs, states, photos, delivery events, removals)."""
        if self.devices is None or not self.client.is_connected():
            return  # nothing to say yet, or no broker: the next connection republishes everything
        async with self._apply_lock:
            topic, config = discovery.gateway_config(
                prefix=self.prefix, gateway=self.gateway, sw_version=self.sw_version
            )
            await self._put(topic, _json(config))
            listed = {d["serial"] for d in self.devices}
            known = set(json.loads(await asyncio.to_thread(self.store.get_kv, SERIALS_KEY) or "[]"))
            if listed - known:  # remembered before its configs go out: a removal is never missed
                await asyncio.to_thread(self.store.set_kv, SERIALS_KEY, json.dumps(sorted(known | listed)))
            for device in self.devices:
                await self._publish_device(device)
            await self._remove_gone(listed)

    async def _publish_device(self, device: dict[str, Any]) -> None:
        box = Mailbox(device["serial"], device["name"], device.get("firmware_version"))
        configs = discovery.mailbox_configs(box, prefix=self.prefix, gateway=self.gateway, sw_version=self.sw_version)
        for topic, config in configs.items():
            await self._put(topic, _json(config))
        for topic, payload in states_of(device).items():
            await self._put(topic, payload)
        await self._publish_photo(device)
        await self._announce_delivery(device)

    async def _publish_photo(self, device: dict[str, Any]) -> None:
        photo = device.get("latest_photo")
        topic = Topics(device["serial"]).photo
        marker = photo["capture_id"].encode() if photo else b""
        if photo is None or self._sent.get(topic) == marker:
            return
        try:
            image = await self.cloud.image(photo["thumbnail"])
        except CloudError as exc:  # the next snapshot (at most trigger_wait_s away) tries again
            log.info("could not fetch the latest photo of %s: %s", device["serial"], exc)
            return
        if await asyncio.to_thread(self._publish, topic, image, True):
            self._sent[topic] = marker

    async def _announce_delivery(self, device: dict[str, Any]) -> None:
        news = device.get("last_delivery")
        newest = news["id"] if news else 0
        key = _delivery_key(device["serial"])
        seen = await asyncio.to_thread(self.store.get_kv, key) or None  # "": forgotten with its removal
        if seen is not None and int(seen) >= newest:
            return
        if seen is not None and news is not None:  # a first sight only records: history is not news
            event = {
                "event_type": discovery.delivery_event(news["kind"], news["package"]),
                "at": news["at"],
                "kind": news["kind"],
                "package": news["package"],
            }
            if not await asyncio.to_thread(self._publish, Topics(device["serial"]).delivery, _json(event), False):
                return  # not announced: try again with the next snapshot
            log.info("%s: %s announced to Home Assistant", device["serial"], event["event_type"])
        await asyncio.to_thread(self.store.set_kv, key, str(newest))

    async def _remove_gone(self, serials: set[str]) -> None:
        known = set(json.loads(await asyncio.to_thread(self.store.get_kv, SERIALS_KEY) or "[]"))
        for serial in sorted(known - serials):
            box = Mailbox(serial, serial, None)
            topics = [
                *discovery.mailbox_configs(box, prefix=self.prefix, gateway=self.gateway, sw_version=""),
                *Topics(serial).retained,
            ]
            results = [await asyncio.to_thread(self._publish, topic, b"", True) for topic in topics]
            if not all(results):
                serials.add(serial)  # keep it listed: the next apply tries again
                continue
            for topic in topics:
                self._sent.pop(topic, None)
            await asyncio.to_thread(self.store.set_kv, _delivery_key(serial), "")
            log.info("%s is gone from the cloud: removed from Home Assistant", serial)
        if serials != known:
            await asyncio.to_thread(self.store.set_kv, SERIALS_KEY, json.dumps(sorted(serials)))

    async def _put(self, topic: str, payload: bytes) -> None:
        """Publish retained unless the broker already holds exactly this from us."""
        if self._sent.get(topic) == payload:
            return
        if await asyncio.to_thread(self._publish, topic, payload, True):
            self._sent[topic] = payload

    def _publish(self, topic: str, payload: bytes, retain: bool, timeout_s: float = 10.0) -> bool:
        """QoS 1, waiting for the broker's PUBACK (blocking: call from a worker thread)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    async def _answer_presses(self) -> None:
        while True:
            topic, payload = await self._presses.get()
            serial = discovery.serial_of_press(topic)
            listed = {d["serial"] for d in self.devices or []}
            if serial is None or serial not in listed or payload != discovery.PRESS.encode():
                log.info("ignored a photo request on %s", topic[:120])
                continue
            await self._publish_result(serial, await self._press(serial))

    async def _press(self, serial: str) -> dict[str, Any]:
        try:
            status, body = await self.cloud.trigger(serial)
        except Rejected as exc:
            return press_result(exc.status, None, f"{exc.reason}: {exc.detail}")
        except CloudError as exc:
            return press_result(None, None, f"the cloud could not be reached: {exc}")
        outcome = press_result(status, body)
        log.info("photo request for %s from Home Assistant: %s", serial, outcome["result"])
        return outcome

    async def _publish_result(self, serial: str, outcome: dict[str, Any]) -> None:
        topic = Topics(serial).press_result
        payload = _json(outcome)
        if await asyncio.to_thread(self._publish, topic, payload, True):
            self._sent[topic] = payload
        else:
            log.warning("could not show the photo request's result for %s (broker away?)", serial)
