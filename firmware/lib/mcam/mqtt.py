"""A small MQTT 3.1.1 client for the device (MicroPython and CPython).

Layer one of two (as in Peter Hinch's mqtt_as): this module speaks the protocol and raises one
error type, ``MQTTError``; ``mcam.cycle`` decides what to retry. Every socket read and write is
bounded by a ``ticks_diff`` deadline. QoS 0 and 1 only (the device never needs QoS 2).

Publishing does not wait for PUBACK: callers pipeline a window of QoS 1 publishes and then collect
the acknowledgements with ``wait_acks`` (one broker round trip per window). ``pending`` holds the
packet ids still unacknowledged, so after a failure the caller knows exactly what got through.

    MQTTError
      raised for: socket errors and timeouts, CONNACK refusals (``code`` set), protocol violations

A refused subscription is not an error here: ``granted[pid]`` holds the SUBACK's return codes.
"""

import socket

try:
    from errno import EAGAIN, ETIMEDOUT
except ImportError:  # pragma: no cover
    EAGAIN, ETIMEDOUT = 11, 110

from .compat import ticks_add, ticks_diff, ticks_ms

# Control packet types, MQTT 3.1.1 §2.2.1 (already shifted into the high nibble).
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x80
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTError(Exception):
    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


# ---------------------------------------------------------------- packet encoding (pure functions)

def encode_remaining_length(n):
    """Variable-length 'Remaining Length', MQTT 3.1.1 §2.2.3 (1-4 bytes, 7 bits each, LSB first)."""
    if n < 0 or n > 268435455:
        raise MQTTError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)  # continuation bit
        else:
            out.append(byte)
            return bytes(out)


