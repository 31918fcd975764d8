"""Every reach into paho-mqtt's private parts, in one place.

paho 2.x has no public way to do three things the gateway needs:

- read a message's topic as bytes: ``MQTTMessage.topic`` decodes UTF-8 and raises on a device's
  malformed topic, which must become a dead letter, not a crash (``raw_topic``);
- queue a batch of PUBACKs as one write: ``client.ack`` queues one packet and wakes the network
  thread per message, the cost bench/gateway_throughput.py measured (``puback_writer``);
- tell whether its network thread is still alive (``network_thread``).

``puback_writer`` checks the private method's signature once, when the link is built. If an
upgrade changed it, the gateway logs an error and acks through the public ``client.ack`` (slower,
still correct) instead of raising inside the ingest thread. tests/gateway/test_paho_private.py
fails loudly on such an upgrade, so the fast path is never lost unnoticed.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION

log = logging.getLogger("mailcam.gateway.paho")

# paho 2.2: Client._packet_queue(self, command, packet, mid, qos, info=None)
PACKET_QUEUE_PARAMETERS = ("command", "packet", "mid", "qos", "info")
PUBACK = 0x40  # MQTT 3.1.1 §3.4: control packet type 4; remaining length 2 (the packet id)
_PUBACK = struct.Struct("!BBH")
CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08  # code object flags (CPython's Include/cpython/code.h)


def raw_topic(message: paho.MQTTMessage) -> bytes | str:
    """The topic as it came off the wire (bytes), undecoded."""
    return message._topic


def puback_writer(client: paho.Client) -> Callable[[list[int]], None] | None:
    """A function that queues the QoS 1 PUBACKs of these packet ids as one write; None if paho changed."""
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or _parameters(queue_packet) != PACKET_QUEUE_PARAMETERS:
        log.error("paho-mqtt %s changed Client._packet_queue: PUBACKs go one by one through client.ack",
                  PAHO_VERSION)
        return None

    def write(mids: list[int]) -> None:
        pack = _PUBACK.pack
        queue_packet(PUBACK, b"".join([pack(PUBACK, 2, mid) for mid in mids]), 0, 1)

    return write


def _parameters(method: Callable) -> tuple[str, ...] | None:
    """A Python method's parameter names after ``self``, as ``inspect.signature`` lists them (not used:
    it would load inspect and the ast modules into the MQTT process, ~0.7 MB); None if not Python code."""
    code = getattr(method, "__code__", None)
    if code is None:
        return None
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & CO_VARARGS) + bool(code.co_flags & CO_VARKEYWORDS)  # *args, **kwargs
    return code.co_varnames[1:count]


def network_thread(client: paho.Client) -> threading.Thread | None:
    """The thread ``loop_start`` started (None before it, or after ``loop_stop``)."""
    return client._thread
