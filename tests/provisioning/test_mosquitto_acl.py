"""The shipped broker config + generated logins and ACL, against a real Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcam import protocol

from provisioning import mosquitto as broker_auth
from tests.brokers import Mosquitto
from tests.gateway.kit import Publisher, chunks_of, fake_jpeg, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "gateway" / "deploy"
SKIP_KEYS = ("listener", "persistence", "autosave_interval", "persistence_location")


def shipped_conf(passwd: Path, acl: Path) -> str:
    """deploy/mosquitto.conf with the test's files, port and persistence (set by tests.brokers)."""
    lines = []
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        if line.startswith(SKIP_KEYS):
            continue
        line = line.replace("/etc/mosquitto/mailcam.passwd", str(passwd))
        lines.append(line.replace("/etc/mosquitto/mailcam.acl", str(acl)))
    return "\n".join(lines) + "\n"  # tests.brokers adds "user root" when run as root


@pytest.fixture
def secured(tmp_path):
    passwd, acl = tmp_path / "auth" / "mailcam.passwd", tmp_path / "auth" / "mailcam.acl"
    logins = {"devA": broker_auth.new_password(), "devB": broker_auth.new_password(),
              broker_auth.GATEWAY_USER: broker_auth.new_password(),
              broker_auth.HOMEASSISTANT_USER: broker_auth.new_password()}
    for user, password in logins.items():
        broker_auth.set_password(passwd, user, password)
    broker_auth.write_acl(acl)
    assert "devA" not in passwd.read_text().replace("devA:", "")  # hashed, no clear text
    assert logins["devA"] not in passwd.read_text()
    broker = Mosquitto(workdir=tmp_path / "broker", extra_conf=shipped_conf(passwd, acl)).start()
    yield broker, logins
    broker.stop()


def login(broker, logins, user: str) -> Publisher:
    return Publisher(broker.host, broker.port, username=user, password=logins[user])


def test_shipped_acl_is_the_generated_one():
    assert (DEPLOY / "mailcam.acl").read_text() == broker_auth.acl_text()


def test_device_publishes_only_as_itself(secured):
    broker, logins = secured
    gateway = login(broker, logins, broker_auth.GATEWAY_USER)
    gateway.subscribe("mailcam/#")
    device_a = login(broker, logins, "devA")
    try:
        _, forged = chunks_of(fake_jpeg(2000, seed=1), cid="forged")
        _, own = chunks_of(fake_jpeg(2000, seed=2), cid="own")
        device_a.publish(protocol.topic("devB", protocol.CAPTURE), forged[0])  # acked by the broker, then dropped
        device_a.publish(protocol.topic("devB", protocol.TELEMETRY), b"{}")
        device_a.publish(protocol.topic("devA", protocol.CMD), b"x", retain=True)  # devices cannot write cmd
        device_a.publish(protocol.topic("devA", protocol.CAPTURE), own[0])
        wait_until(lambda: any(m.topic.endswith("devA/capture") for m in gateway.received), 10, "devA's own capture")
        assert [m.topic for m in gateway.received] == ["mailcam/v1/devA/capture"]
    finally:
        device_a.close()
        gateway.close()


def test_device_reads_only_its_own_cmd(secured):
    broker, logins = secured
    gateway = login(broker, logins, broker_auth.GATEWAY_USER)
    gateway.publish(protocol.topic("devB", protocol.CMD), protocol.encode_cmd("trg_b", 2_000_000_000), retain=True)
    gateway.publish(protocol.topic("devA", protocol.CMD), protocol.encode_cmd("trg_a", 2_000_000_000), retain=True)
    gateway.close()
    device_a = login(broker, logins, "devA")
    try:
        device_a.subscribe("mailcam/v1/+/cmd")
        device_a.subscribe(protocol.topic("devB", protocol.CMD))
        device_a.subscribe(protocol.topic("devA", protocol.CMD))
        wait_until(lambda: device_a.received, 10, "devA's cmd")
        # the positive control arrived; the broker sends retained messages per subscription in order
        assert {protocol.decode_cmd(m.payload)["tid"] for m in device_a.received} == {"trg_a"}
    finally:
        device_a.close()


