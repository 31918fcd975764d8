"""`Gateway`: the whole edge service (ingest thread + asyncio forwarder, trigger relay, housekeeping).

    gateway = Gateway(GatewaySettings(...))
    await gateway.run()        # until gateway.stop() (or SIGTERM under the CLI)
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from gateway.cloud import CloudClient, CloudError
from gateway.forwarder import Forwarder
from gateway.ingest import Ingestor, IngestThread, MqttLink
from gateway.relay import TriggerRelay
from gateway.settings import GatewaySettings
from gateway.store import CAPTURE, OutboxItem, Store

log = logging.getLogger("mailcam.gateway")


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Gateway:
    """One gateway process; keyword `transport` lets tests or tools route HTTP elsewhere."""

    def __init__(self, settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.state = State.NEW
        self.store: Store | None = None
        self._stop = asyncio.Event()
        self._refresh_devices = asyncio.Event()
        self._last_unknown_refresh = 0.0

    async def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until `stop()`; everything acknowledged to the broker is in the store by then."""
        if self.state is not State.NEW:
            raise RuntimeError("a Gateway runs once")
        self.state = State.RUNNING
        settings = self.settings
        loop = asyncio.get_running_loop()
        # store calls are serialised by the store's lock anyway: a few threads, few malloc arenas
        loop.set_default_executor(ThreadPoolExecutor(max_workers=3, thread_name_prefix="mailcam-store"))
        store = self.store = Store(settings.db_path, synchronous=settings.sqlite_synchronous)
        store.set_kv("broker", "disconnected")
        store.set_kv("ingest_paused", "0")
        token = settings.token.get_secret_value() if settings.token else None
        if token is None:
            log.warning("no MAILCAM_GATEWAY_TOKEN: the cloud will refuse everything; items stay queued")
        cloud = CloudClient(base_url=settings.cloud_url, token=token, timeout_s=settings.http_timeout_s,
                            transport=self.transport)
        def broker_state(up: bool) -> None:  # runs in paho's thread: an exception there would stop it
            try:
                store.set_kv("broker", "connected" if up else "disconnected")
            except sqlite3.Error:
                log.exception("could not record the broker state")

        link = MqttLink(settings, on_state=broker_state)
        relay = TriggerRelay(settings, store, cloud, link)

        pending: set[asyncio.Task] = set()

        def forwarded(item: OutboxItem) -> None:
            if item.kind == CAPTURE and item.meta.get("trigger_id"):
                task = loop.create_task(relay.fulfilled(item.serial, item.meta["trigger_id"]))
                pending.add(task)
                task.add_done_callback(pending.discard)

        forwarder = Forwarder(settings, store, cloud, on_forwarded=forwarded)
        ingestor = Ingestor(settings, store, on_unknown_device=lambda: loop.call_soon_threadsafe(self._unknown_seen))
        ingest = IngestThread(
            link, ingestor, batch_max=settings.ingest_batch_max, outbox_max_bytes=settings.outbox_max_bytes,
            on_paused=lambda paused: store.set_kv("ingest_paused", "1" if paused else "0"),
            on_committed=lambda n: loop.call_soon_threadsafe(forwarder.wake.set),
        )
        metrics_server = None
        if settings.metrics_port:
            from prometheus_client import start_http_server

            from gateway.metrics import registry_for

            metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host,
                                                  registry=registry_for(store))
        _warm_http_stack()
        ingest.start()
        link.start()
        tasks = [
            asyncio.create_task(forwarder.run(), name="forwarder"),
            asyncio.create_task(relay.run(), name="trigger-relay"),
            asyncio.create_task(self._devices_loop(cloud, store, ingestor), name="devices"),
            asyncio.create_task(self._housekeeping(store), name="housekeeping"),
        ]
        log.info("gateway running: broker %s:%s, cloud %s, store %s", settings.broker_host, settings.broker_port,
                 settings.cloud_url, settings.db_path)
        try:
            stop_wait = asyncio.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception():
                    raise task.exception()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ingest.stop()
            await asyncio.to_thread(ingest.join, 10)
            link.stop()
            await cloud.aclose()
            if metrics_server is not None:
                metrics_server.shutdown()
            store.set_kv("broker", "disconnected")
            store.close()
            self.state = State.STOPPED
            log.info("gateway stopped")

    def _unknown_seen(self) -> None:
        if time.monotonic() - self._last_unknown_refresh > 10:
            self._last_unknown_refresh = time.monotonic()
            self._refresh_devices.set()

    async def _devices_loop(self, cloud: CloudClient, store: Store, ingestor: Ingestor) -> None:
        """Cache the cloud's device list (validation keeps working while the cloud is away)."""
        while True:
            try:
                devices = await cloud.devices()
                await asyncio.to_thread(
                    store.replace_devices, [(d["serial"], d.get("wake_interval_s")) for d in devices]
                )
                ingestor.refresh_known()
                store.set_kv("cloud", "reachable")
                delay = self.settings.devices_refresh_s
            except CloudError as exc:
                log.info("device list refresh failed: %s", exc)
                store.set_kv("cloud", "unreachable")
                delay = min(30.0, self.settings.devices_refresh_s)
            self._refresh_devices.clear()
            try:
                await asyncio.wait_for(self._refresh_devices.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _housekeeping(self, store: Store) -> None:
        while True:
            await asyncio.to_thread(store.expire_partials, self.settings.partial_timeout_s)
            await asyncio.to_thread(store.prune_completed, self.settings.completed_retention_s)
            await asyncio.sleep(self.settings.housekeeping_s)


def _warm_http_stack() -> None:
    """Load anyio's asyncio backend now (httpx loads it on its first request, ~0.2 s of imports) so
    that this one-off cost is not paid while the broker replays a backlog to the ingest thread."""
    import anyio

    anyio.Event()


def run_service(settings: GatewaySettings | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (settings from MAILCAM_GATEWAY_* variables by default)."""
    settings = settings or GatewaySettings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    async def main() -> None:
        gateway = Gateway(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(gateway.stop()))
        await gateway.run()

    asyncio.run(main())
