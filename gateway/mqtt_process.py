"""The gateway's MQTT connection in a process of its own (`ProcessLink`), so paho's network loop does
not share a GIL with the ingest thread.

Measured (bench/gateway_throughput.py): paho's packet handling is ~40 µs of Python per message, and
the ingest thread's own Python (header checks, reassembly, outbox rows) about as much again; in one
process they take turns on one GIL, so the gateway drained a backlog at about half the rate of a
plain subscriber however fast the disk. With paho here, each runs on its own core.

`ProcessLink` has `gateway.mqtt_link.MqttLink`'s interface (`gateway.inbox.Link`); its child process
(`child_main`) runs a real `MqttLink` and talks to the gateway over a socket pair (`Channel`: pickled
tuples, each behind its length):

    child -> parent  ("msgs", [Incoming fields as a plain tuple, ...])   messages received, not acked
                     ("state", up)               connected / disconnected
                     ("done", request id, result) answer to a request below
    parent -> child  ("ack", [(generation, mid, qos), ...])
                     ("publish", request id, topic, payload, qos, retain, timeout_s)
                     ("start",) ("stop", request id) ("exit",)

Nothing about acknowledgement changes: the child acks only the ids the parent names, and the parent
names them only once their commit is durable (`gateway.subscriber.Acker`). If either process dies,
the broker redelivers everything unacked to the persistent session. The child exits when the parent
goes (end of file on its socket), so it never outlives a killed gateway.
"""

from __future__ import annotations

# pickle's C implementation, which `pickle.dumps`/`loads` are: the pickle module adds its pure-Python
# twin (~0.25 MB in each process, and the gateway's side loads pickle for nothing else)
import _pickle
import functools
import itertools
import logging
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.inbox import AckId, Inbox, Incoming, Link

# The child imports this module too: what only the gateway's side uses (subprocess, which brings locale,
# and concurrent.futures; ~0.5 MB) is imported where it is used
if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import Future

log = logging.getLogger("mailcam.gateway.mqtt")

# Messages per frame sent to the gateway process: ~140 KB of 4 KB chunks pickled, not a whole batch's
# megabyte held twice (the child's copy and the pickle) at a time. Each process holds about two frames
# of messages besides its inbox (the child: one being pickled and its pickle; the gateway: one being
# decoded, and its inbox may overshoot by one): 32 rather than 64 was 0.6-0.9 MB less of the gateway's
# peak (bench/gateway_throughput.py); the CPU per message of twice as many frames was within the
# noise of a shared machine (at most ~3 % more, 5 pairs of runs).
FRAME_MAX = 32
FRAME_LINGER_S = 0.002  # how long a frame waits to fill: a capture's chunks come within a millisecond
# What the child process runs (`python -c`, not `-m`: a __main__ module is compiled from source on every
# start, an imported one is not)
CHILD_CODE = "import sys; from gateway.mqtt_process import child_main; child_main(sys.argv[1])"


class LinkSettings(NamedTuple):
    """What `MqttLink` reads of `GatewaySettings` (the child does not import pydantic's settings, nor
    dataclasses: that would load inspect and the ast modules)."""

    client_id: str
    broker_host: str
    broker_port: int
    broker_username: str | None
    broker_password: Secret | None  # crosses only the socket pair between the two processes
    keepalive_s: int
    ingest_batch_max: int  # here: messages per frame to the parent; the child's inbox holds two frames
    log_level: str = "INFO"


def wants_process(setting: str) -> bool:
    """Whether to run the MQTT connection in a child process (setting ``mqtt_process``: auto|on|off).

    auto: only with two or more CPU cores the process may use; on one core the two processes would
    take turns anyway, for ~9 MB more memory.
    """
    if setting != "auto":
        return setting == "on"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores >= 2


def link_for(settings: Any, *, on_state: Callable[[bool], None] | None = None) -> Link:
    """The gateway's MQTT connection as its settings (``mqtt_process``) and the machine's cores ask."""
    if wants_process(settings.mqtt_process):
        return ProcessLink(settings, on_state=on_state)
    from gateway.mqtt_link import MqttLink  # paho, in this process

    return MqttLink(settings, on_state=on_state)


