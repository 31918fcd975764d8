"""Supervision (issue 11, item 5): a dead or silent part stops the service non-zero, and `status` tells
the truth from the watchdog's heartbeat, not from the last recorded broker state."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from mcam import protocol
from typer.testing import CliRunner

from gateway.cli import gateway_app
from gateway.mqtt_link import MqttLink
from gateway.service import ServiceFailed, State, run_service
from gateway.settings import GatewaySettings
from gateway.subscriber import Ingestor
from mailcam.orchestration import gateway_connected
from tests.cloudkit import jpeg_bytes
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import Publisher, ServiceThread, wait_until
from tests.gateway.test_end_to_end import start_gateway

pytestmark = pytest.mark.slow


def status(data_dir) -> tuple[int, str]:
    result = CliRunner().invoke(gateway_app, ["status"], env={"MAILCAM_GATEWAY_DATA_DIR": str(data_dir)})
    return result.exit_code, result.output


def a_bug(self, messages, **options) -> None:
    raise RuntimeError("a bug in the ingest path")


def test_a_dying_ingest_thread_stops_the_service_and_status_says_so(tmp_path, cloud, mosquitto, monkeypatch):
    """Expected: the service fails fast (ServiceFailed) and `status` reports it. Before: the ingest thread
    died silently, the service stayed up and `status` kept printing "broker: connected"."""
    settings = GatewaySettings(data_dir=tmp_path / "gw", metrics_port=0, heartbeat_s=0.2,
                               **gateway_env(cloud, mosquitto))
    with ServiceThread(settings) as gateway:
        wait_until(lambda: gateway_connected(settings.db_path), 20, "gateway connected")
        code, out = status(settings.data_dir)
        assert code == 0 and "service:         running" in out, out
        monkeypatch.setattr(Ingestor, "commit_batch", a_bug)  # fault injection: a bug in our own code path
        device = Publisher(mosquitto.host, mosquitto.port)
        device.capture(cloud.serials[0], jpeg_bytes(seed=7))
        device.close()
        assert gateway.ended(30), "the service kept running without its ingest thread"
    assert isinstance(gateway.error, ServiceFailed), gateway.error
    assert "ingest thread" in str(gateway.error) and "a bug in the ingest path" in str(gateway.error)
    assert gateway.service.state is State.FAILED
    code, out = status(settings.data_dir)
    assert code == 3, out
    assert "NOT RUNNING: failed" in out and "broker:          unknown" in out


def test_status_of_a_killed_gateway_is_not_running(tmp_path, cloud, mosquitto, gateway_proc):
    """Expected: after SIGKILL `status` says the service does not run (exit 3). Before: it printed the
    last recorded "broker: connected" forever."""
    gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, heartbeat_s=0.2)
    wait_until(lambda: status(gw.data_dir)[0] == 0, 10, "status: running")
    gw.kill()
    code, out = wait_until(lambda: (r := status(gw.data_dir))[0] == 3 and r, 10, "status: not running")
    assert "NOT RUNNING: no heartbeat" in out
    assert "broker:          unknown (last recorded: connected)" in out


@pytest.mark.parametrize("waiting", [False, True], ids=["published-later", "waiting-at-the-broker"])
def test_run_service_exits_with_status_1_when_a_part_fails(tmp_path, cloud, mosquitto, monkeypatch, waiting):
    """Expected: `python -m gateway` exits 1 so that systemd restarts it. Before: it ran on, silent.

    With a message already waiting at the broker the service fails as soon as it subscribes, often
    before anyone sees it connected: the publishing thread must not outlive the test then (it used to
    wait out its 20 s and fail a later test)."""
    settings = GatewaySettings(data_dir=tmp_path / "gw", metrics_port=0, heartbeat_s=0.2,
                               **gateway_env(cloud, mosquitto))
    hit: list[int] = []

    def a_recorded_bug(self, messages, **options) -> None:
        hit.append(len(messages))
        a_bug(self, messages, **options)

    monkeypatch.setattr(Ingestor, "commit_batch", a_recorded_bug)
    serial = cloud.serials[1]
    if waiting:
        device = Publisher(mosquitto.host, mosquitto.port)
        device.publish(protocol.topic(serial, protocol.TELEMETRY), b'{"battery_v": 3.9}', retain=True)
        device.close()
    service_ended = threading.Event()

    def publish_once_connected() -> None:
        while not gateway_connected(settings.db_path):
            if service_ended.wait(0.05):
                return  # it failed before we saw it connected: nothing left to publish
        device = Publisher(mosquitto.host, mosquitto.port)
        device.capture(serial, jpeg_bytes(seed=8))
        device.close()

    publisher = threading.Thread(target=publish_once_connected, daemon=True)
    # if the service never fails, SIGTERM ends it cleanly after a while: the test then fails (no exit 1)
    safety = threading.Timer(60, os.kill, (os.getpid(), signal.SIGTERM))
    publisher.start()
    safety.start()
    try:
        with pytest.raises(SystemExit) as exited:
            run_service(settings)
    finally:
        safety.cancel()
        service_ended.set()
        publisher.join(10)
        if waiting:
            clear = Publisher(mosquitto.host, mosquitto.port)
            clear.publish(protocol.topic(serial, protocol.TELEMETRY), b"", retain=True)
            clear.close()
    assert exited.value.code == 1
    assert hit, "the service exited 1, but not through the injected fault"
    assert not publisher.is_alive(), "the publishing thread outlived the service"


def test_network_thread_watch_reads_pahos_thread(mosquitto):
    """The adapter reads paho's private `_thread`: this fails loudly if a paho upgrade changes it."""
    link = MqttLink(GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port,
                                    client_id="gw-watch-test"))
    link.start()
    try:
        assert link.connected.wait(10)
        assert link.network_alive()
        link.client.loop_stop()  # the network thread gone while the link should run
        assert not link.network_alive()
    finally:
        link.stop()
