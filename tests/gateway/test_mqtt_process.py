"""The MQTT connection in a child process (`gateway.mqtt_process.ProcessLink`): messages in, acks out,
publishes through it, and no process outliving or silently losing the other (real Mosquitto)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcam import protocol

from gateway import mqtt_process
from gateway.mqtt_link import MqttLink
from gateway.mqtt_process import Channel, ProcessLink, link_for, wants_process
from gateway.service import ServiceFailed
from gateway.settings import GatewaySettings
from hil_tests.boards import Watcher
from mailcam.orchestration import gateway_connected
from tests.brokers import Mosquitto
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import REPO, Publisher, ServiceThread, subscribed, wait_until


def _settings(mosquitto, tmp_path, **extra) -> GatewaySettings:
    return GatewaySettings(broker_host=mosquitto.host, broker_port=mosquitto.port, data_dir=tmp_path,
                           client_id=f"gw-proc-{uuid.uuid4().hex[:8]}", **extra)


@contextmanager
def _connected_link(settings: GatewaySettings) -> Iterator[ProcessLink]:
    """A started `ProcessLink` whose child is connected; closed (child ended) on leaving."""
    link = ProcessLink(settings)
    link.start()
    try:
        assert link.connected.wait(10)
        yield link
    finally:
        link.close()


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (it runs no code either way)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_a_retained_publish_and_a_qos0_publish_go_out_through_the_child(tmp_path, fresh_mosquitto):
    mosquitto = fresh_mosquitto
    with _connected_link(_settings(mosquitto, tmp_path)) as link:
        assert link.publish("mailcam/v1/dev1/cmd", b"retained", retain=True)
        listener = Watcher(mosquitto, "mailcam/v1/dev1/+")
        try:
            listener.wait(lambda messages: len(messages) == 1, 10)  # the retained one
            assert link.publish_qos0("mailcam/v1/dev1/fw", b"chunk")
            listener.wait(lambda messages: len(messages) == 2, 10)
        finally:
            listener.close()
    got = [(m.topic, m.payload, bool(m.retain)) for m in listener.messages]
    assert got == [("mailcam/v1/dev1/cmd", b"retained", True), ("mailcam/v1/dev1/fw", b"chunk", False)]


def test_the_child_ends_when_the_gateway_is_killed(tmp_path, mosquitto):
    """A gateway killed with SIGKILL cannot tell its child to go: the child must notice on its own."""
    script = textwrap.dedent(f"""
        import sys, time
        from gateway.mqtt_process import ProcessLink
        from gateway.settings import GatewaySettings
        link = ProcessLink(GatewaySettings(broker_host={mosquitto.host!r}, broker_port={mosquitto.port},
                                           client_id="gw-orphan-{uuid.uuid4().hex[:8]}"))
        link.start()
        assert link.connected.wait(10)
        print(link._process.pid, flush=True)
        time.sleep(60)
    """)
    gateway = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = int(gateway.stdout.readline())
        assert not _exited(child)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        wait_until(lambda: _exited(child), 10, "the orphaned MQTT process to end")
    finally:
        gateway.kill()
        gateway.wait()


def test_a_killed_child_fails_the_service(tmp_path, cloud, mosquitto):
    """The broker then redelivers whatever was unacked to the restarted gateway; a gateway that went on
    without its connection would silently receive nothing."""
    settings = GatewaySettings(data_dir=tmp_path / "gw", metrics_port=0, heartbeat_s=0.2, mqtt_process="on",
                               **gateway_env(cloud, mosquitto))
    with ServiceThread(settings) as gateway:
        wait_until(lambda: gateway_connected(settings.db_path), 20, "gateway connected")
        children = [pid for task in Path(f"/proc/{os.getpid()}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        mqtt_children = [int(pid) for pid in children
                         if b"gateway.mqtt_process" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(mqtt_children) == 1
        os.kill(mqtt_children[0], signal.SIGKILL)
        assert gateway.ended(30), "the service kept running without its MQTT connection"
    assert isinstance(gateway.error, ServiceFailed), gateway.error
    assert "MQTT connection died" in str(gateway.error)


def test_stop_then_start_again_keeps_one_child_and_receives_again(tmp_path, fresh_mosquitto):
    """The ingest thread pauses (outbox full) by stopping the link and resumes by starting it."""
    mosquitto = fresh_mosquitto
    with _connected_link(_settings(mosquitto, tmp_path)) as link:
        child = link._process.pid
        link.stop()
        wait_until(lambda: not link.connected.is_set(), 10, "disconnected")
        link.start()
        assert link.connected.wait(10)
        wait_until(lambda: subscribed(link), 10, "subscription")
        publisher = Publisher(mosquitto.host, mosquitto.port)
        publisher.publish(protocol.topic("dev1", protocol.STATUS), b"online")
        publisher.close()
        batch = wait_until(lambda: link.inbox.get_batch(10, timeout=0.1), 10, "the message")
        assert [m.payload for m in batch] == [b"online"]
        assert link._process.pid == child
    assert _exited(child)


@pytest.mark.parametrize(("setting", "cores", "expected"), [
    ("auto", {0, 1}, True), ("auto", {0}, False), ("on", {0}, True), ("off", {0, 1}, False),
])
def test_the_connection_gets_a_process_of_its_own_only_where_a_second_core_can_run_it(
        monkeypatch, setting, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert wants_process(setting) is expected
    link = link_for(GatewaySettings(mqtt_process=setting))
    assert isinstance(link, ProcessLink if expected else MqttLink)
    assert mqtt_process.ProcessLink is ProcessLink


@pytest.mark.parametrize("link_class", [MqttLink, ProcessLink], ids=["in-process", "child-process"])
def test_a_publish_right_after_start_waits_for_the_connection_and_goes_out_once(tmp_path, fresh_mosquitto,
                                                                                link_class):
    """The gateway publishes retained settings as soon as it has the device list, possibly before its
    connection is up. paho then queues the message but reports failure, the caller retries, and the
    device got the same settings twice (found with the MQTT process, whose start takes longer)."""
    mosquitto = fresh_mosquitto
    link = link_class(_settings(mosquitto, tmp_path))
    link.start()
    try:
        assert link.publish("mailcam/v1/dev1/settings", b"ver 1", retain=True)
    finally:
        link.close()
    listener = Watcher(mosquitto, "mailcam/v1/dev1/settings")
    try:
        listener.wait(lambda messages: len(messages) >= 1, 10)
    finally:
        listener.close()
    got = [m.payload for m in listener.messages]
    assert got == [b"ver 1"]


def test_the_socket_pair_carries_messages_of_every_size_in_order_then_ends():
    """The channel between the two processes: a frame of 64 4 KB chunks, a big publish (beyond the
    buffer it keeps), tiny acks, in order, whole; the other end closing ends the reader with EOFError,
    which is how the child notices a killed gateway."""
    ours, theirs = socket.socketpair()
    sender, receiver = Channel(ours), Channel(theirs)
    chunk = bytes(range(256)) * 16
    frame = ("msgs", [(1, mid, 1, b"mailcam/v1/dev1/capture", chunk) for mid in range(64)])
    big = ("publish", 7, "mailcam/v1/dev1/ota", os.urandom(3 * Channel.KEEP), 1, False, 10.0)
    messages = [("ack", [(1, 2, 1)]), frame, big, ("state", True), frame, ("exit",)]
    writer = threading.Thread(target=lambda: [sender.send(m) for m in messages])
    writer.start()
    try:
        assert [receiver.recv() for _ in messages] == messages
    finally:
        writer.join(10)
    sender.close()
    with pytest.raises(EOFError):
        receiver.recv()
    receiver.close()


def _loaded_modules(link: ProcessLink, tmp_path: Path) -> set[str]:
    """The modules the child of `link` has loaded (asked for by SIGUSR1: see the test below)."""
    listing = tmp_path / f"modules-{link._process.pid}"
    os.kill(link._process.pid, signal.SIGUSR1)
    wait_until(lambda: listing.exists() and listing.read_text().endswith("\n.\n"), 10, "the module listing")
    return set(listing.read_text().split("\n")[:-2])


BACKLOG = 2000


def test_the_mqtt_process_loads_no_http_or_multiprocessing_code(tmp_path, monkeypatch, request):
    """Memory (issue 18: the gateway within 60 MB on a 512 MB Pi): the child runs paho alone. paho
    imports urllib.request (with http.client and email) only for a proxy lookup that needs PySocks;
    multiprocessing served only for framing, inspect for one signature check, subprocess and
    concurrent.futures only the gateway's side, pickle.py's pure-Python pickler nobody: ~4 MB of the
    child's private memory. It still connects, drains a backlog, acks and publishes."""
    # the shipped in-flight window (deploy/mosquitto.conf): a backlog comes as fast as the broker sends
    mosquitto = Mosquitto(workdir=tmp_path / "mosquitto", extra_conf="max_inflight_messages 1000\n").start()
    request.addfinalizer(mosquitto.stop)
    listing = tmp_path / "modules-"
    monkeypatch.setattr(mqtt_process, "CHILD_CODE", textwrap.dedent(f"""
        import signal, sys
        def listing(*_):
            loaded = [name for name, module in sys.modules.items() if module is not None]
            with open({str(listing)!r} + str(__import__("os").getpid()), "w") as f:
                f.write("\\n".join(loaded) + "\\n.\\n")
        signal.signal(signal.SIGUSR1, listing)
    """) + mqtt_process.CHILD_CODE)
    received: list[bytes] = []
    with _connected_link(_settings(mosquitto, tmp_path)) as link:
        wait_until(lambda: subscribed(link), 10, "subscription")
        link.stop()  # the broker keeps what comes meanwhile for our session, and floods us with it on return
        wait_until(lambda: not link.connected.is_set(), 10, "disconnected")
        publisher = Publisher(mosquitto.host, mosquitto.port)
        topic = protocol.topic("dev1", protocol.CAPTURE)
        sent = [publisher.client.publish(topic, b"%04d" % k + bytes(4092), qos=1) for k in range(BACKLOG)]
        for info in sent:
            info.wait_for_publish(10)
        publisher.close()
        link.start()

        def take() -> int:
            batch = link.inbox.get_batch(256, timeout=0.1)
            assert link.ack(batch) == len(batch)
            received.extend(m.payload[:4] for m in batch)
            return len(received)

        wait_until(lambda: take() >= BACKLOG, 30, "the backlog through the child")
        assert link.network_alive()
        modules = _loaded_modules(link, tmp_path)
    assert received == [b"%04d" % k for k in range(BACKLOG)]
    assert "paho.mqtt.client" in modules
    unused = {"http.client", "email", "multiprocessing", "inspect", "subprocess", "concurrent.futures", "pickle"}
    assert not unused & modules


