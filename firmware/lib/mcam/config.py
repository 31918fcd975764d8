"""config.json: load, fill defaults, validate. A bad config raises ConfigError with the key path.

The cycle turns a ConfigError into a logged (and remembered) error plus a safe long sleep: a bad
config never boot-loops the board. firmware/README.md documents every key.
"""

import json

SAFE_SLEEP_S = 3600  # sleep after a bad config: long enough to save the battery, short enough to retry

DEFAULTS = {
    "serial": None,
    "wifi": {"ssid": None, "password": "", "static_ip": None, "timeout_ms": 10000},
    "broker": {"host": None, "port": 1883, "user": None, "password": None, "keepalive": 60,
               "timeout_ms": 5000, "window": 16},
    "wake_interval_s": 3600,
    "low_battery": {"mv": 3400, "interval_s": 21600},
    "chunk_size": 4096,
    "camera": {"framesize": "SVGA", "quality": 12, "flash": False, "flash_pin": 4, "pwdn_pin": 32,
               "rail_pin": -1, "rail_on": 1},
    "adc": {"pin": 33, "divider": 2.0, "calibration": 1.0, "samples": 16},
    "door": {"pin": 13, "level": 0},
    "watchdog_ms": 60000,
    "max_queued": 5,
    "retry": {"base_s": 60, "max_s": 3600},
    "sleep": {"pulldown_pins": [2, 12, 14, 15]},
    # firmware updates (mcam.ota): ``key`` is the owner's cloud's Ed25519 public key (64 hex chars), from
    # `mailcam provision config --ota-key`; without it the device takes no update
    "ota": {"key": None, "bytes_per_wake": 16384, "chunk": 2048, "wait_ms": 4000, "min_mv": 3600, "boots": 3},
}

FRAMESIZES = ("QQVGA", "QVGA", "CIF", "VGA", "SVGA", "XGA", "HD", "SXGA", "UXGA")


class ConfigError(ValueError):
    pass


def _merge(defaults, given, path):
    if not isinstance(given, dict):
        raise ConfigError("{} must be an object".format(path or "config"))
    out = {}
    for k in defaults:
        d = defaults[k]
        if isinstance(d, dict) and k in given and given[k] is not None:
            out[k] = _merge(d, given[k], path + k + ".")
        else:
            out[k] = given.get(k, d)
    for k in given:
        if k not in defaults:
            raise ConfigError("unknown key: {}{}".format(path, k))
    return out


def _int(cfg, path, lo, hi):
    v = _get(cfg, path)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError("{} must be an integer in {}..{}, got {!r}".format(path, lo, hi, v))


def _num(cfg, path, lo, hi):
    v = _get(cfg, path)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError("{} must be a number in {}..{}, got {!r}".format(path, lo, hi, v))


def _str(cfg, path, optional=False):
    v = _get(cfg, path)
    if v is None and optional:
        return
    if not isinstance(v, str) or (not optional and not v):
        raise ConfigError("{} must be a non-empty string".format(path))


def _get(cfg, path):
    v = cfg
    for part in path.split("."):
        v = v[part]
    return v


