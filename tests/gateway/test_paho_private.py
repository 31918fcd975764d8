"""The gateway's reach into paho-mqtt's private parts (gateway/paho_private.py) against the installed paho.

These fail loudly when a paho upgrade changes what the adapter relies on, instead of the gateway
quietly losing its batched PUBACKs or its network-thread watch.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import paho_private


def _client() -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, client_id="paho-private-test", manual_ack=True)


def test_installed_paho_still_takes_a_batch_of_pubacks_as_one_write():
    client = _client()
    write = paho_private.puback_writer(client)
    assert write is not None, "paho changed Client._packet_queue: update gateway/paho_private.py"
    write([1, 2, 300])
    [queued] = list(client._out_packet)
    assert bytes(queued["packet"]) == b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\x01\x2c"


def _with_priority(self, command, packet, mid, qos, info=None, *, priority=0):
    raise AssertionError("must not be called with the old signature")


def _with_options(self, command, packet, mid, qos, info=None, **options):
    raise AssertionError("must not be called with the old signature")


def _renamed(self, command, payload, mid, qos, info=None):
    raise AssertionError("must not be called with the old signature")


@pytest.mark.parametrize("changed", [_with_priority, _with_options, _renamed])
def test_a_changed_packet_queue_falls_back_to_public_acks_and_says_so(caplog, changed):
    class Upgraded(paho.Client):
        _packet_queue = changed

    client = Upgraded(CallbackAPIVersion.VERSION2, client_id="paho-upgraded", manual_ack=True)
    with caplog.at_level(logging.ERROR, logger="mailcam.gateway.paho"):
        assert paho_private.puback_writer(client) is None
    assert "changed Client._packet_queue" in caplog.text


def test_raw_topic_keeps_the_bytes_a_device_sent():
    message = paho.MQTTMessage(mid=1, topic=b"mailcam/v1/\xff/capture")
    assert paho_private.raw_topic(message) == b"mailcam/v1/\xff/capture"


def test_network_thread_is_what_loop_start_started():
    client = _client()
    assert paho_private.network_thread(client) is None
    client.loop_start()
    try:
        thread = paho_private.network_thread(client)
        assert thread is not None and thread.is_alive()
    finally:
        client.loop_stop()
    assert paho_private.network_thread(client) is None