def _ignored_signals(pid: int) -> set[int]:
    mask = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("SigIgn:")), 16)
    return {sig for sig in range(1, 64) if mask & (1 << (sig - 1))}


def test_stopping_the_whole_process_group_stops_the_gateway_cleanly(tmp_path, cloud, mosquitto):
    """systemd's stop (SIGTERM to every process of the unit) and Ctrl-C (SIGINT to the terminal's
    process group) reach the child too. It must leave its ending to the gateway, which acks what it
    committed and closes it; a child that died at once made the gateway fail its own clean stop."""
    env = dict(os.environ, MAILCAM_GATEWAY_DATA_DIR=str(tmp_path / "gw"), MAILCAM_GATEWAY_METRICS_PORT="0",
               MAILCAM_GATEWAY_MQTT_PROCESS="on", MAILCAM_GATEWAY_HEARTBEAT_S="0.05",
               **{f"MAILCAM_GATEWAY_{k.upper()}": v for k, v in gateway_env(cloud, mosquitto).items()})
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: gateway_connected(tmp_path / "gw" / "gateway.db"), 20, "gateway connected")
        children = [int(pid) for task in Path(f"/proc/{gateway.pid}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        assert len(children) == 1
        assert {signal.SIGTERM, signal.SIGINT} <= _ignored_signals(children[0])
        os.killpg(gateway.pid, signal.SIGTERM)
        out, _ = gateway.communicate(timeout=30)
        assert gateway.returncode == 0, out.decode(errors="replace")[-3000:]
        wait_until(lambda: _exited(children[0]), 10, "the MQTT process to end")
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