def validate(cfg):
    from .protocol import valid_serial
    if not valid_serial(cfg["serial"]):
        raise ConfigError("serial must be 1-32 chars of [A-Za-z0-9_-], got {!r}".format(cfg["serial"]))
    _str(cfg, "wifi.ssid")
    _str(cfg, "wifi.password", optional=True)
    ip = cfg["wifi"]["static_ip"]
    if ip is not None:
        if not isinstance(ip, dict):
            raise ConfigError("wifi.static_ip must be null or an object")
        for k in ("ip", "netmask", "gateway", "dns"):
            if not isinstance(ip.get(k), str):
                raise ConfigError("wifi.static_ip.{} must be a dotted address".format(k))
    _int(cfg, "wifi.timeout_ms", 1000, 60000)
    _str(cfg, "broker.host")
    _int(cfg, "broker.port", 1, 65535)
    _str(cfg, "broker.user", optional=True)
    _str(cfg, "broker.password", optional=True)
    if cfg["broker"]["password"] is not None and cfg["broker"]["user"] is None:
        raise ConfigError("broker.password needs broker.user")
    _int(cfg, "broker.keepalive", 0, 65535)
    _int(cfg, "broker.timeout_ms", 500, 60000)
    _int(cfg, "broker.window", 1, 64)
    _int(cfg, "wake_interval_s", 10, 7 * 86400)
    _int(cfg, "low_battery.mv", 0, 10000)
    _int(cfg, "low_battery.interval_s", 10, 7 * 86400)
    _int(cfg, "chunk_size", 256, 65536)
    if cfg["camera"]["framesize"] not in FRAMESIZES:
        raise ConfigError("camera.framesize must be one of {}".format(", ".join(FRAMESIZES)))
    _int(cfg, "camera.quality", 2, 63)
    if not isinstance(cfg["camera"]["flash"], bool):
        raise ConfigError("camera.flash must be true or false")
    _int(cfg, "camera.flash_pin", -1, 39)
    _int(cfg, "camera.pwdn_pin", -1, 39)
    _int(cfg, "camera.rail_pin", -1, 39)
    _int(cfg, "camera.rail_on", 0, 1)
    _int(cfg, "adc.pin", 0, 39)
    _num(cfg, "adc.divider", 1.0, 100.0)
    _num(cfg, "adc.calibration", 0.5, 1.5)
    _int(cfg, "adc.samples", 1, 256)
    if cfg["door"] is not None:
        _int(cfg, "door.pin", 0, 39)
        _int(cfg, "door.level", 0, 1)
    _int(cfg, "watchdog_ms", 5000, 600000)
    _int(cfg, "max_queued", 1, 100)
    _int(cfg, "retry.base_s", 5, 86400)
    _int(cfg, "retry.max_s", 5, 7 * 86400)
    pins = cfg["sleep"]["pulldown_pins"]
    if not isinstance(pins, list) or [p for p in pins if not isinstance(p, int) or not 0 <= p <= 39]:
        raise ConfigError("sleep.pulldown_pins must be a list of GPIO numbers")
    key = cfg["ota"]["key"]
    if key is not None and (not isinstance(key, str) or len(key) != 64 or key.strip("0123456789abcdef")):
        raise ConfigError("ota.key must be null or the cloud's Ed25519 public key as 64 lowercase hex chars")
    _int(cfg, "ota.bytes_per_wake", 1024, 1024 * 1024)
    _int(cfg, "ota.chunk", 256, 8192)
    _int(cfg, "ota.wait_ms", 500, 60000)
    _int(cfg, "ota.min_mv", 0, 10000)
    _int(cfg, "ota.boots", 1, 20)
    if cfg["camera"]["rail_pin"] in pins:
        raise ConfigError("camera.rail_pin {} is also in sleep.pulldown_pins".format(cfg["camera"]["rail_pin"]))
    return cfg


def parse(text):
    try:
        given = json.loads(text)
    except ValueError as e:
        raise ConfigError("config.json is not valid JSON: {}".format(e)) from e
    return validate(_merge(DEFAULTS, given, ""))


def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("cannot read {}: {}".format(path, e)) from e
    return parse(text)


def with_settings(cfg, values):
    """A copy of a valid ``cfg`` with remote settings applied ({path: value}, protocol.SETTABLE paths),
    validated by the same rules as config.json; ConfigError names the first bad path."""
    from .protocol import SETTABLE
    if not isinstance(values, dict):
        raise ConfigError("settings must be an object")
    out = json.loads(json.dumps(cfg))  # deep copy, also on MicroPython
    for path in values:
        if path not in SETTABLE:
            raise ConfigError("{} cannot be set remotely".format(path))
        parts = path.split(".")
        node = out
        for part in parts[:-1]:
            if node.get(part) is None:
                raise ConfigError("{} is not configured on this device".format(path))
            node = node[part]
        node[parts[-1]] = values[path]
    return validate(out)
