"""`GatewayService`: the whole edge service (ingest thread + asyncio forwarder, trigger relay,
housekeeping), supervised.

    gateway = GatewayService(GatewaySettings(...))
    await gateway.run()        # until gateway.stop() (or SIGTERM under the CLI)
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import logging
import os
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from gateway import remote_settings
from gateway.clock import ClockBeacon
from gateway.cloud import CloudClient, CloudError
from gateway.cloudformat import status_body
from gateway.firmware import FirmwareRelay
from gateway.forwarder import Forwarder
from gateway.inbox import Link
from gateway.mqtt_process import link_for
from gateway.relay import TriggerRelay
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, Spool, Upload
from gateway.spool.checkpoint import Checkpointer
from gateway.subscriber import Ingestor, IngestThread

log = logging.getLogger("mailcam.gateway")

# The spool's own automatic checkpoint while `Checkpointer` runs: only a bound if that thread falls
# behind (64 MiB of WAL with 16 KiB pages; SQLite's default of 1000 pages would checkpoint in the
# ingest thread's commits again)
FALLBACK_CHECKPOINT_PAGES = 4000


async def _home_assistant(settings: GatewaySettings, store: Spool, cloud: CloudClient) -> None:
    # imported only when configured: it brings its own MQTT client (paho), which the gateway's main
    # process does not otherwise load when its MQTT connection runs in a child process
    from gateway.homeassistant.bridge import HomeAssistantBridge

    await HomeAssistantBridge(settings, store, cloud).run()


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class ServiceFailed(RuntimeError):
    """A part of the service died or hung: the process must exit non-zero so that systemd restarts it.

    Nothing is lost by that: what was acked to the broker is committed, what was not is redelivered
    to our persistent session, and the outbox is on disk.
    """


class GatewayService:
    """One gateway process; keyword `transport` lets tests or tools route HTTP elsewhere.

    Supervision: the asyncio tasks (forwarder, trigger relay, clock, device list, housekeeping, watchdog)
    must run forever; the ingest thread and paho's network thread must stay alive and the ingest
    thread must keep turning. Any of them ending, raising or stalling stops the service with
    `ServiceFailed` (exit status 1 under `run_service`). The watchdog writes a heartbeat to the
    spool's kv table, which `mailcam gateway status` reads: a crashed or hung service is reported
    as not running, whatever the last recorded broker state says.
    """

    def __init__(self, settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.state = State.NEW
        self.store: Spool | None = None
        self.failure: str | None = None
        self._stop = asyncio.Event()
        self._failed = asyncio.Event()
        self._refresh_devices = asyncio.Event()
        self._last_unknown_refresh = 0.0

    async def stop(self) -> None:
        self._stop.set()

    def _fail(self, reason: str) -> None:
        """Called on the event loop when a supervised part died."""
        if self.failure is None:
            self.failure = reason
        self._failed.set()

    async def run(self) -> None:
        """Run until `stop()` (or raise `ServiceFailed`); everything acked to the broker is in the spool by then."""
        if self.state is not State.NEW:
            raise RuntimeError("a GatewayService runs once")
        self.state = State.RUNNING
        settings = self.settings
        loop = asyncio.get_running_loop()
        # spool calls are serialised by the spool's lock anyway: a few threads, few malloc arenas
        loop.set_default_executor(ThreadPoolExecutor(max_workers=3, thread_name_prefix="mailcam-store"))
        store = self.store = Spool.open(settings)
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

        link: Link = link_for(settings, on_state=broker_state)
        relay = TriggerRelay(settings, store, cloud, link)

        pending: set[asyncio.Task] = set()

        def settled(task: asyncio.Task) -> None:
            pending.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self._fail(f"{task.get_name()}: {task.exception()!r}")

        def forwarded(item: Upload) -> None:
            if item.kind == CAPTURE and item.meta.get("trigger_id"):
                task = loop.create_task(relay.fulfilled(item.serial, item.meta["trigger_id"]), name="trigger-done")
                pending.add(task)
                task.add_done_callback(settled)

        forwarder = Forwarder(settings, store, cloud, on_forwarded=forwarded,
                              on_unknown_device=self._unknown_seen)
        firmware = FirmwareRelay(cloud=cloud, link=link, store=store,
                                 cache_dir=settings.data_dir / "firmware" if settings.firmware_cache else None)

        def fw_request(serial: str, payload: bytes) -> None:  # runs in the ingest thread
            def start() -> None:
                task = loop.create_task(firmware.serve(serial, payload), name="firmware-request")
                pending.add(task)
                task.add_done_callback(settled)
            loop.call_soon_threadsafe(start)

        ingestor = Ingestor(settings, store, on_unknown_device=lambda: loop.call_soon_threadsafe(self._unknown_seen),
                            on_fw_request=fw_request)
        checkpointer = Checkpointer(settings.db_path, synchronous=settings.sqlite_synchronous)

        def committed(messages: int, nbytes: int) -> None:  # runs in the ack thread, once a batch is durable
            checkpointer.committed(nbytes)
            loop.call_soon_threadsafe(forwarder.wake.set)

        ingest = IngestThread(
            link, ingestor, batch_max=settings.ingest_batch_max, outbox_max_bytes=settings.outbox_max_bytes,
            on_paused=lambda paused: store.set_kv("ingest_paused", "1" if paused else "0"),
            on_committed=committed,
            on_failure=lambda exc: loop.call_soon_threadsafe(self._fail, f"ingest thread: {exc!r}"),
        )
        metrics_server = None
        if settings.metrics_port:
            from prometheus_client import start_http_server

            from gateway.metrics import registry_for

            metrics_server, _ = start_http_server(settings.metrics_port, settings.metrics_host,
                                                  registry=registry_for(store))
        _warm_http_stack()
        store.set_kv("service", "running")
        await asyncio.to_thread(self._heartbeat, store)
        store.set_wal_autocheckpoint(FALLBACK_CHECKPOINT_PAGES)
        checkpointer.start()
        ingest.start()
        link.start()
        tasks = [
            asyncio.create_task(forwarder.run(), name="forwarder"),
            *([asyncio.create_task(_home_assistant(settings, store, cloud), name="homeassistant")]
              if settings.homeassistant else []),
            asyncio.create_task(relay.run(), name="trigger-relay"),
            asyncio.create_task(ClockBeacon(link, every_s=settings.clock_every_s).run(), name="clock"),
            asyncio.create_task(self._devices_loop(cloud, store, ingestor, forwarder, link, firmware), name="devices"),
            asyncio.create_task(self._housekeeping(store, forwarder, cloud), name="housekeeping"),
            asyncio.create_task(self._watchdog(store, ingest, link), name="watchdog"),
        ]
        log.info("gateway running: broker %s:%s, cloud %s, spool %s", settings.broker_host, settings.broker_port,
                 settings.cloud_url, settings.db_path)
        try:
            stop_wait = asyncio.create_task(self._stop.wait(), name="stop")
            fail_wait = asyncio.create_task(self._failed.wait(), name="failure")
            done, _ = await asyncio.wait([stop_wait, fail_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            fail_wait.cancel()
            for task in done:
                if task in tasks:  # a supervised task never ends on its own
                    error = task.exception()
                    self._fail(f"task {task.get_name()} {'failed: ' + repr(error) if error else 'ended'}")
            if self.failure:
                log.critical("gateway failing: %s", self.failure)
                raise ServiceFailed(self.failure)
        finally:
            for task in [*tasks, *pending]:
                task.cancel()
            await asyncio.gather(*tasks, *pending, return_exceptions=True)
            ingest.stop()
            await asyncio.to_thread(ingest.join, 10)
            link.close()
            await asyncio.to_thread(checkpointer.stop)
            await cloud.aclose()
            if metrics_server is not None:
                metrics_server.shutdown()
            store.set_kv("broker", "disconnected")
            store.set_kv("service", f"failed: {self.failure}" if self.failure else "stopped")
            store.close()
            self.state = State.FAILED if self.failure else State.STOPPED
            log.info("gateway stopped")

    def _heartbeat(self, store: Spool) -> None:
        store.set_kv("heartbeat", json.dumps({"at": time.time(), "every_s": self.settings.heartbeat_s,
                                              "pid": os.getpid()}))

    async def _watchdog(self, store: Spool, ingest: IngestThread, link: Link) -> None:
        """Fail on a dead or stalled thread; otherwise write the heartbeat `status` trusts."""
        stall_s = max(60.0, 12 * self.settings.heartbeat_s)  # one batch commit never takes this long
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            if not ingest.is_alive():
                self._fail(f"ingest thread ended: {ingest.failure!r}")
                return
            if time.monotonic() - ingest.beat > stall_s:
                self._fail(f"ingest thread stalled for {time.monotonic() - ingest.beat:.0f}s")
                return
            if not link.network_alive():
                self._fail("the MQTT connection died (paho's network thread, or the process it runs in)")
                return
            await asyncio.to_thread(self._heartbeat, store)

    def _unknown_seen(self) -> None:
        if time.monotonic() - self._last_unknown_refresh > self.settings.unknown_device_refresh_s:
            self._last_unknown_refresh = time.monotonic()
            self._refresh_devices.set()

    async def _devices_loop(self, cloud: CloudClient, store: Spool, ingestor: Ingestor, forwarder: Forwarder,
                            link: Link, firmware: FirmwareRelay) -> None:
        """Cache the cloud's device list (validation keeps working while the cloud is away); release held
        rows; publish new versions of the devices' remote settings and changed firmware offers."""
        while True:
            try:
                devices = await cloud.devices()
                await asyncio.to_thread(
                    store.replace_devices, [(d["serial"], d.get("wake_interval_s")) for d in devices]
                )
                ingestor.refresh_known()
                if await asyncio.to_thread(store.release_held):
                    forwarder.wake.set()
                await asyncio.to_thread(store.set_kv, "cloud", "reachable")
                delay = self.settings.devices_refresh_s
                published = await remote_settings.publish_changed(store, link, devices)
                if not await firmware.publish_offers(devices) or not published:
                    delay = min(30.0, delay)  # the broker was away: try again soon
            except CloudError as exc:
                log.info("device list refresh failed: %s", exc)
                await asyncio.to_thread(store.set_kv, "cloud", "unreachable")
                delay = min(30.0, self.settings.devices_refresh_s)
            self._refresh_devices.clear()
            try:
                await asyncio.wait_for(self._refresh_devices.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _housekeeping(self, store: Spool, forwarder: Forwarder, cloud: CloudClient) -> None:
        s = self.settings
        while True:
            await self._report_status(store, cloud)
            await asyncio.to_thread(store.expire_partials, s.partial_timeout_s)
            await asyncio.to_thread(store.prune_completed, s.completed_retention_s)
            if await asyncio.to_thread(store.release_held):  # rows held by a batch that raced a refresh
                forwarder.wake.set()
            await asyncio.to_thread(store.expire_held, s.unknown_device_hold_s)
            await asyncio.to_thread(functools.partial(
                store.prune_dead_letters, max_age_s=s.dead_letter_retention_s, max_count=s.dead_letter_max_count,
                max_bytes=s.dead_letter_max_bytes))
            if await asyncio.to_thread(store.get_kv, "recount"):  # a replay added rows from another process
                await asyncio.to_thread(store.recount_bytes)
                await asyncio.to_thread(store.set_kv, "recount", "")
                forwarder.wake.set()
            await asyncio.sleep(s.housekeeping_s)


    @staticmethod
    async def _report_status(store: Spool, cloud: CloudClient) -> None:
        """Backlog, held items and dead letters for the owner's dashboard; a failed report waits for the next round."""
        stats, broker = await asyncio.to_thread(lambda: (store.outbox_stats(), store.get_kv("broker")))
        try:
            await cloud.report_status(status_body(stats, broker))
        except CloudError as exc:
            log.info("status report not delivered: %s", exc)


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
        gateway = GatewayService(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(gateway.stop()))
        await gateway.run()

    try:
        asyncio.run(main())
    except ServiceFailed as exc:  # exit non-zero: systemd (Restart=always) starts us again
        log.critical("exiting with status 1: %s", exc)
        raise SystemExit(1) from None