def test_wrong_password_and_anonymous_are_refused(secured):
    broker, logins = secured
    with pytest.raises(ConnectionError):
        Publisher(broker.host, broker.port, username="devA", password="wrong")
    with pytest.raises(ConnectionError):
        Publisher(broker.host, broker.port)


def test_device_reads_the_gateways_clock_and_cannot_forge_it(secured):
    broker, logins = secured
    gateway = login(broker, logins, broker_auth.GATEWAY_USER)
    gateway.publish(protocol.CLOCK_TOPIC, protocol.encode_clock(1_800_000_000, 30), retain=True)
    gateway.close()
    device_a = login(broker, logins, "devA")
    try:
        device_a.publish(protocol.CLOCK_TOPIC, protocol.encode_clock(1_900_000_000, 30), retain=True)  # dropped
        device_a.subscribe(protocol.CLOCK_TOPIC)
        wait_until(lambda: device_a.received, 10, "the retained clock")
        assert [protocol.decode_clock(m.payload)["t"] for m in device_a.received] == [1_800_000_000]
    finally:
        device_a.close()


def test_device_reads_only_its_own_settings(secured):
    broker, logins = secured
    gateway = login(broker, logins, broker_auth.GATEWAY_USER)
    gateway.publish(protocol.topic("devB", protocol.SETTINGS), protocol.encode_settings(1, {}), retain=True)
    gateway.publish(protocol.topic("devA", protocol.SETTINGS), protocol.encode_settings(2, {}), retain=True)
    gateway.close()
    device_a = login(broker, logins, "devA")
    try:
        device_a.subscribe(protocol.topic("devB", protocol.SETTINGS))
        device_a.subscribe(protocol.topic("devA", protocol.SETTINGS))
        wait_until(lambda: device_a.received, 10, "devA's settings")
        assert [protocol.decode_settings(m.payload)["ver"] for m in device_a.received] == [2]
    finally:
        device_a.close()


def test_home_assistant_reads_the_mailboxes_and_presses_only_the_photo_button(secured):
    broker, logins = secured
    gateway = login(broker, logins, broker_auth.GATEWAY_USER)
    gateway.publish("homeassistant/binary_sensor/devA/mail/config", b'{"name": "Mail"}', retain=True)
    gateway.publish("mailcam/ha/devA/mail", b"ON", retain=True)
    gateway.subscribe("mailcam/#")
    ha = login(broker, logins, broker_auth.HOMEASSISTANT_USER)
    device_a = login(broker, logins, "devA")
    try:
        ha.subscribe("homeassistant/#")
        ha.subscribe("mailcam/#")  # granted for mailcam/ha/# only: the devices' own topics stay private
        wait_until(lambda: len(ha.received) >= 2, 10, "discovery config and state")
        device_a.publish("mailcam/ha/devA/photo/press", b"PRESS")  # a device cannot press for itself: dropped
        device_a.publish(protocol.topic("devA", protocol.TELEMETRY), b"{}")  # not for Home Assistant's eyes
        ha.publish(protocol.topic("devA", protocol.CMD), b"x", retain=True)  # dropped: only the gateway commands
        ha.publish("mailcam/ha/devA/photo/press", b"PRESS")
        wait_until(lambda: any(m.topic.endswith("photo/press") for m in gateway.received), 10, "the press")
        assert [m.topic for m in gateway.received if m.topic != "mailcam/ha/devA/mail"] == [
            "mailcam/v1/devA/telemetry", "mailcam/ha/devA/photo/press"]
        assert {m.topic for m in ha.received} == {"homeassistant/binary_sensor/devA/mail/config",
                                                   "mailcam/ha/devA/mail", "mailcam/ha/devA/photo/press"}
    finally:
        device_a.close()
        ha.close()
        gateway.close()
