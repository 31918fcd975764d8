"""The gateway's MQTT connection: paho-mqtt 2.x, persistent session, manual acknowledgement.

Why paho and not aiomqtt: aiomqtt 2.5 sends the PUBACK of a QoS 1 message as soon as it arrives,
before our code sees it (and drops messages from a full queue after acking them). paho 2.x has
``manual_ack=True`` + ``client.ack(mid, qos)``: the broker keeps a message until we say so, and
redelivers it on the next connection of our persistent session (fixed client id, clean session off)
if we never do. A kill -9 between receipt and commit therefore loses nothing.

paho's network loop runs in its own thread (``loop_start``) and only appends each message to the
bounded `Inbox`. The number of unacked messages is bounded by the broker's in-flight window
(mosquitto ``max_inflight_messages``), so the inbox is bounded too.

A message id (mid) is only meaningful on the connection it arrived on: each message carries the
connection generation, and an ack for an older generation is skipped (the broker redelivers that
message and the store ignores the repeat).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from mcam import protocol
from paho.mqtt.enums import CallbackAPIVersion

from gateway import paho_private
from gateway.inbox import AckId, Inbox, Incoming

log = logging.getLogger("mailcam.gateway.ingest")  # the logger keeps its name: operators filter on it

# Every device's topics (mailcam/v1/<serial>/<kind>), not our own retained clock (mailcam/v1/clock):
# echoes of it every few seconds, queued in our persistent session while we are away, would be noise.
SUBSCRIPTION = "mailcam/v1/+/+"


class MqttLink:
    """The gateway's one MQTT connection: persistent session, manual acks, auto-reconnect."""

    def __init__(self, settings: Any, *, on_state: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        # Bounded: when the ingest thread falls behind, paho's thread blocks here and stops reading the
        # socket, so TCP pushes back on the broker (mosquitto does not always honour its in-flight
        # window when it replays a backlog to a returning persistent session).
        self.inbox = Inbox(2 * settings.ingest_batch_max)
        self.closing = False
        self.connected = threading.Event()
        self.on_state = on_state
        self.generation = 0
        self._ack_lock = threading.Lock()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if settings.broker_username:
            password = settings.broker_password.get_secret_value() if settings.broker_password else None
            client.username_pw_set(settings.broker_username, password)
        # If we vanish, the broker clears the retained clock: a stale one would set devices back in time
        client.will_set(protocol.CLOCK_TOPIC, b"", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self._write_pubacks = paho_private.puback_writer(client)

    # paho thread ------------------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self.generation += 1
        client.subscribe(SUBSCRIPTION, qos=1)
        log.info("connected to broker %s:%s (session present: %s)", self.settings.broker_host,
                 self.settings.broker_port, getattr(flags, "session_present", None))
        self.connected.set()
        if self.on_state:
            self.on_state(True)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       props: object) -> None:
        with self._ack_lock:
            self.generation += 1
        if self.connected.is_set():
            (log.info if self.closing else log.warning)("disconnected from broker: %s", reason)
        self.connected.clear()
        if self.on_state:
            self.on_state(False)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        item = Incoming(self.generation, message.mid, message.qos, paho_private.raw_topic(message), message.payload)
        while not self.closing:  # while closing, drop it unacked: the broker redelivers it
            if self.inbox.put(item, timeout=0.5):
                return

    # callers ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.closing = False
        self.client.connect_async(self.settings.broker_host, self.settings.broker_port, self.settings.keepalive_s)
        self.client.loop_start()

    def network_alive(self) -> bool:
        """False if paho's network thread died while it should be running (a bug in a callback).

        paho has no public way to ask (see ``gateway.paho_private``).
        """
        if self.closing:
            return True
        thread = paho_private.network_thread(self.client)
        return thread is not None and thread.is_alive()

    def drain(self) -> None:
        """Forget queued messages (unacked: the broker redelivers them)."""
        self.inbox.clear()

    def stop(self) -> None:
        """Disconnect and stop paho's thread; what was not committed stays unacked."""
        if self.connected.is_set():  # a clean disconnect skips our will: clear the clock ourselves
            self.publish(protocol.CLOCK_TOPIC, b"", retain=True, timeout_s=2.0)
        self.closing = True
        self.drain()
        self.client.disconnect()
        self.client.loop_stop()
        self.drain()

    def close(self) -> None:
        """Stop (as `stop`): the connection lives in this process, nothing more to end."""
        self.stop()

    def ack(self, messages: list[Incoming]) -> int:
        """PUBACK the messages of the current connection; returns how many were acked."""
        return self.ack_ids([m.ack_id for m in messages])

    def ack_ids(self, ids: list[AckId]) -> int:
        """PUBACK these (generation, mid, qos) of the current connection; returns how many were acked.

        The QoS 1 PUBACKs of a batch go out as one write (one queued buffer of back-to-back 4-byte
        packets, one wake-up of paho's thread) instead of one per message; anything else (QoS 2, or a
        paho whose internals changed: ``gateway.paho_private``) goes through `client.ack` one by one.
        """
        with self._ack_lock:
            generation = self.generation
            current = [(mid, qos) for g, mid, qos in ids if g == generation and qos > 0]
            if self._write_pubacks is None:
                others = current
            else:
                mids = [mid for mid, qos in current if qos == 1]
                if mids:
                    self._write_pubacks(mids)
                others = [(mid, qos) for mid, qos in current if qos != 1]
            for mid, qos in others:
                self.client.ack(mid, qos)
        return len(current)

    def publish_qos0(self, topic: str, payload: bytes) -> bool:
        """Publish QoS 0 without waiting (firmware chunks: a lost one is asked for again)."""
        return self.client.publish(topic, payload, qos=0).rc == paho.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, *, retain: bool, timeout_s: float = 10.0) -> bool:
        """Publish QoS 1 and wait for the broker's PUBACK (blocking; call from a worker thread); False if
        that did not happen within `timeout_s`, the wait for a connection included.

        Not connected (yet): wait for the connection first. paho would queue the message, send it once
        connected and still report a failure now, so the caller would publish it again.
        """
        deadline = time.monotonic() + timeout_s
        if not self.connected.wait(timeout_s):
            return False
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
