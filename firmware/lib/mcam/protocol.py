"""mailcam wire protocol v1: one definition for the device (MicroPython) and the gateway (CPython).

Topics: ``mailcam/v1/<serial>/<kind>`` with kind one of

- ``capture``   device -> gateway, QoS 1, binary chunk messages (below)
- ``telemetry`` device -> gateway, QoS 1, JSON
- ``cmd``       gateway -> device, QoS 1, RETAINED JSON ``{"v":1,"tid":"...","exp":<unix s>}``;
                an empty retained payload means "no pending trigger"
- ``status``    LWT: payload ``b"lost"`` on an unplanned loss; nothing is published on a planned sleep
- ``settings``  gateway -> device, QoS 1, RETAINED JSON ``{"v":1,"ver":<int >= 1>,"set":{<path>: value}}``:
                remote settings, ``path`` one of ``SETTABLE``; the device validates them with its config
                rules, keeps them in flash, applies them from its next wake, and reports ``cfgv`` (the
                version in effect) and ``cfge`` (why a version was refused) in telemetry
- ``ota``       gateway -> device, QoS 1, RETAINED JSON offer ``{"v":1,"rid":<release id>,"ver":"1.1.0",
                "size":<bundle bytes>,"sig":<hex Ed25519 signature>}``; empty: no update for this device
- ``fwreq``     device -> gateway, QoS 1, JSON ``{"v":1,"rid":..,"off":<byte offset>,"len":<bytes>,"cs":<chunk>}``:
                "send me this part of the bundle" (a bounded amount per wake; ``off`` resumes a download)
- ``fw``        gateway -> device, QoS 0, bundle chunks: JSON header ``{"v":1,"rid","off","size"}`` + ``b"\\n"``
                + bytes (QoS 0: a lost chunk is simply asked for again; nothing queues for a sleeping device)

and one topic shared by every device, ``mailcam/v1/clock`` (gateway -> devices, QoS 1, RETAINED JSON
``{"v":1,"t":<unix s>,"every":<s>}``): the gateway republishes it every ``every`` seconds, so the retained
copy a device receives on subscribing says the true time lies in ``[t, t + every]`` (``clock_bounds``).
The device reads it in the round trip that brings its CONNACK and its retained ``cmd``: true time at no
extra round trip, even on the first wake after the RTC lost power.

Time: a timestamp before ``SANE_EPOCH`` (2024-01-01) was made by an unset clock (the ESP32 RTC starts at
2000-01-01). The device marks such readings ``tu`` (time uncertain); the gateway and cloud never store them
as taken in 2000 but substitute their receive time and keep the mark.

Capture chunk = UTF-8 JSON header + ``b"\\n"`` + raw JPEG bytes of that chunk. Header keys:
``v`` (1), ``cid`` (capture id, 1-64 of [A-Za-z0-9_-], unique, made by the device), ``i`` (0-based index),
``n`` (chunk count >= 1), ``size`` (whole image bytes), ``sha`` (hex SHA-256 of the whole image),
``trig`` ("automatic" | "manual"), ``tid`` (trigger id or null; required when manual), ``ts`` (unix s),
``bat`` (battery mV), optional ``tu`` (1: ``ts`` came from an unset clock), optional ``wake`` (what woke
the device when the photo was taken: one of the telemetry's wake reasons; a photo queued on flash keeps
it). Every chunk carries the full header: chunks may arrive repeated or out of order.

Telemetry keys: ``v``, ``ts``, ``bat``, ``rssi`` (int or null), ``wake`` (timer|door|power_on|manual),
``awake_ms`` (previous cycle, int or null), ``fw``, ``boot``, ``err`` (str or null), ``pending`` (int),
``tu`` (optional; true: ``ts`` came from an unset clock), ``cfgv`` (optional int: settings version in
effect), ``cfge`` (optional str: why the newest settings were refused), ``ota`` (optional object, the
firmware update's state: ``{"rid","ver","st","pct","why"}``, ``st`` one of ``OTA_STATES``).

A firmware release (``mailcam release build``) is one **bundle**: the manifest, one JSON line
``{"v":1,"ver":"1.1.0","files":[[path, size, sha256 hex], ...]}`` + ``b"\\n"``, then every file's bytes in
manifest order. The release's Ed25519 signature covers ``release_message(manifest line)``; each file's
SHA-256 is checked against the manifest, so the signature covers every byte the device installs.

Errors: everything malformed raises ``ProtocolError`` (a ``ValueError``).

MicroPython-compatible: no typing, no dataclasses, no f-strings.
"""

