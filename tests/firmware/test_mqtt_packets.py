"""MQTT 3.1.1 packets byte for byte against the specification's layouts."""

from __future__ import annotations

import pytest
from mcam import mqtt


@pytest.mark.parametrize("n,encoded", [  # §2.2.3 table 2.4 boundaries
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length(n, encoded):
    assert mqtt.encode_remaining_length(n) == encoded


def test_remaining_length_out_of_range():
    with pytest.raises(mqtt.MQTTError):
        mqtt.encode_remaining_length(268435456)


def test_connect_minimal_persistent_session():
    # §3.1: 0x10, len, "MQTT", level 4, flags 0 (clean session 0), keepalive 60, client id "dev"
    assert mqtt.connect_packet("dev", 60, clean_session=False) == (
        b"\x10\x0f" b"\x00\x04MQTT" b"\x04" b"\x00" b"\x00\x3c" b"\x00\x03dev")


def test_connect_with_will_and_credentials():
    pkt = mqtt.connect_packet("d1", 30, clean_session=False, user="u", password="pw",
                              will_topic="t/s", will_msg=b"lost", will_qos=1, will_retain=False)
    # flags: user 0x80 | password 0x40 | will QoS 1 (0x08) | will flag 0x04
    body = (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x08 | 0x04]) + b"\x00\x1e" + b"\x00\x02d1"
            + b"\x00\x03t/s" + b"\x00\x04lost" + b"\x00\x01u" + b"\x00\x02pw")
    assert pkt == b"\x10" + bytes([len(body)]) + body


def test_connect_clean_session_and_will_retain_bits():
    pkt = mqtt.connect_packet("x", 0, clean_session=True, will_topic="a", will_msg=b"", will_retain=True)
    assert pkt[9] == 0x02 | 0x04 | 0x20


def test_connect_refuses_password_without_user():
    with pytest.raises(mqtt.MQTTError):
        mqtt.connect_packet("x", password="pw")


def test_publish_qos0_and_qos1_with_dup():
    assert mqtt.publish_header("a/b", 2, qos=0) + b"hi" == b"\x30\x07\x00\x03a/bhi"
    assert mqtt.publish_header("a/b", 2, qos=1, pid=0x1234, retain=True) == b"\x33\x09\x00\x03a/b\x12\x34"
    assert mqtt.publish_header("a/b", 2, qos=1, pid=1, dup=True)[0] == 0x3A
    with pytest.raises(mqtt.MQTTError):
        mqtt.publish_header("a/b", 2, qos=0, dup=True)  # §3.3.1.1
    with pytest.raises(mqtt.MQTTError):
        mqtt.publish_header("a/b", 2, qos=1, pid=0)  # §2.3.1 non-zero packet id


def test_publish_large_payload_uses_multibyte_length():
    hdr = mqtt.publish_header("t", 4096, qos=1, pid=7)
    assert hdr == b"\x32" + mqtt.encode_remaining_length(2 + 1 + 2 + 4096) + b"\x00\x01t\x00\x07"


def test_subscribe_puback_ping_disconnect():
    # §3.8.1: SUBSCRIBE fixed header 0x82; pid, topic filter, requested QoS
    assert mqtt.subscribe_packet(10, "m/c", 1) == b"\x82\x08\x00\x0a\x00\x03m/c\x01"
    assert mqtt.puback_packet(0xBEEF) == b"\x40\x02\xbe\xef"  # §3.4
    assert mqtt.PINGREQ_PACKET == b"\xc0\x00"  # §3.12
    assert mqtt.DISCONNECT_PACKET == b"\xe0\x00"  # §3.14


def test_client_against_broker_qos1_retained_and_ping(mosquitto):
    """The client's own I/O path under CPython: CONNACK, SUBACK + retained delivery, PUBACK, PINGRESP."""
    import uuid

    topic = "t/" + uuid.uuid4().hex
    got = []
    c = mqtt.MQTTClient("c-" + uuid.uuid4().hex[:8], mosquitto.host, mosquitto.port, timeout_ms=3000)
    c.set_callback(lambda t, m, retained, dup: got.append((t, m, retained)))
    assert c.connect(clean_session=True) is False
    c.publish(topic, b"kept", qos=1, retain=True, pid=1)
    c.subscribe(topic, 1, pid=2)
    c.wait_acks()
    c.check_msg(wait_ms=1000)
    c.ping()
    c.disconnect()
    assert (topic.encode(), b"kept", True) in got and c.granted[2] == [1]
