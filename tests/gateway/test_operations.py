"""Bounded outbox, metrics, `mailcam gateway status`, and the in-process Python API."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import gateway_app
from gateway.service import GatewayService, State
from gateway.settings import GatewaySettings
from tests.brokers import free_port
from tests.cloudkit import jpeg_bytes
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import Publisher, wait_until
from tests.gateway.test_end_to_end import outbox_empty, start_gateway

pytestmark = pytest.mark.slow


def metrics(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_full_outbox_drops_telemetry_first_pauses_ingest_and_keeps_every_capture(
    tmp_path, cloud, mosquitto, gateway_proc
):
    port = free_port()
    cloud.down()
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, outbox_max_bytes=20_000, metrics_port=port,
                       ingest_batch_max=1)
    device = Publisher(mosquitto.host, mosquitto.port)
    serial = cloud.serials[0]
    try:
        for ts in range(1, 6):
            device.telemetry(serial, ts=ts)
        cids = [device.capture(serial, jpeg_bytes(seed=s)) for s in range(8)]
    finally:
        device.close()
    wait_until(lambda: gw.kv("ingest_paused") == "1", 20, "ingest paused")
    text = metrics(port)
    assert "mailcam_gateway_ingest_paused 1.0" in text
    assert "mailcam_gateway_broker_connected 0.0" in text
    counters = gw.read(lambda s: s.counters())
    assert counters["dropped_telemetry"] >= 1
    assert "INGEST PAUSED" in CliRunner().invoke(gateway_app, ["status"], env={
        "MAILCAM_GATEWAY_DATA_DIR": str(gw.data_dir)}).output
    assert "outbox full" in gw.log()

    cloud.up()
    wait_until(lambda: all(cloud.capture_counts().get(c) == 1 for c in cids), 40, "every capture once")
    wait_until(lambda: gw.kv("ingest_paused") == "0" and gw.kv("broker") == "connected", 20, "ingest resumed")
    wait_until(lambda: outbox_empty(gw), 20, "empty outbox")
    assert gw.read(lambda s: s.dead_letters()) == []
    assert 'mailcam_gateway_forwarded_total{kind="capture"} 8.0' in metrics(port)


def test_status_prints_what_a_person_needs(tmp_path, cloud, mosquitto, gateway_proc):
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc)
    device = Publisher(mosquitto.host, mosquitto.port)
    try:
        cid = device.capture(cloud.serials[0], jpeg_bytes(seed=90))
        device.publish("mailcam/v1/bad topic/capture", b"xyz")
    finally:
        device.close()
    wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "capture forwarded")
    wait_until(lambda: gw.read(lambda s: s.dead_letters()), 10, "dead letter")
    wait_until(lambda: outbox_empty(gw), 10, "the gateway recorded the cloud's answer")
    result = CliRunner().invoke(gateway_app, ["status"], env={"MAILCAM_GATEWAY_DATA_DIR": str(gw.data_dir)})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "broker:          connected" in out
    assert "forwarded:       capture 1" in out
    assert "bad_topic" in out
    as_json = CliRunner().invoke(gateway_app, ["status", "--json"], env={"MAILCAM_GATEWAY_DATA_DIR": str(gw.data_dir)})
    assert '"dead_letters": 1' in as_json.output


def test_status_without_a_store_says_so(tmp_path):
    result = CliRunner().invoke(gateway_app, ["status"], env={"MAILCAM_GATEWAY_DATA_DIR": str(tmp_path / "none")})
    assert result.exit_code == 1


def test_gateway_runs_in_process_and_stops(tmp_path, cloud, mosquitto):
    env = gateway_env(cloud, mosquitto)
    settings = GatewaySettings(data_dir=tmp_path / "inproc", metrics_port=0, **env)
    gateway = GatewayService(settings)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(gateway.run(),))
    runner.start()
    try:
        wait_until(lambda: gateway.store is not None and gateway.store.get_kv("broker") == "connected", 20,
                   "in-process gateway connected")
        device = Publisher(mosquitto.host, mosquitto.port)
        cid = device.capture(cloud.serials[1], jpeg_bytes(seed=95))
        device.close()
        wait_until(lambda: cloud.capture_counts().get(cid) == 1, 20, "capture forwarded")
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop)
        runner.join(30)
        loop.close()
    assert gateway.state is State.STOPPED