import json

try:
    import hashlib
except ImportError:  # pragma: no cover - very small ports
    import uhashlib as hashlib

VERSION = 1
TOPIC_ROOT = "mailcam/v1"

CAPTURE = "capture"
TELEMETRY = "telemetry"
CMD = "cmd"
STATUS = "status"
SETTINGS = "settings"
OTA = "ota"
FWREQ = "fwreq"
FW = "fw"
KINDS = (CAPTURE, TELEMETRY, CMD, STATUS, SETTINGS, OTA, FWREQ, FW)
# What a device reports of an update (telemetry ``ota.st``)
OTA_STATES = ("downloading", "staged", "installed", "rolled_back", "refused")
# What the owner may change remotely (config.json paths); the device's config rules validate the values
SETTABLE = ("wake_interval_s", "camera.framesize", "camera.quality", "camera.flash", "low_battery.mv",
            "chunk_size", "door.level")
CLOCK_TOPIC = TOPIC_ROOT + "/clock"

SANE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z: anything earlier came from an unset clock

AUTOMATIC = "automatic"
MANUAL = "manual"
TRIGGERS = (AUTOMATIC, MANUAL)

WAKE_REASONS = ("timer", "door", "power_on", "manual")

STATUS_LOST = b"lost"

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # the one image cap: gateway and cloud settings may only lower it
DEFAULT_CHUNK_SIZE = 4096
MAX_HEADER_BYTES = 1024
MAX_TID_LEN = 64

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_HEX = "0123456789abcdef"


class ProtocolError(ValueError):
    pass


def _valid_id(s, max_len):
    # strip(chars) leaves "" iff every char is allowed: one C-level pass (also on MicroPython)
    return isinstance(s, str) and 1 <= len(s) <= max_len and not s.strip(_ID_CHARS)


def valid_serial(s):
    """1-32 chars of [A-Za-z0-9_-]."""
    return _valid_id(s, 32)


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MAX_PORTABLE_CLIENT_ID = 23


def client_id(serial):
    """The device's MQTT client id: the serial itself when every broker must accept it (MQTT-3.1.3-5:
    1-23 chars of [0-9a-zA-Z]), else ``"m"`` + the first 22 hex digits of its SHA-256. Deterministic,
    so the broker finds the device's persistent session on every wake."""
    if not valid_serial(serial):
        raise ProtocolError(f"bad serial: {serial!r}")
    if len(serial) <= MAX_PORTABLE_CLIENT_ID and not serial.strip(_ALNUM):
        return serial
    digest = hashlib.sha256(serial.encode()).digest()
    return "m" + "".join("%02x" % b for b in digest[:11])


def valid_capture_id(s):
    """1-64 chars of [A-Za-z0-9_-]."""
    return _valid_id(s, 64)


def valid_sha(s):
    return isinstance(s, str) and len(s) == 64 and not s.strip(_HEX)


def topic(serial, kind):
    if not valid_serial(serial):
        raise ProtocolError(f"bad serial: {serial!r}")
    if kind not in KINDS:
        raise ProtocolError(f"unknown topic kind: {kind!r}")
    return TOPIC_ROOT + "/" + serial + "/" + kind