def _utf8(s):
    """UTF-8 encoded string with its 2-byte big-endian length prefix, §1.5.3."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise MQTTError("string longer than 65535 bytes")
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def _u16(n):
    return bytes((n >> 8, n & 0xFF))


def connect_packet(client_id, keepalive=60, clean_session=False, user=None, password=None,
                   will_topic=None, will_msg=None, will_qos=0, will_retain=False):
    """CONNECT, §3.1."""
    if password is not None and user is None:
        raise MQTTError("password without user name (§3.1.2.9)")
    if will_qos not in (0, 1, 2):
        raise MQTTError("bad will qos")
    # §3.1.2.1-3.1.2.2: protocol name "MQTT", protocol level 4.
    var = bytearray(_utf8("MQTT") + b"\x04")
    flags = 0
    if clean_session:
        flags |= 0x02  # §3.1.2.4 Clean Session
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3)  # §3.1.2.5 Will Flag, §3.1.2.6 Will QoS
        if will_retain:
            flags |= 0x20  # §3.1.2.7 Will Retain
    if user is not None:
        flags |= 0x80  # §3.1.2.8 User Name Flag
    if password is not None:
        flags |= 0x40  # §3.1.2.9 Password Flag
    var.append(flags)  # bit 0 reserved, must be 0 (§3.1.2.3)
    var += _u16(keepalive)  # §3.1.2.10 Keep Alive, seconds
    # §3.1.3 payload order: client id, will topic, will message, user name, password.
    payload = bytearray(_utf8(client_id))
    if will_topic is not None:
        payload += _utf8(will_topic) + _utf8(will_msg or b"")
    if user is not None:
        payload += _utf8(user)
    if password is not None:
        payload += _utf8(password)
    body = bytes(var) + bytes(payload)
    return bytes((CONNECT,)) + encode_remaining_length(len(body)) + body


def publish_header(topic, payload_len, qos=0, retain=False, dup=False, pid=0):
    """Fixed + variable header of PUBLISH, §3.3; the caller sends ``payload_len`` bytes after it."""
    if qos not in (0, 1):
        raise MQTTError("only QoS 0 and 1 are supported")
    if qos == 0 and dup:
        raise MQTTError("DUP must be 0 for QoS 0 (§3.3.1.1)")
    if qos and not 0 < pid < 65536:
        raise MQTTError("QoS 1 needs a packet id 1..65535 (§2.3.1)")
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)  # §3.3.1
    var = _utf8(topic) + (_u16(pid) if qos else b"")  # §3.3.2.1 topic name, §3.3.2.2 packet id
    return bytes((first,)) + encode_remaining_length(len(var) + payload_len) + var


def puback_packet(pid):
    """PUBACK, §3.4: 0x40, remaining length 2, packet id."""
    return bytes((PUBACK, 2)) + _u16(pid)


def subscribe_packet(pid, topic, qos=1):
    """SUBSCRIBE, §3.8: fixed header flags MUST be 0010 (§3.8.1); ``topic`` is one filter (with ``qos``)
    or a list of (filter, qos) pairs (§3.8.3: the payload holds one or more of them)."""
    pairs = topic if isinstance(topic, list) else [(topic, qos)]
    body = _u16(pid)
    for t, q in pairs:
        body += _utf8(t) + bytes((q,))
    return bytes((SUBSCRIBE | 0x02,)) + encode_remaining_length(len(body)) + body


PINGREQ_PACKET = b"\xc0\x00"  # §3.12
DISCONNECT_PACKET = b"\xe0\x00"  # §3.14


def _is_timeout(e):
    """A would-block / timed-out socket error, spelled the MicroPython or the CPython way."""
    code = e.args[0] if e.args else None
    return code in (EAGAIN, ETIMEDOUT, "timed out")


def _default_socket(host, port, timeout_ms):
    addr = socket.getaddrinfo(host, port)[0][-1]
    s = socket.socket()
    s.settimeout(timeout_ms / 1000)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


# ---------------------------------------------------------------- the client

class MQTTClient:
    def __init__(self, client_id, server, port=1883, user=None, password=None, keepalive=60,
                 timeout_ms=5000, sock_factory=None):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.timeout_ms = timeout_ms
        self.sock_factory = sock_factory or _default_socket
        self.sock = None
        self.will = None
        self.cb = None
        self.pending = {}  # pid -> True for unacknowledged QoS 1 PUBLISH / SUBSCRIBE
        self.granted = {}  # SUBSCRIBE pid -> granted QoS (0x80 failure, §3.9.3)
        self.round_trips = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self._wrote = False
        self._sent_at = ticks_ms()  # when we last wrote a control packet (keepalive, §3.1.2.10)

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain, qos)

    def set_callback(self, cb):
        """cb(topic: bytes, msg: bytes, retained: bool, dup: bool) for each incoming PUBLISH."""
        self.cb = cb

    # -- low level I/O, every call bounded by the deadline

    def _deadline(self):
        return ticks_add(ticks_ms(), self.timeout_ms)

    def _remaining(self, deadline):
        left = ticks_diff(deadline, ticks_ms())
        if left <= 0:
            raise MQTTError("timeout")
        return left

    def _write(self, data, deadline=None):
        if self.sock is None:
            raise MQTTError("not connected")
        deadline = deadline or self._deadline()
        mv = memoryview(data)
        while len(mv):
            self.sock.settimeout(self._remaining(deadline) / 1000)
            try:
                n = self.sock.send(mv)
            except OSError as e:
                raise MQTTError(f"send failed: {e!r}") from e
            if not n:
                raise MQTTError("connection closed on send")
            mv = mv[n:]
            self.bytes_out += n
        self._wrote = True
        self._sent_at = ticks_ms()

    def _ping_due_in(self):
        """ms until a PINGREQ is due (None: keepalive off). We ping at 3/4 of the Keep Alive so the
        broker (which allows 1.5x, §3.1.2.10) never sees a silence longer than the Keep Alive."""
        if not self.keepalive:
            return None
        return self.keepalive * 750 - ticks_diff(ticks_ms(), self._sent_at)

    def _read(self, n, deadline):
        buf = bytearray()
        while len(buf) < n:
            wait = self._remaining(deadline)
            due = self._ping_due_in()
            if due is not None and due <= 0:
                # MQTT-3.1.2-23: a client that sends nothing else within the Keep Alive MUST send
                # PINGREQ, also while it waits for acknowledgements (the PINGRESP is handled by _handle)
                self._write(PINGREQ_PACKET, deadline)
                continue
            self.sock.settimeout((wait if due is None else min(wait, due)) / 1000)
            try:
                got = self.sock.recv(n - len(buf))
            except OSError as e:
                if _is_timeout(e) and due is not None and due < wait:
                    continue  # woke up to ping, not because the deadline passed
                raise MQTTError(f"recv failed: {e!r}") from e
            if not got:
                raise MQTTError("connection closed by broker")
            buf += got
            self.bytes_in += len(got)
        return buf

    def _read_packet(self, deadline, first=None):
        """One control packet -> (first byte, body); §2.2.3 remaining-length decoding."""
        if first is None:
            first = self._read(1, deadline)[0]
        n = 0
        shift = 0
        while True:
            b = self._read(1, deadline)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("malformed remaining length")
        return first, (self._read(n, deadline) if n else b"")

    # -- protocol

    def connect(self, clean_session=False, subscribe=None, sub_pid=1):
        """Open the socket, CONNECT, wait for CONNACK (§3.2). Returns session-present (bool).

        With ``subscribe`` (a list of (filter, qos)), SUBSCRIBE and a PINGREQ go out in the same write
        (§3.1.4: a client need not wait for CONNACK), and this returns only after the PINGRESP: the
        broker answers in order, so the SUBACK and the retained messages of those filters have reached
        the callback by then, all in the one round trip that brings the CONNACK.
        """
        deadline = self._deadline()
        try:
            self.sock = self.sock_factory(self.server, self.port, self.timeout_ms)
        except OSError as e:
            raise MQTTError(f"cannot reach broker {self.server}:{self.port}: {e!r}") from e
        will = self.will or (None, None, False, 0)
        out = connect_packet(self.client_id, self.keepalive, clean_session, self.user,
                             self.password, will[0], will[1], will[3], will[2])
        if subscribe:
            out += subscribe_packet(sub_pid, subscribe) + PINGREQ_PACKET
        self._write(out, deadline)
        self._start_wait()
        first, body = self._read_packet(deadline)
        if first != CONNACK or len(body) != 2:
            raise MQTTError(f"expected CONNACK, got 0x{first:02x}")
        if body[1]:
            raise MQTTError(f"connection refused: {CONNACK_REASONS.get(body[1], body[1])}", body[1])
        self.pending = {}
        if subscribe:
            self.pending[sub_pid] = True
            self._until_pingresp(deadline)
            if sub_pid in self.pending:
                raise MQTTError("PINGRESP before SUBACK")
        return bool(body[0] & 0x01)  # §3.2.2.2 Session Present

    def _until_pingresp(self, deadline):
        while True:
            first, body = self._read_packet(deadline)
            if first == PINGRESP:
                return
            self._handle(first, body)

    def _start_wait(self):
        if self._wrote:
            self.round_trips += 1
            self._wrote = False

    def publish(self, topic, msg, retain=False, qos=0, pid=0, dup=False):
        """Send PUBLISH (§3.3) without waiting; ``msg`` may be a list of bytes-like parts."""
        parts = msg if isinstance(msg, list) else [msg]
        size = 0
        for p in parts:
            size += len(p)
        deadline = self._deadline()
        hdr = publish_header(topic, size, qos, retain, dup, pid)
        if qos:
            self.pending[pid] = True  # before writing: a half-sent PUBLISH is not acknowledged
        self._write(hdr, deadline)
        for p in parts:
            self._write(p, deadline)
        return pid

    def subscribe(self, topic, qos=1, pid=1):
        """Send SUBSCRIBE (§3.8) without waiting; the SUBACK is collected by ``wait_acks``."""
        self.pending[pid] = True
        self._write(subscribe_packet(pid, topic, qos))
        return pid

    def wait_acks(self, timeout_ms=None):
        """Read packets until nothing is pending: PUBACK/SUBACK clear ids, PUBLISH goes to the callback."""
        self._start_wait()
        deadline = ticks_add(ticks_ms(), timeout_ms or self.timeout_ms)
        while self.pending:
            self._handle(*self._read_packet(deadline))

    def check_msg(self, wait_ms=0):
        """Handle what arrives within ``wait_ms`` (0: only what is already there)."""
        while self.sock is not None:
            self.sock.settimeout(wait_ms / 1000)
            try:
                b = self.sock.recv(1)
            except OSError as e:
                if _is_timeout(e):
                    return
                raise MQTTError(f"recv failed: {e!r}") from e
            if not b:
                raise MQTTError("connection closed by broker")
            self.bytes_in += 1
            self._handle(*self._read_packet(self._deadline(), b[0]))

    def wait_until(self, done, timeout_ms):
        """Handle incoming packets until ``done()`` or ``timeout_ms`` passed (False then): waiting for an
        answer that another client sends (the gateway's firmware chunks), one more round trip."""
        self.round_trips += 1
        self._wrote = False
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not done():
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return False
            self.sock.settimeout(left / 1000)
            try:
                b = self.sock.recv(1)
            except OSError as e:
                if _is_timeout(e):
                    return False
                raise MQTTError(f"recv failed: {e!r}") from e
            if not b:
                raise MQTTError("connection closed by broker")
            self.bytes_in += 1
            self._handle(*self._read_packet(self._deadline(), b[0]))
        return True

    def ping(self):
        """PINGREQ (§3.12), wait for PINGRESP (§3.13)."""
        self._write(PINGREQ_PACKET)
        self._start_wait()
        self._until_pingresp(self._deadline())

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBACK or kind == SUBACK:
            if len(body) < 2:
                raise MQTTError("short acknowledgement")
            pid = (body[0] << 8) | body[1]
            if kind == SUBACK:
                # §3.9.3: one return code per filter, 0x80 = refused; the caller decides what it needs
                self.granted[pid] = list(body[2:])
            self.pending.pop(pid, None)
        elif kind == PUBLISH:
            self._incoming_publish(first, body)
        elif kind == PINGRESP:
            pass
        else:
            raise MQTTError(f"unexpected packet 0x{first:02x}")

    def _incoming_publish(self, first, body):
        qos = (first >> 1) & 0x03
        if qos == 2:
            raise MQTTError("QoS 2 delivery to a QoS 1 subscription")
        tlen = (body[0] << 8) | body[1]
        topic = bytes(body[2:2 + tlen])
        pos = 2 + tlen
        pid = 0
        if qos:
            pid = (body[pos] << 8) | body[pos + 1]
            pos += 2
        if self.cb:
            self.cb(topic, bytes(body[pos:]), bool(first & 0x01), bool(first & 0x08))
        if qos == 1:
            self._write(puback_packet(pid))  # §3.3.4: QoS 1 receiver answers with PUBACK

    def disconnect(self):
        """DISCONNECT (§3.14): a clean close, so the broker discards the Will (§3.1.2.5)."""
        if self.sock is None:
            return
        try:
            self._write(DISCONNECT_PACKET)
            self.round_trips += 1
            self._wrote = False
        finally:
            self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
