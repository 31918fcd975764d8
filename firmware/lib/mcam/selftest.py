"""The installer's self-test, run on the board itself (``mailcam provision check`` sends it over the
serial line): every check uses the firmware's own HAL and config code, so what passes here is what
a wake will do.

    config   config.json parses and validates (or the config given, before it is written)
    camera   the sensor starts and returns a JPEG
    battery  the ADC reading (divider, calibration applied) is within a single Li-ion cell's range
    wifi     the configured network accepts the password; its RSSI
    broker   TCP to the broker and an MQTT CONNECT with the device's login (CONNACK 0)
    time     the RTC holds a real date (the gateway's clock topic sets it on the first wake)

``run`` returns {check: [ok, detail]}; a failed check never stops the others. Nothing secret is put
in a detail: the installer prints these on a customer's kitchen table.
"""

from . import config as fw_config
from . import protocol

BATTERY_MV = (3000, 4400)  # one Li-ion cell behind the divider; outside it: wiring or calibration
ALL = ("config", "camera", "battery", "wifi", "broker", "time")


def _camera(hal, cfg):
    cam = cfg["camera"]
    if cam["rail_pin"] >= 0:
        hal.camera_power(cam["rail_pin"], cam["rail_on"])
    hal.camera_init(cam["framesize"], cam["quality"])
    try:
        jpeg = hal.camera_capture(False)
    finally:
        hal.camera_deinit()
    if not jpeg or bytes(jpeg[:2]) != b"\xff\xd8":
        return False, "the camera returned no JPEG"
    return True, "{} KB {} JPEG".format(len(jpeg) // 1024, cam["framesize"])


def _battery(hal, cfg):
    a = cfg["adc"]
    total = 0
    for _ in range(a["samples"]):
        total += hal.adc_read_uv(a["pin"])
    mv = int(total / a["samples"] * a["divider"] * a["calibration"] / 1000)
    low, high = BATTERY_MV
    if not low <= mv <= high:
        return False, "{} mV is outside {}..{} mV (divider or ADC pin wrong?)".format(mv, low, high)
    return True, "{} mV".format(mv)


def _wifi(hal, cfg, state):
    w = cfg["wifi"]
    try:
        info = hal.wifi_connect(w["ssid"], w["password"], None, None, w["static_ip"], w["timeout_ms"])
    except OSError as e:
        return False, "cannot join {!r}: {} (check the network name and the password)".format(w["ssid"], e)
    state["wifi"] = True
    return True, "joined {!r}, RSSI {} dBm, channel {}".format(w["ssid"], info.get("rssi"), info.get("channel"))


def _broker(hal, cfg, state):
    from .mqtt import MQTTClient, MQTTError

    if not state.get("wifi"):
        return False, "no Wi-Fi"
    b = cfg["broker"]
    cid = protocol.client_id(cfg["serial"])[:20] + "chk"  # never the device's own persistent session
    client = MQTTClient(cid, b["host"], b["port"], b["user"], b["password"], 30, b["timeout_ms"],
                        sock_factory=hal.socket)
    try:
        client.connect(clean_session=True)
        client.disconnect()
    except (MQTTError, OSError) as e:
        return False, "{}:{}: {}".format(b["host"], b["port"], e)
    finally:
        client.close()
    login = "as {}".format(b["user"]) if b["user"] else "anonymously"
    return True, "{}:{} accepted the login {}".format(b["host"], b["port"], login)


def _time(hal, cfg):
    now = hal.time()
    if not protocol.time_is_sane(now):
        return False, "the clock is not set yet (the first wake through the gateway sets it)"
    return True, "{} (unix)".format(now)


def run(hal, config_text=None, checks=ALL):
    """Run ``checks``; ``config_text`` is checked instead of the board's config.json when given."""
    results = {}
    try:
        cfg = fw_config.parse(config_text) if config_text is not None else fw_config.load("config.json")
    except fw_config.ConfigError as e:
        return {"config": [False, str(e)]}
    results["config"] = [True, "serial {}".format(cfg["serial"])]
    state = {}
    steps = {"camera": lambda: _camera(hal, cfg), "battery": lambda: _battery(hal, cfg),
             "wifi": lambda: _wifi(hal, cfg, state), "broker": lambda: _broker(hal, cfg, state),
             "time": lambda: _time(hal, cfg)}
    try:
        for name in ALL:
            if name in steps and name in checks:
                try:
                    results[name] = list(steps[name]())
                except Exception as e:  # a check that crashes is a failed check, reported with its error
                    results[name] = [False, "{}: {}".format(type(e).__name__, e)]
    finally:
        if state.get("wifi"):
            hal.wifi_off()
    return results