def parse_topic(t):
    """``mailcam/v1/<serial>/<kind>`` -> (serial, kind); ProtocolError for anything else."""
    if isinstance(t, (bytes, bytearray)):
        try:
            t = bytes(t).decode()
        except UnicodeError:
            raise ProtocolError("topic is not UTF-8") from None
    if not isinstance(t, str):
        raise ProtocolError("topic must be a string")
    parts = t.split("/")
    if len(parts) != 4 or parts[0] + "/" + parts[1] != TOPIC_ROOT:
        raise ProtocolError(f"topic outside {TOPIC_ROOT}/<serial>/<kind>: {t!r}")
    serial, kind = parts[2], parts[3]
    if not valid_serial(serial):
        raise ProtocolError(f"bad serial in topic: {t!r}")
    if kind not in KINDS:
        raise ProtocolError(f"unknown topic kind: {t!r}")
    return serial, kind


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def time_is_sane(ts):
    """False for a timestamp an unset clock made (before ``SANE_EPOCH``)."""
    return _is_int(ts) and ts >= SANE_EPOCH


def chunk_count(size, chunk_size):
    """Number of chunks for an image of ``size`` bytes (>= 1)."""
    if not _is_int(size) or size < 1 or not _is_int(chunk_size) or chunk_size < 1:
        raise ProtocolError("size and chunk_size must be positive ints")
    return (size + chunk_size - 1) // chunk_size


def _check_header(h):
    if not isinstance(h, dict):
        raise ProtocolError("chunk header is not a JSON object")
    if h.get("v") != VERSION:
        raise ProtocolError("unsupported protocol version: {!r}".format(h.get("v")))
    if not valid_capture_id(h.get("cid")):
        raise ProtocolError("bad capture id: {!r}".format(h.get("cid")))
    size = h.get("size")
    if not _is_int(size) or not 1 <= size <= MAX_IMAGE_BYTES:
        raise ProtocolError(f"bad size: {size!r}")
    n = h.get("n")
    if not _is_int(n) or not 1 <= n <= size:
        raise ProtocolError(f"bad chunk count n: {n!r}")
    i = h.get("i")
    if not _is_int(i) or not 0 <= i < n:
        raise ProtocolError(f"bad chunk index i={i!r} for n={n!r}")
    if not valid_sha(h.get("sha")):
        raise ProtocolError("sha must be 64 lowercase hex chars")
    trig = h.get("trig")
    if trig not in TRIGGERS:
        raise ProtocolError(f"bad trig: {trig!r}")
    tid = h.get("tid")
    if tid is not None and not (isinstance(tid, str) and 1 <= len(tid) <= MAX_TID_LEN):
        raise ProtocolError(f"bad tid: {tid!r}")
    if trig == MANUAL and tid is None:
        raise ProtocolError("manual capture without tid")
    if not _is_int(h.get("ts")) or h["ts"] < 0:
        raise ProtocolError("bad ts: {!r}".format(h.get("ts")))
    if not _is_int(h.get("bat")) or not 0 <= h["bat"] <= 100000:
        raise ProtocolError("bad bat: {!r}".format(h.get("bat")))
    if h.get("tu", 0) not in (0, 1):
        raise ProtocolError("bad tu: {!r}".format(h.get("tu")))
    if h.get("wake") is not None and h["wake"] not in WAKE_REASONS:
        raise ProtocolError("bad wake: {!r}".format(h.get("wake")))


def encode_chunk_header(cid, i, n, size, sha, trig, tid, ts, bat, tu=False, wake=None):
    """The JSON header of one chunk, ending with b"\\n"; the caller writes the body after it."""
    h = {"v": VERSION, "cid": cid, "i": i, "n": n, "size": size, "sha": sha,
         "trig": trig, "tid": tid, "ts": ts, "bat": bat}
    if tu:
        h["tu"] = 1
    if wake:
        h["wake"] = wake
    _check_header(h)
    return json.dumps(h).encode() + b"\n"


def encode_chunk(cid, i, n, size, sha, trig, tid, ts, bat, data, tu=False, wake=None):
    """Header + body in one bytes object (convenience for tests and the gateway)."""
    if len(data) > size or len(data) < 1:
        raise ProtocolError(f"chunk body length {len(data)} outside 1..size")
    return encode_chunk_header(cid, i, n, size, sha, trig, tid, ts, bat, tu, wake) + bytes(data)


