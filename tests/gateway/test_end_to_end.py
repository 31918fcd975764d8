"""The gateway as a subprocess between a real Mosquitto and the real cloud app."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from mcam import protocol

from tests.brokers import Mosquitto
from tests.cloudkit import jpeg_bytes
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import GatewayProcess, Publisher, fake_jpeg, wait_until

pytestmark = pytest.mark.slow


def start_gateway(tmp_path, cloud, broker, registry, name="gw", **extra) -> GatewayProcess:
    proc = GatewayProcess(tmp_path / name, env=gateway_env(cloud, broker, **extra))
    registry.append(proc)
    return proc.start()


def outbox_empty(gw: GatewayProcess) -> bool:
    return gw.read(lambda s: not s.pending(1))


@pytest.mark.parametrize("mqtt_process", ["on", "off"])
def test_captures_and_telemetry_reach_the_cloud(tmp_path, cloud, mosquitto, gateway_proc, mqtt_process):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, mqtt_process=mqtt_process)
    serial = cloud.serials[0]
    device = Publisher(mosquitto.host, mosquitto.port)
    try:
        cid = device.capture(serial, jpeg_bytes(seed=1), chunk_size=1024)
        device.telemetry(serial, bat=3650, rssi=-67, fw="1.4.2")
        device.publish(protocol.topic(serial, protocol.CAPTURE), b"garbage without header")
    finally:
        device.close()
    wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "capture in the cloud")
    wait_until(lambda: cloud.device(serial).last_battery_voltage == pytest.approx(3.65), 20, "battery in the cloud")
    d = cloud.device(serial)
    assert d.last_seen_at is not None
    assert d.firmware_version == "1.4.2"
    wait_until(lambda: outbox_empty(gw), 10, "empty outbox")
    letters = wait_until(lambda: gw.read(lambda s: s.dead_letters()), 10, "dead letter")
    assert [(x.reason, x.serial) for x in letters] == [("malformed_chunk", serial)]
    assert "garbage" not in gw.log()  # payload bytes never logged


def test_cloud_down_buffers_then_recovers_with_nothing_lost(tmp_path, cloud, mosquitto, gateway_proc):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    wait_until(lambda: gw.kv("cloud") == "reachable", 10, "device list loaded")
    cloud.down()
    device = Publisher(mosquitto.host, mosquitto.port)
    cids = []
    try:
        for k in range(6):
            serial = cloud.serials[k % 2]
            cids.append(device.capture(serial, jpeg_bytes(seed=20 + k), chunk_size=4096))
    finally:
        device.close()
    wait_until(lambda: gw.read(lambda s: s.outbox_stats()["depth"].get("capture")) == 6, 20, "6 queued captures")
    wait_until(lambda: gw.read(lambda s: s.counters().get("retried", 0)) >= 2, 20, "retries while the cloud is down")
    cloud.up()
    wait_until(lambda: all(cloud.capture_counts().get(c) == 1 for c in cids), 30, "every capture once")
    wait_until(lambda: outbox_empty(gw), 10, "empty outbox")
    assert set(cloud.capture_counts()) == set(cids)


@pytest.mark.parametrize("mqtt_process", ["on", "off"])
def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(tmp_path, cloud, mosquitto, gateway_proc,
                                                                 mqtt_process):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, ingest_batch_max=8, mqtt_process=mqtt_process)
    rounds, per_round = 4, 12
    restarted = [threading.Event() for _ in range(rounds)]
    cids: list[str] = []

    def publish() -> None:
        device = Publisher(mosquitto.host, mosquitto.port)
        try:
            for r in range(rounds):
                if r:
                    restarted[r - 1].wait(30)
                for k in range(per_round):
                    seed = 100 + r * per_round + k
                    cids.append(device.capture(cloud.serials[seed % 2], jpeg_bytes(seed=seed), chunk_size=1024))
        finally:
            device.close()

    publisher = threading.Thread(target=publish)
    publisher.start()
    for r in range(rounds - 1):
        target = r * per_round + 4
        wait_until(lambda: len(cids) >= target, 30, "publishing progress")  # noqa: B023
        gw.kill()  # while the device is still sending this round
        gw.start()
        restarted[r].set()
    publisher.join(60)
    assert len(cids) == rounds * per_round
    wait_until(lambda: len(cloud.capture_counts()) == len(cids), 60, "every capture in the cloud")
    counts = cloud.capture_counts()
    assert set(counts) == set(cids)
    assert set(counts.values()) == {1}
    wait_until(lambda: outbox_empty(gw), 10, "empty outbox")
    assert gw.read(lambda s: s.dead_letters()) == []


def test_broker_restart_is_survived(tmp_path, cloud, fresh_mosquitto, gateway_proc):
    gw = start_gateway(tmp_path, cloud, fresh_mosquitto, gateway_proc)
    serial = cloud.serials[0]
    device = Publisher(fresh_mosquitto.host, fresh_mosquitto.port)
    first = device.capture(serial, jpeg_bytes(seed=40))
    device.close()
    wait_until(lambda: cloud.capture_counts().get(first) == 1, 20, "first capture")
    fresh_mosquitto.restart()
    wait_until(lambda: gw.kv("broker") == "connected", 30, "gateway reconnected")
    device = Publisher(fresh_mosquitto.host, fresh_mosquitto.port)
    second = device.capture(serial, jpeg_bytes(seed=41))
    device.close()
    wait_until(lambda: cloud.capture_counts().get(second) == 1, 20, "second capture")


def test_messages_published_while_the_gateway_is_down_arrive(tmp_path, cloud, mosquitto, gateway_proc):
    """The persistent session: the broker keeps QoS 1 messages for the gateway's fixed client id."""
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    gw.stop()
    device = Publisher(mosquitto.host, mosquitto.port)
    cid = device.capture(cloud.serials[1], jpeg_bytes(seed=50))
    device.close()
    gw.start()
    wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "capture sent while the gateway was down")


