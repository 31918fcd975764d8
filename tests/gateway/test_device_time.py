"""Device time at the gateway: the retained clock it keeps for devices, and captures or telemetry
stamped by an unset device clock (2000-01-01) stored with the receive time and marked."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from mcam import protocol

from gateway.clock import ClockBeacon
from gateway.cloudformat import capture_body
from gateway.mqtt_link import MqttLink
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, TELEMETRY, Spool
from tests.firmware.conftest import Watcher
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg
from tests.gateway.test_ingest import CAP, feed, make_ingestor

UNSET = 946684800 + 42  # what an ESP32 RTC reads 42 s after a power loss


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def store(tmp_path, clock) -> Spool:
    s = Spool(tmp_path / "gw.db", clock=clock)
    s.replace_devices([("dev1", 3600)])
    yield s
    s.close()


def test_capture_from_an_unset_clock_gets_the_receive_time_and_is_marked(tmp_path, store, clock):
    """Expected: never a capture "taken" on 2000-01-01; the first chunk's receive time instead, marked
    time_uncertain for the cloud, also across a gateway restart in the middle of the capture."""
    image = fake_jpeg(9000, seed=21)
    cid, payloads = chunks_of(image, chunk_size=4096, ts=UNSET)
    first_seen = clock.now
    feed(make_ingestor(store), CAP, payloads[0])
    store.close()
    clock.now += 120
    reopened = Spool(tmp_path / "gw.db", clock=clock)
    try:
        for payload in payloads[1:]:
            feed(make_ingestor(reopened), CAP, payload)
        (item,) = reopened.pending(10)
        assert item.kind == CAPTURE and item.meta["ts"] == int(first_seen) and item.meta["time_uncertain"]
        body = capture_body("dev1", item.meta, image)
        assert body["timestamp"] == int(first_seen) and body["time_uncertain"] is True
    finally:
        reopened.close()


def test_capture_marked_by_the_device_is_marked_and_a_sane_one_is_kept(store, clock):
    marked = fake_jpeg(5000, seed=22)
    cid, payloads = chunks_of(marked, chunk_size=8192, ts=UNSET)
    payloads = [protocol.encode_chunk(cid, 0, 1, len(marked), protocol.decode_chunk(payloads[0])[0]["sha"],
                                      "automatic", None, UNSET, 3900, marked, tu=True)]
    sane_cid, sane = chunks_of(fake_jpeg(5000, seed=23), chunk_size=8192, ts=1_799_999_000)
    ingestor = make_ingestor(store)
    for payload in payloads + sane:
        feed(ingestor, CAP, payload)
    metas = {i.key: i.meta for i in store.pending(10)}
    assert (metas[cid]["ts"], metas[cid]["time_uncertain"]) == (int(clock.now), True)
    assert (metas[sane_cid]["ts"], metas[sane_cid]["time_uncertain"]) == (1_799_999_000, False)


def test_telemetry_from_an_unset_clock_gets_the_receive_time(store, clock):
    payload = protocol.encode_telemetry(ts=UNSET, bat=3900, rssi=-60, wake="power_on", awake_ms=None, fw="1.0.0",
                                        boot=1, err=None, pending=0, tu=True)
    feed(make_ingestor(store), protocol.topic("dev1", protocol.TELEMETRY), payload)
    (item,) = store.pending(10)
    assert item.kind == TELEMETRY and item.meta["timestamp"] == int(clock.now)


def test_own_clock_and_settings_echoes_are_ignored_not_dead_lettered(store):
    ingestor = make_ingestor(store)
    assert feed(ingestor, protocol.CLOCK_TOPIC, protocol.encode_clock(1_800_000_000, 30)) == "ignored"
    settings = protocol.encode_settings(2, {"wake_interval_s": 600})
    assert feed(ingestor, protocol.topic("dev1", protocol.SETTINGS), settings) == "ignored"
    assert store.dead_letters() == [] and store.pending(10) == []


def test_clock_is_retained_for_devices_and_cleared_when_the_gateway_goes(mosquitto):
    """A device subscribing later gets the retained clock; a clean stop clears it, and so does the
    gateway's will when its connection dies without a DISCONNECT (a stale clock would set devices back)."""
    settings = GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port,
                               client_id="gw-clock-" + uuid.uuid4().hex[:6])
    link = MqttLink(settings)
    link.start()
    watchers = []
    try:
        assert link.connected.wait(10)
        assert asyncio.run(ClockBeacon(link, every_s=30, now=lambda: 1_800_000_000).publish_once())
        late = Watcher(mosquitto, protocol.CLOCK_TOPIC)  # subscribes after the publish: gets the retained copy
        watchers.append(late)
        late.wait(lambda ms: any(m.retain and m.payload for m in ms))
        assert protocol.decode_clock(late.messages[0].payload) == {"v": 1, "t": 1_800_000_000, "every": 30}
        link.client.socket().close()  # the connection dies under paho: the broker sends our will
        late.wait(lambda ms: any(m.payload == b"" for m in ms))
        after_will = len(late.messages)
        deadline = time.monotonic() + 20
        while not asyncio.run(ClockBeacon(link, every_s=30).publish_once()):  # until paho reconnected
            assert time.monotonic() < deadline, "the clock was never published again"
            time.sleep(0.2)
        late.wait(lambda ms: any(m.payload for m in ms[after_will:]))
    finally:
        link.stop()
    late.wait(lambda ms: [m.payload for m in ms][-1] == b"")  # cleared by the clean stop
    for w in watchers:
        w.close()


def test_the_wake_reason_of_a_capture_reaches_the_cloud(store, clock):
    """A chunk's ``wake`` (door, timer, ...) becomes the capture's ``wake_reason`` at the cloud; a device
    that does not send one (older firmware) gives none, not a guess."""
    image = fake_jpeg(5000, seed=31)
    sha = protocol.decode_chunk(chunks_of(image, chunk_size=8192)[1][0])[0]["sha"]
    door = protocol.encode_chunk("door-1", 0, 1, len(image), sha, "automatic", None, 1_799_999_000, 3900, image,
                                 wake="door")
    old_image = fake_jpeg(5000, seed=32)
    old_cid, old = chunks_of(old_image, chunk_size=8192, ts=1_799_999_000)
    ingestor = make_ingestor(store)
    for payload in [door, *old]:
        feed(ingestor, CAP, payload)
    bodies = {i.key: capture_body("dev1", i.meta, b"") for i in store.pending(10)}
    assert bodies["door-1"]["wake_reason"] == "door"
    assert bodies[old_cid]["wake_reason"] is None