def decode_chunk(payload):
    """payload -> (header dict, body memoryview); validates every field."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError("chunk payload must be bytes")
    mv = memoryview(payload)
    limit = min(len(mv), MAX_HEADER_BYTES)
    nl = bytes(mv[:limit]).find(b"\n")
    if nl < 0:
        raise ProtocolError(f"chunk has no header terminator within {MAX_HEADER_BYTES} bytes")
    try:
        h = _loads_header(bytes(mv[:nl]).decode())
    except (ValueError, UnicodeError):
        raise ProtocolError("chunk header is not valid UTF-8 JSON") from None
    _check_header(h)
    body = mv[nl + 1:]
    if len(body) < 1:
        raise ProtocolError("empty chunk body")
    if len(body) > h["size"]:
        raise ProtocolError("chunk body longer than image size")
    if h["i"] < h["n"] - 1 and h["i"] * len(body) >= h["size"]:
        raise ProtocolError("chunk index beyond image size")
    return h, body


try:  # CPython: json.loads without its wrapper (type checks, two whitespace regexes), ~1.4 us of ~3 per chunk
    _scan_json = json.JSONDecoder().scan_once
except AttributeError:  # MicroPython's json has no JSONDecoder
    _scan_json = None


def _loads_header(text):
    """``json.loads(text)`` for a header; the gateway's hot path. Same result, same errors: the fast
    path takes only one JSON value filling the whole text, anything else goes through json.loads."""
    if _scan_json is not None:
        try:
            value, end = _scan_json(text, 0)
        except StopIteration:
            end = -1
        if end == len(text):
            return value
    return json.loads(text)


def _nullable_int(d, key):
    x = d.get(key)
    if x is not None and not _is_int(x):
        raise ProtocolError(f"{key} must be an int or null")


def encode_telemetry(**fields):
    d = {"v": VERSION}
    for k in ("ts", "bat", "rssi", "wake", "awake_ms", "fw", "boot", "err", "pending"):
        d[k] = fields.get(k)
    if d["pending"] is None:
        d["pending"] = 0
    if fields.get("tu"):
        d["tu"] = True
    for k in ("cfgv", "cfge", "ota"):
        if fields.get(k) is not None:
            d[k] = fields[k]
    _check_telemetry(d)
    return json.dumps(d).encode()


def _check_telemetry(d):
    if not isinstance(d, dict):
        raise ProtocolError("telemetry is not a JSON object")
    if d.get("v") != VERSION:
        raise ProtocolError("unsupported telemetry version: {!r}".format(d.get("v")))
    for k in ("ts", "bat", "boot", "pending"):
        if not _is_int(d.get(k)) or d[k] < 0:
            raise ProtocolError(f"telemetry {k} must be a non-negative int")
    _nullable_int(d, "rssi")
    _nullable_int(d, "awake_ms")
    if d.get("wake") not in WAKE_REASONS:
        raise ProtocolError("bad wake reason: {!r}".format(d.get("wake")))
    if not isinstance(d.get("fw"), str) or not d["fw"]:
        raise ProtocolError("fw must be a non-empty string")
    if d.get("err") is not None and not isinstance(d["err"], str):
        raise ProtocolError("err must be a string or null")
    if not isinstance(d.get("tu", False), bool):
        raise ProtocolError("tu must be true or false")
    _nullable_int(d, "cfgv")
    if d.get("cfge") is not None and not isinstance(d["cfge"], str):
        raise ProtocolError("cfge must be a string or null")
    if d.get("ota") is not None:
        _check_ota_report(d["ota"])


def _check_ota_report(o):
    if not isinstance(o, dict) or o.get("st") not in OTA_STATES:
        raise ProtocolError("ota must be an object with st in {}".format(OTA_STATES))
    if not _is_int(o.get("rid")) or o["rid"] < 1 or not valid_fw_version(o.get("ver")):
        raise ProtocolError("ota needs rid and ver")
    if not _is_int(o.get("pct", 0)) or not 0 <= o.get("pct", 0) <= 100:
        raise ProtocolError("ota pct must be 0..100")
    if o.get("why") is not None and not isinstance(o["why"], str):
        raise ProtocolError("ota why must be a string or null")


def decode_telemetry(payload):
    try:
        d = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError, TypeError):
        raise ProtocolError("telemetry is not valid UTF-8 JSON") from None
    _check_telemetry(d)
    out = {}
    for k in ("v", "ts", "bat", "rssi", "wake", "awake_ms", "fw", "boot", "err", "pending"):
        out[k] = d.get(k)
    out["tu"] = d.get("tu", False)
    out["cfgv"] = d.get("cfgv")
    out["cfge"] = d.get("cfge")
    out["ota"] = d.get("ota")
    return out


def encode_cmd(tid, exp):
    d = {"v": VERSION, "tid": tid, "exp": exp}
    _check_cmd(d)
    return json.dumps(d).encode()


def _check_cmd(d):
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise ProtocolError("cmd is not a v1 JSON object")
    tid = d.get("tid")
    if not isinstance(tid, str) or not 1 <= len(tid) <= MAX_TID_LEN:
        raise ProtocolError(f"bad cmd tid: {tid!r}")
    if not _is_int(d.get("exp")) or d["exp"] < 0:
        raise ProtocolError("bad cmd exp: {!r}".format(d.get("exp")))


def decode_cmd(payload):
    """JSON cmd -> {"v", "tid", "exp"}; None for an empty (cleared) retained payload."""
    if payload is None or len(payload) == 0:
        return None
    try:
        d = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError, TypeError):
        raise ProtocolError("cmd is not valid UTF-8 JSON") from None
    _check_cmd(d)
    return {"v": d["v"], "tid": d["tid"], "exp": d["exp"]}


MAX_CLOCK_EVERY = 3600


def encode_clock(t, every):
    """The retained clock: true time was ``t`` when published, republished every ``every`` s."""
    d = {"v": VERSION, "t": t, "every": every}
    _check_clock(d)
    return json.dumps(d).encode()


def _check_clock(d):
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise ProtocolError("clock is not a v1 JSON object")
    if not time_is_sane(d.get("t")):
        raise ProtocolError("bad clock t: {!r}".format(d.get("t")))
    if not _is_int(d.get("every")) or not 1 <= d["every"] <= MAX_CLOCK_EVERY:
        raise ProtocolError("bad clock every: {!r}".format(d.get("every")))


def decode_clock(payload):
    """JSON clock -> {"v", "t", "every"}; None for an empty (cleared) retained payload."""
    if payload is None or len(payload) == 0:
        return None
    try:
        d = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError, TypeError):
        raise ProtocolError("clock is not valid UTF-8 JSON") from None
    _check_clock(d)
    return {"v": d["v"], "t": d["t"], "every": d["every"]}


def clock_bounds(clock, slack=5):
    """(earliest, latest) true time a received retained clock allows, ``slack`` s for delivery."""
    return clock["t"], clock["t"] + clock["every"] + slack


def corrected_time(local, clock, slack=5):
    """The local clock moved into the window the clock message allows (unchanged when already in it)."""
    lo, hi = clock_bounds(clock, slack)
    if local < lo:
        return lo
    if local > hi:
        return hi
    return local


def encode_settings(ver, values):
    """The retained settings command: version ``ver`` sets ``values`` ({path: value}, paths in SETTABLE)."""
    d = {"v": VERSION, "ver": ver, "set": values}
    _check_settings(d)
    return json.dumps(d).encode()


def _check_settings(d):
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise ProtocolError("settings is not a v1 JSON object")
    if not _is_int(d.get("ver")) or d["ver"] < 1:
        raise ProtocolError("bad settings ver: {!r}".format(d.get("ver")))
    if not isinstance(d.get("set"), dict):
        raise ProtocolError("settings set must be an object")


def decode_settings(payload):
    """JSON settings -> {"v", "ver", "set"}; None for an empty retained payload. Which keys and values
    are acceptable is the device's decision (it reports a refusal with the version)."""
    if payload is None or len(payload) == 0:
        return None
    try:
        d = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError, TypeError):
        raise ProtocolError("settings is not valid UTF-8 JSON") from None
    _check_settings(d)
    return {"v": d["v"], "ver": d["ver"], "set": d["set"]}


