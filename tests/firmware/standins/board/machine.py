"""Stand-in for MicroPython's ``machine`` on the ESP32 (docs/esp32/quickref.rst, docs/library/machine*.rst)."""

import time

import board

EXT0_WAKE = 2  # ESP_SLEEP_WAKEUP_EXT0, as ports/esp32/modmachine.c
PIN_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

_VALID_PINS = list(range(0, 20)) + [21, 22, 23, 25, 26, 27] + list(range(32, 40))
_ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)
_ADC2 = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    # Pin(id, mode=-1, pull=-1, *, value=None, drive=0, alt=-1, hold=None)
    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=-1, hold=None):
        if id not in _VALID_PINS:
            raise ValueError("invalid pin")
        if id >= 34 and mode == Pin.OUT:
            raise ValueError("pins 34-39 are input only")
        self.id = id
        st = board.PINS.setdefault(id, {"mode": None, "value": None, "pull": None, "hold": False})
        if st["hold"] and hold is not True and hold is not False:
            return  # held: "any further changes ... will not be applied" (quickref, pad hold)
        if mode != -1:
            st["mode"] = mode
        if pull != -1:
            st["pull"] = pull
        if value is not None:
            st["value"] = 1 if value else 0
        if hold is not None:
            st["hold"] = bool(hold)
        board.log("Pin", id, st["mode"], st["value"], st["pull"], st["hold"])

    def value(self, *v):
        st = board.PINS[self.id]
        if not v:
            return st["value"]
        if not st["hold"]:
            st["value"] = 1 if v[0] else 0
            board.log("Pin.value", self.id, st["value"])

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    # ADC(pin, *, atten)  (ESP32-specific class reference in the quickref)
    def __init__(self, pin, *, atten=None):
        if not isinstance(pin, Pin):
            raise TypeError("ADC takes a Pin")
        if pin.id not in _ADC1 + _ADC2:
            raise ValueError("invalid Pin for ADC")
        if atten not in (None, ADC.ATTN_0DB, ADC.ATTN_2_5DB, ADC.ATTN_6DB, ADC.ATTN_11DB):
            raise ValueError("invalid atten")
        self.pin = pin.id
        self.atten = atten

    def read_uv(self):
        # "ADC block 2 is also used by WiFi ... reading block 2 pins when WiFi is active will raise"
        if self.pin in _ADC2 and board.STATE["wifi_active"]:
            raise OSError("ADC2 in use by Wi-Fi")
        board.log("ADC.read_uv", self.pin, self.atten)
        return 1950000  # "only millivolt resolution": a multiple of 1000


class RTC:
    def memory(self, *data):
        if not data:
            return board.STATE["rtc_memory"]
        if len(data[0]) > 2048:  # MICROPY_HW_RTC_USER_MEM_MAX
            raise ValueError("buffer too long")
        board.STATE["rtc_memory"] = bytes(data[0])

    def datetime(self, *dt):
        if not dt:
            return time.gmtime(time.time() + board.STATE["rtc_offset"])
        t = dt[0]
        if not isinstance(t, tuple) or len(t) != 8:
            raise TypeError("datetime takes (year, month, day, weekday, hours, minutes, seconds, subseconds)")
        y, mo, d, _wd, h, mi, s, _sub = t
        board.STATE["rtc_offset"] = time.mktime((y, mo, d, h, mi, s, 0, 0)) - int(time.time())
        board.log("RTC.datetime", list(t))


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout < 1000:
            raise ValueError("the ESP32 WDT minimum is 1 s")
        board.log("WDT", timeout)

    def feed(self):
        pass


def wake_reason():
    return board.STATE["wake"]


def deepsleep(time_ms=None):
    board.log("deepsleep", time_ms)