def test_cloud_4xx_is_dead_lettered_with_the_cloud_reason(tmp_path, cloud, mosquitto, gateway_proc):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, validate_devices="false")
    device = Publisher(mosquitto.host, mosquitto.port)
    # A JPEG by markers only: the cloud refuses it for good. (A device the cloud does not know is held
    # instead, until it is claimed: tests/gateway/test_unclaimed.py.)
    bogus = device.capture(cloud.serials[1], fake_jpeg(3000, seed=60))
    good = device.capture(cloud.serials[0], jpeg_bytes(seed=61))
    device.close()
    wait_until(lambda: cloud.capture_counts().get(good) == 1, 20, "good capture")
    letters = wait_until(lambda: gw.read(lambda s: s.dead_letters()), 20, "dead letter")
    assert letters[0].key == bogus
    assert letters[0].reason.startswith("cloud_")
    assert letters[0].detail


def test_message_received_but_not_committed_is_redelivered_after_sigkill(tmp_path, cloud, gateway_proc):
    """The ack-after-commit rule: the gateway holds messages it cannot commit yet, unacknowledged.

    The test holds the store's write lock, so the gateway receives the chunks (the broker log shows
    them sent) but cannot commit; then it is killed. Had it acked on receipt (aiomqtt's behaviour)
    the broker would have forgotten them; with paho's manual ack the broker redelivers.
    """
    broker = Mosquitto(workdir=tmp_path / "broker", extra_conf="log_type all\n").start()
    try:
        gw = start_gateway(tmp_path, cloud, broker, gateway_proc)
        client_id = gw.env["client_id"]
        blocker = sqlite3.connect(gw.data_dir / "gateway.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        device = Publisher(broker.host, broker.port)
        cid = device.capture(cloud.serials[0], jpeg_bytes(seed=80), chunk_size=1024)
        device.close()
        log = broker.workdir / "mosquitto.log"
        wait_until(lambda: f"Sending PUBLISH to {client_id}" in log.read_text(errors="replace"), 10,
                   "broker sent the chunks to the gateway")
        gw.kill()
        blocker.execute("ROLLBACK")
        blocker.close()
        assert cloud.capture_counts().get(cid) is None
        gw.start()
        wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "redelivered capture in the cloud")
    finally:
        broker.stop()