# ---------------------------------------------------------------- firmware updates

MAX_FW_VERSION = 40
MAX_BUNDLE_BYTES = 2 * 1024 * 1024  # an ESP32-CAM's flash file system is 2-3 MB: one release must fit twice
MAX_MANIFEST_BYTES = 4096
MAX_FW_CHUNK = 8192
SIGNATURE_HEX = 128


def valid_fw_version(s):
    """1-40 chars of [A-Za-z0-9._+-] (e.g. ``1.2.0``, ``1.2.0-rc1``)."""
    return isinstance(s, str) and 1 <= len(s) <= MAX_FW_VERSION and not s.strip(_ID_CHARS + ".+")


def _json_obj(payload, what):
    try:
        d = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError, TypeError):
        raise ProtocolError(what + " is not valid UTF-8 JSON") from None
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise ProtocolError(what + " is not a v1 JSON object")
    return d


def _check_int(d, key, lo, hi, what):
    x = d.get(key)
    if not _is_int(x) or not lo <= x <= hi:
        raise ProtocolError("bad {} {}: {!r}".format(what, key, x))


def _check_offer(d):
    _check_int(d, "rid", 1, 2 ** 31, "offer")
    if not valid_fw_version(d.get("ver")):
        raise ProtocolError("bad offer ver: {!r}".format(d.get("ver")))
    _check_int(d, "size", 1, MAX_BUNDLE_BYTES, "offer")
    sig = d.get("sig")
    if not isinstance(sig, str) or len(sig) != SIGNATURE_HEX or sig.strip(_HEX):
        raise ProtocolError("offer sig must be 128 lowercase hex chars")


