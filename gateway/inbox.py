"""The hand-over of MQTT messages to the ingest thread, and what a connection must offer (`Link`).

No paho here: the gateway's main process imports this, while its MQTT connection may live in another
process (`gateway.mqtt_process`).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

AckId = tuple[int, int, int]  # (connection generation, mid, qos) of a message to acknowledge


class Incoming(NamedTuple):
    generation: int
    mid: int
    qos: int
    topic: bytes
    payload: bytes

    @property
    def ack_id(self) -> AckId:
        return (self.generation, self.mid, self.qos)


class Inbox:
    """Bounded hand-over from paho's thread to the ingest thread; the consumer takes a batch at once.

    Cheaper per message than `queue.Queue` (one lock round per put, one per batch taken). When full,
    `put` blocks, so paho's thread stops reading the socket and TCP pushes back on the broker.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: collections.deque[Incoming] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._getters = 0
        self._putters = 0
        self._wanted = 1  # items the waiting consumer needs before it is worth waking

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Incoming, timeout: float) -> bool:
        """Append `item`; False if still full after `timeout` seconds."""
        return self.put_many((item,), timeout)

    def put_many(self, items: Sequence[Incoming], timeout: float) -> bool:
        """Append all of `items` (may go over `maxsize` by one frame); False if still full after `timeout`."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._putters += 1
                try:
                    if not self._cond.wait_for(lambda: len(self._items) < self.maxsize, timeout):
                        return False
                finally:
                    self._putters -= 1
            self._items.extend(items)
            if self._getters and len(self._items) >= self._wanted:
                self._cond.notify_all()
        return True

    def get_batch(self, limit: int, timeout: float, *, fill_while: Callable[[], bool] | None = None,
                  linger: float = 0.0) -> list[Incoming]:
        """Up to `limit` items, oldest first; waits up to `timeout` for the first one ([] if none).

        While `fill_while()` is true (the previous batch is still being synced to disk), waits for a full
        batch instead: one transaction of `limit` messages costs far less than many small ones, and the
        disk is busy anyway. Whoever makes `fill_while()` false calls `poke()`.

        `linger`: once there is a first item, wait up to this long more for a full batch (what follows
        it within milliseconds, a capture's other chunks or a backlog, then travels in the same batch).
        """
        def ready() -> bool:
            self._wanted = limit if fill_while is not None and fill_while() else 1
            return len(self._items) >= self._wanted

        def full() -> bool:
            return len(self._items) >= limit

        with self._cond:
            if not ready():
                self._getters += 1
                try:
                    self._cond.wait_for(ready, timeout)
                finally:
                    self._getters -= 1
                    self._wanted = 1
            if linger and self._items and not full():
                self._getters += 1
                self._wanted = limit
                try:
                    self._cond.wait_for(full, linger)
                finally:
                    self._getters -= 1
                    self._wanted = 1
            items = self._items
            batch = [items.popleft() for _ in range(min(limit, len(items)))]
            if batch and self._putters:
                self._cond.notify_all()
        return batch

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def poke(self) -> None:
        """Make a waiting consumer look again (its `fill_while` may have changed)."""
        with self._cond:
            self._cond.notify_all()


class Link(Protocol):
    """The gateway's MQTT connection as the rest of the gateway uses it: `gateway.mqtt_link.MqttLink`
    in this process, or `gateway.mqtt_process.ProcessLink` with the connection in a child process."""

    inbox: Inbox
    closing: bool
    connected: threading.Event

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def drain(self) -> None: ...
    def network_alive(self) -> bool: ...
    def ack(self, messages: list[Incoming]) -> int: ...
    def ack_ids(self, ids: list[AckId]) -> int: ...
    def publish_qos0(self, topic: str, payload: bytes) -> bool: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool, timeout_s: float = 10.0) -> bool: ...