class Secret:
    """The broker password on its way to the child: pydantic's ``SecretStr`` interface, never printed."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"


class Channel:
    """One end of the socket pair between the two processes: `send` a tuple, `recv` it at the other end.

    Each message is its pickle behind a 4-byte length, as ``multiprocessing.connection`` frames them;
    that module is not used because it loads multiprocessing, tempfile, shutil… into both processes
    (~2 MB) for these few lines. A frame is read into one buffer kept for the next (no allocation and
    one copy less per frame than there). `send` and `recv` may run in two threads at once; two
    senders need a lock of their own. End of file raises `EOFError`; other failures `OSError`.
    """

    HEADER = struct.Struct("!I")
    PICKLE_PROTOCOL = 5  # pickle.HIGHEST_PROTOCOL of Python 3.8+
    KEEP = 1024 * 1024  # a buffer for a larger message is made for it alone (a rare publish of a big payload)
    SPLIT = 16 * 1024  # a larger message is written after its header, not copied behind it

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray(64 * 1024)  # grows to the largest frame of messages, ~140 KB

    def send(self, message: tuple) -> None:
        data = _pickle.dumps(message, self.PICKLE_PROTOCOL)
        header = self.HEADER.pack(len(data))
        if len(data) > self.SPLIT:
            self._sock.sendall(header)
            self._sock.sendall(data)
        else:
            self._sock.sendall(header + data)

    def recv(self) -> Any:
        size = self.HEADER.unpack(self._read(self.HEADER.size))[0]
        return _pickle.loads(self._read(size))

    def _read(self, size: int) -> memoryview:
        if size > len(self._buffer):
            if size > self.KEEP:
                return self._fill(memoryview(bytearray(size)))
            self._buffer = bytearray(size)
        return self._fill(memoryview(self._buffer)[:size])

    def _fill(self, view: memoryview) -> memoryview:
        done = 0
        while done < len(view):
            n = self._sock.recv_into(view[done:])
            if not n:
                raise EOFError("the other process closed the socket pair")
            done += n
        return view

    def close(self) -> None:
        self._sock.close()


class ProcessLink:
    """`MqttLink`'s interface; the connection itself lives in a child process."""

    def __init__(self, settings: Any, *, on_state: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        # one batch waiting while the ingest thread writes the previous one (the child's inbox and the
        # socket pair buffer the rest of the broker's in-flight window)
        self.inbox = Inbox(settings.ingest_batch_max)
        self.closing = False
        self.connected = threading.Event()
        self.on_state = on_state
        self._requests: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._conn: Channel | None = None
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._dead = False

    # -- child process ---------------------------------------------------------------------------
    def _spawn(self) -> None:
        import subprocess

        s = self.settings
        password = Secret(s.broker_password.get_secret_value()) if s.broker_password else None
        config = LinkSettings(client_id=s.client_id, broker_host=s.broker_host, broker_port=s.broker_port,
                              broker_username=s.broker_username, broker_password=password,
                              keepalive_s=s.keepalive_s, ingest_batch_max=min(FRAME_MAX, s.ingest_batch_max),
                              log_level=logging.getLevelName(logging.getLogger("mailcam").getEffectiveLevel()))
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self._conn = Channel(ours)
        self._send(("config", config))
        self._reader = threading.Thread(target=self._read, name="mailcam-mqtt-reader", daemon=True)
        self._reader.start()

    def _send(self, message: tuple) -> None:
        assert self._conn is not None
        with self._send_lock:
            self._conn.send(message)

    def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while True:
                message = conn.recv()
                kind = message[0]
                if kind == "msgs":
                    batch = list(map(Incoming._make, message[1]))
                    while not self.closing:  # while closing, drop them unacked: the broker redelivers
                        if self.inbox.put_many(batch, timeout=0.5):
                            break
                elif kind == "state":
                    (self.connected.set if message[1] else self.connected.clear)()
                    if self.on_state:
                        self.on_state(message[1])
                elif kind == "done":
                    future = self._requests.pop(message[1], None)
                    if future is not None:
                        future.set_result(message[2])
        except (EOFError, OSError):
            pass
        finally:
            self._dead = True
            was_up = self.connected.is_set()
            self.connected.clear()
            for future in list(self._requests.values()):
                future.set_result(False)
            self._requests.clear()
            if was_up and self.on_state:
                self.on_state(False)

    def _request(self, message: tuple, timeout_s: float) -> Any:
        if self._dead or self._conn is None:
            return False
        from concurrent.futures import Future

        request_id = next(self._ids)
        future: Future = Future()
        self._requests[request_id] = future
        try:
            self._send((message[0], request_id, *message[1:]))
        except OSError:
            self._requests.pop(request_id, None)
            return False
        try:
            return future.result(timeout_s)
        except TimeoutError:
            self._requests.pop(request_id, None)
            return False

    # -- MqttLink's interface ---------------------------------------------------------------------
    def start(self) -> None:
        self.closing = False
        if self._process is None:
            self._spawn()
        self._send(("start",))

    def network_alive(self) -> bool:
        if self.closing or self._process is None:
            return True
        return not self._dead and self._process.poll() is None

    def drain(self) -> None:
        self.inbox.clear()

    def stop(self) -> None:
        self.closing = True
        self.drain()
        if self._process is not None and not self._dead:
            self._request(("stop",), timeout_s=15.0)
        self.drain()

    def close(self) -> None:
        """Stop and end the child process."""
        import subprocess

        self.stop()
        if self._process is None:
            return
        try:
            self._send(("exit",))
        except OSError:
            pass
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._conn is not None:
            self._conn.close()

    def ack(self, messages: list[Incoming]) -> int:
        """Ask the child to PUBACK these; returns how many were asked for (not: acked)."""
        return self.ack_ids([m.ack_id for m in messages])

    def ack_ids(self, ids: list[AckId]) -> int:
        """Ask the child to PUBACK these (it skips other connections' ids); returns how many were asked for."""
        ids = [i for i in ids if i[2] > 0]
        if ids and not self._dead:
            try:
                self._send(("ack", ids))
            except OSError:
                return 0  # the child is gone: the broker redelivers what it did not ack
        return len(ids)

    def publish_qos0(self, topic: str, payload: bytes) -> bool:
        return bool(self._request(("publish", topic, payload, 0, False, 0.0), timeout_s=5.0))

    def publish(self, topic: str, payload: bytes, *, retain: bool, timeout_s: float = 10.0) -> bool:
        return bool(self._request(("publish", topic, payload, 1, retain, timeout_s), timeout_s=timeout_s + 5.0))


# -- the child -----------------------------------------------------------------------------------
def child_main(fd: str) -> None:
    """The child process: a real `MqttLink`, driven over the socket pair `fd` (see the module docstring)."""
    # systemd's stop signals every process of the unit, Ctrl-C the whole process group: the gateway
    # handles those, acks what it committed and then closes us ("exit", or end of file if it dies)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from gateway.lean import block_mqtt_process_imports

    block_mqtt_process_imports()
    from gateway.mqtt_link import MqttLink

    conn = Channel(socket.socket(fileno=int(fd)))
    _, config = conn.recv()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    def on_state(up: bool) -> None:
        try:
            send(("state", up))
        except OSError:
            pass

    link = MqttLink(config, on_state=on_state)
    frame_max = config.ingest_batch_max

    def pump() -> None:
        while True:
            # a frame per message would cost a pickle, a write and a wake-up of the gateway each
            batch = link.inbox.get_batch(frame_max, timeout=1.0, linger=FRAME_LINGER_S)
            if batch:
                # plain tuples: a NamedTuple pickles through a Python-level call per message (~3 µs)
                send(("msgs", [tuple(m) for m in batch]))

    def answer(request_id: int, work: Callable[[], Any]) -> None:
        try:
            result = work()
        except Exception:
            log.exception("MQTT request failed")
            result = False
        try:
            send(("done", request_id, result))
        except OSError:
            pass

    threading.Thread(target=pump, name="mailcam-mqtt-pump", daemon=True).start()
    try:
        while True:
            message = conn.recv()
            kind = message[0]
            if kind == "ack":
                link.ack_ids(message[1])
            elif kind == "publish":
                _, request_id, topic, payload, qos, retain, timeout_s = message
                if qos == 0:  # never waits: answered here, in order
                    answer(request_id, functools.partial(link.publish_qos0, topic, payload))
                else:  # waits for the broker's PUBACK: not in this loop, which carries the acks
                    work = functools.partial(link.publish, topic, payload, retain=retain, timeout_s=timeout_s)
                    threading.Thread(target=answer, args=(request_id, work), daemon=True).start()
            elif kind == "start":
                link.start()
            elif kind == "stop":
                answer(message[1], lambda: link.stop() or True)
            elif kind == "exit":
                break
    except (EOFError, OSError):
        # the gateway went without a word (killed): go as abruptly. The broker sees the connection drop
        # and publishes our will (clearing the clock) exactly as for a killed single-process gateway;
        # what we hold unacked is redelivered to the next run
        os._exit(0)
    link.stop()
    os._exit(0)