def encode_offer(rid, ver, size, sig):
    """The retained update offer of one device: release ``rid`` (version ``ver``), its bundle's size and
    signature."""
    d = {"v": VERSION, "rid": rid, "ver": ver, "size": size, "sig": sig}
    _check_offer(d)
    return json.dumps(d).encode()


def decode_offer(payload):
    """-> {"rid", "ver", "size", "sig"}; None for an empty (cleared) retained payload."""
    if payload is None or len(payload) == 0:
        return None
    d = _json_obj(payload, "offer")
    _check_offer(d)
    return {"rid": d["rid"], "ver": d["ver"], "size": d["size"], "sig": d["sig"]}


def _check_fwreq(d):
    _check_int(d, "rid", 1, 2 ** 31, "fwreq")
    _check_int(d, "off", 0, MAX_BUNDLE_BYTES - 1, "fwreq")
    _check_int(d, "len", 1, MAX_BUNDLE_BYTES, "fwreq")
    _check_int(d, "cs", 256, MAX_FW_CHUNK, "fwreq")


def encode_fwreq(rid, off, length, cs):
    d = {"v": VERSION, "rid": rid, "off": off, "len": length, "cs": cs}
    _check_fwreq(d)
    return json.dumps(d).encode()


def decode_fwreq(payload):
    d = _json_obj(payload, "fwreq")
    _check_fwreq(d)
    return {"rid": d["rid"], "off": d["off"], "len": d["len"], "cs": d["cs"]}


def encode_fw_chunk(rid, off, size, data):
    """One bundle chunk: header line + ``data`` (the bundle's bytes at ``off``)."""
    if not 1 <= len(data) <= MAX_FW_CHUNK or off + len(data) > size:
        raise ProtocolError("fw chunk body outside the bundle")
    h = {"v": VERSION, "rid": rid, "off": off, "size": size}
    return json.dumps(h).encode() + b"\n" + bytes(data)


def decode_fw_chunk(payload):
    """-> (header {"rid","off","size"}, body memoryview)."""
    mv = memoryview(payload)
    nl = bytes(mv[:MAX_HEADER_BYTES]).find(b"\n")
    if nl < 0:
        raise ProtocolError("fw chunk has no header line")
    h = _json_obj(mv[:nl], "fw chunk header")
    _check_int(h, "rid", 1, 2 ** 31, "fw chunk")
    _check_int(h, "size", 1, MAX_BUNDLE_BYTES, "fw chunk")
    _check_int(h, "off", 0, h["size"] - 1, "fw chunk")
    body = mv[nl + 1:]
    if not 1 <= len(body) <= MAX_FW_CHUNK or h["off"] + len(body) > h["size"]:
        raise ProtocolError("fw chunk body outside the bundle")
    return {"rid": h["rid"], "off": h["off"], "size": h["size"]}, body


def release_message(manifest_line):
    """What a release's Ed25519 signature signs: a domain tag + the SHA-256 of the manifest line (a short
    message keeps the device's pure-Python SHA-512 at one block)."""
    return b"mailcam-release-v1:" + hashlib.sha256(bytes(manifest_line)).digest()


def encode_manifest(ver, files):
    """The manifest line of a bundle; ``files`` = [(path, size, sha256 hex)] in bundle order."""
    d = {"v": VERSION, "ver": ver, "files": [[p, s, h] for p, s, h in files]}
    _check_manifest(d)
    return json.dumps(d, separators=(",", ":")).encode()


def _check_manifest(d):
    if not valid_fw_version(d.get("ver")):
        raise ProtocolError("bad manifest ver: {!r}".format(d.get("ver")))
    files = d.get("files")
    if not isinstance(files, list) or not files:
        raise ProtocolError("manifest files must be a non-empty list")
    for f in files:
        if not isinstance(f, list) or len(f) != 3:
            raise ProtocolError("manifest file entries are [path, size, sha]")
        path, size, sha = f
        # a module of the mcam package: nothing outside its slot, no directories
        if not isinstance(path, str) or not path.startswith("mcam/") or "/" in path[5:] or ".." in path \
                or not 6 <= len(path) <= 64 or path[5:].strip(_ID_CHARS + "."):
            raise ProtocolError("bad manifest path: {!r}".format(path))
        if not _is_int(size) or not 0 <= size <= MAX_BUNDLE_BYTES or not valid_sha(sha):
            raise ProtocolError("bad manifest entry for {}".format(path))


def decode_manifest(line):
    """Manifest line -> {"ver", "files": [[path, size, sha]]}."""
    d = _json_obj(line, "manifest")
    _check_manifest(d)
    return {"ver": d["ver"], "files": d["files"]}


RELEASE_MAGIC = b"MCFW1 "


def encode_release_file(sig, bundle):
    """A release file (``mailcam release build``): ``MCFW1 <signature hex>\\n`` + the bundle."""
    if not isinstance(sig, str) or len(sig) != SIGNATURE_HEX or sig.strip(_HEX):
        raise ProtocolError("signature must be 128 lowercase hex chars")
    return RELEASE_MAGIC + sig.encode() + b"\n" + bytes(bundle)


def decode_release_file(data):
    """Release file -> (signature hex, bundle bytes)."""
    data = bytes(data)
    head = len(RELEASE_MAGIC) + SIGNATURE_HEX
    if not data.startswith(RELEASE_MAGIC) or len(data) <= head + 1 or data[head:head + 1] != b"\n":
        raise ProtocolError("not a mailcam release file (MCFW1 header)")
    sig = data[len(RELEASE_MAGIC):head].decode()
    if sig.strip(_HEX):
        raise ProtocolError("release signature must be lowercase hex")
    return sig, data[head + 1:]


def check_bundle(bundle):
    """Bundle -> (manifest line, manifest) after checking its size and every file's SHA-256 (the host's
    check on upload; the device checks the same while it installs)."""
    bundle = bytes(bundle)
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise ProtocolError("bundle larger than {} bytes".format(MAX_BUNDLE_BYTES))
    nl = bundle.find(b"\n", 0, MAX_MANIFEST_BYTES + 1)
    if nl < 0:
        raise ProtocolError("bundle has no manifest line")
    line = bundle[:nl]
    manifest = decode_manifest(line)
    pos = nl + 1
    for path, size, sha in manifest["files"]:
        part = bundle[pos:pos + size]
        if len(part) != size:
            raise ProtocolError("bundle ends inside " + path)
        if hashlib.sha256(part).digest().hex() != sha:
            raise ProtocolError("hash mismatch: " + path)
        pos += size
    if pos != len(bundle):
        raise ProtocolError("bundle has bytes after its last file")
    return line, manifest
