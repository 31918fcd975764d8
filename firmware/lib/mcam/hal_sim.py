"""Simulated HAL: the board without the board, for tests (MicroPython) and the simulator (CPython).

Same surface as ``hal_esp32.HAL``. What the cycle asked of the hardware is recorded so tests can read
it: ``sleep.json`` (deep-sleep duration, wake pin, pins held, pins pulled down, camera state), RTC
memory in ``rtc.bin`` (so consecutive ``micropython`` runs in one directory are consecutive wakes),
and ``log.txt``.

Settings (``sim.json`` in the state directory, or the ``settings`` argument), all optional:
  wake            "timer" | "door" | "power_on"
  battery_mv      battery voltage; the ADC reads battery_mv / divider (set ``divider`` like adc.divider)
  jpeg_path       file the camera returns (MicroPython); under CPython pass ``jpeg=`` bytes or a callable
  wifi_ok         false -> every Wi-Fi connect fails after its timeout
  ap_ssid, ap_password   the access point's name and password: when set, a connect with another
                  name or password fails after its timeout, as on the ESP32 (``cannot join``)
  ap_channel, ap_bssid, rssi
  wifi_fast_ms    modelled connect time with remembered channel/BSSID
  wifi_scan_ms    modelled connect time with a full scan
  dhcp_ms         modelled DHCP time (skipped with a static IP)
  camera_ms       modelled sensor start + exposure time
  drop_after_publishes   the link dies after this many complete PUBLISH packets were written
  stall_after_publishes, stall_ms   after this many PUBLISH packets, nothing the broker sends arrives
                  for stall_ms (a congested link; the device must keep its MQTT Keep Alive meanwhile)
  power_loss      the battery was out before this wake: RTC memory is empty and the RTC clock reads
                  2000-01-01 (the ESP32 RTC's reset value). The clock otherwise runs on across deep
                  sleep: ``set_time`` persists its offset from the host clock in ``clock.json``.
  quiet           don't print log lines
"""

import json
import time

from .compat import ticks_ms as _ticks_ms

try:
    from errno import ECONNRESET, ETIMEDOUT
except ImportError:  # pragma: no cover
    ECONNRESET, ETIMEDOUT = 104, 110

RTC_BYTES = 2048  # ESP32 RTC user memory in MicroPython
RTC_RESET_TIME = 946684800  # 2000-01-01: what the ESP32 RTC reads after a power loss

SETTINGS = {
    "wake": "timer",
    "battery_mv": 3900,
    "divider": 2.0,
    "jpeg_path": "capture.jpg",
    "wifi_ok": True,
    "ap_ssid": None,
    "ap_password": None,
    "ap_channel": 6,
    "ap_bssid": "a4:2b:b0:11:22:33",
    "rssi": -67,
    "wifi_fast_ms": 350,
    "wifi_scan_ms": 2300,
    "dhcp_ms": 600,
    "camera_ms": 450,
    "drop_after_publishes": 0,
    "stall_after_publishes": 0,
    "stall_ms": 0,
    "power_loss": False,
    "quiet": False,
}


class FlakyLink:
    """A socket that dies after N complete MQTT PUBLISH packets were sent (parses the outgoing stream)."""

    def __init__(self, sock, publishes):
        self.sock = sock
        self.left = publishes
        self.dead = False
        self._need_first = True
        self._first = 0
        self._len = 0
        self._shift = 0
        self._in_len = False
        self._body = 0

    def _feed(self, data):
        i = 0
        n = len(data)
        while i < n and not self.dead:
            if self._need_first:
                self._first = data[i]
                self._need_first = False
                self._in_len = True
                self._len = 0
                self._shift = 0
                i += 1
            elif self._in_len:
                b = data[i]
                self._len |= (b & 0x7F) << self._shift
                self._shift += 7
                i += 1
                if not b & 0x80:
                    self._in_len = False
                    self._body = self._len
                    if not self._body:
                        self._packet_done()
            else:
                take = min(self._body, n - i)
                self._body -= take
                i += take
                if not self._body:
                    self._packet_done()

    def _packet_done(self):
        self._need_first = True
        if self._first & 0xF0 == 0x30:
            self.left -= 1
            if self.left <= 0:
                self._limit_reached()

    def _limit_reached(self):
        self.dead = True
        self.sock.close()

    def send(self, data):
        if self.dead:
            raise OSError(ECONNRESET)
        n = self.sock.send(data)
        self._feed(memoryview(data)[:n])
        return n

    def recv(self, n):
        if self.dead:
            raise OSError(ECONNRESET)
        return self.sock.recv(n)

    def settimeout(self, t):
        if not self.dead:
            self.sock.settimeout(t)

    def close(self):
        if not self.dead:
            self.sock.close()
        self.dead = True


class StallingLink(FlakyLink):
    """After N PUBLISH packets, what the broker sends stays unread for ``stall_ms`` (the device's
    reads time out meanwhile); what the device sends still goes out."""

    def __init__(self, sock, publishes, stall_ms):
        FlakyLink.__init__(self, sock, publishes)
        self.stall_ms = stall_ms
        self.until = None
        self.timeout = None

    def _limit_reached(self):
        if self.until is None:
            self.until = _ticks_ms() + self.stall_ms

    def settimeout(self, t):
        self.timeout = t
        self.sock.settimeout(t)

    def recv(self, n):
        if self.until is not None:
            left = self.until - _ticks_ms()
            if left > 0:
                wait = left if self.timeout is None else min(left, int(self.timeout * 1000))
                time.sleep(wait / 1000)
                if wait < left:
                    raise OSError(ETIMEDOUT)
        return self.sock.recv(n)


class HAL:
    name = "sim"

    def __init__(self, state_dir=".", settings=None, jpeg=None):
        self.dir = state_dir
        s = dict(SETTINGS)
        if settings is None:
            try:
                with open(state_dir + "/sim.json") as f:
                    settings = json.loads(f.read())
            except OSError:
                settings = {}
        s.update(settings)
        self.settings = s
        self.jpeg = jpeg
        self.virtual_ms = 0  # modelled time added on top of real time (Wi-Fi, camera)
        self.holds = {}
        self.pulldowns = []
        self.camera_on = False
        self.flash_used = False
        self.wifi_on = False
        self.wdt_ms = None
        self.wdt_feeds = 0
        self.slept = None
        self.lines = []
        self.events = []  # camera power steps in order (the rail must be on before the sensor starts)
        if s["power_loss"]:
            self._forget_rtc()

    def _forget_rtc(self):
        import os
        try:
            os.remove(self.dir + "/rtc.bin")
        except OSError:
            pass
        self.set_time(RTC_RESET_TIME)

    def _clock_offset(self):
        try:
            with open(self.dir + "/clock.json") as f:
                return json.loads(f.read())["offset"]
        except (OSError, ValueError, KeyError):
            return 0  # never set: the host clock (the simulator's default)

    # time
    def ticks_ms(self):
        return _ticks_ms() + self.virtual_ms

    def time(self):
        return int(time.time()) + self._clock_offset()

    def set_time(self, unix_s):
        with open(self.dir + "/clock.json", "w") as f:
            f.write(json.dumps({"offset": unix_s - int(time.time())}))

    def wake_reason(self):
        return self.settings["wake"]

    # RTC memory
    def rtc_load(self):
        try:
            with open(self.dir + "/rtc.bin", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def rtc_save(self, data):
        if len(data) > RTC_BYTES:
            raise ValueError("RTC memory holds 2048 bytes")
        with open(self.dir + "/rtc.bin", "wb") as f:
            f.write(data)

    # watchdog
    def wdt_start(self, timeout_ms):
        self.wdt_ms = timeout_ms

    def wdt_feed(self):
        self.wdt_feeds += 1

    # ADC: microvolts at the pin
    def adc_read_uv(self, pin):
        return int(self.settings["battery_mv"] * 1000 / self.settings["divider"])

    # camera
    def camera_power(self, pin, level):
        self.holds.pop(str(pin), None)
        self.events.append(["rail", pin, level])

    def camera_init(self, framesize, quality):
        self.events.append(["camera_init"])
        self.camera_on = True
        self.virtual_ms += self.settings["camera_ms"]

    def camera_capture(self, flash):
        self.flash_used = self.flash_used or flash
        if self.jpeg is not None:
            return self.jpeg() if callable(self.jpeg) else self.jpeg
        import os
        path = self.settings["jpeg_path"]
        path = path if path.startswith("/") else self.dir + "/" + path
        buf = bytearray(os.stat(path)[6])  # exact size: no growing read buffer
        with open(path, "rb") as f:
            f.readinto(buf)
        return buf

    def camera_deinit(self):
        self.camera_on = False

    # Wi-Fi
    def wifi_connect(self, ssid, password, channel, bssid, static_ip, timeout_ms):
        s = self.settings
        if not s["wifi_ok"]:
            self.virtual_ms += timeout_ms
            raise OSError("no access point answered for " + ssid)
        if (s["ap_ssid"] is not None and ssid != s["ap_ssid"]) or (
                s["ap_password"] is not None and password != s["ap_password"]):
            self.virtual_ms += timeout_ms
            raise OSError("cannot join " + ssid)  # what hal_esp32 says: the ESP32 cannot tell which
        fast = channel == s["ap_channel"] and bssid == s["ap_bssid"]
        self.virtual_ms += s["wifi_fast_ms"] if fast else s["wifi_scan_ms"]
        self.virtual_ms += 0 if static_ip else s["dhcp_ms"]
        self.wifi_on = True
        return {"channel": s["ap_channel"], "bssid": s["ap_bssid"], "rssi": s["rssi"],
                "mode": "fast" if fast else "scan"}

    def wifi_off(self):
        self.wifi_on = False

    def socket(self, host, port, timeout_ms):
        from .mqtt import _default_socket
        sock = _default_socket(host, port, timeout_ms)
        if self.settings["drop_after_publishes"]:
            return FlakyLink(sock, self.settings["drop_after_publishes"])
        if self.settings["stall_after_publishes"]:
            return StallingLink(sock, self.settings["stall_after_publishes"], self.settings["stall_ms"])
        return sock

    # pins and sleep
    def pin_hold(self, pin, value):
        self.holds[str(pin)] = value

    def pin_pull_down(self, pin):
        if pin not in self.pulldowns:
            self.pulldowns.append(pin)

    def deep_sleep(self, ms, wake_pin, wake_level):
        self.slept = {"ms": ms, "wake_pin": wake_pin, "wake_level": wake_level, "holds": self.holds,
                      "pulldowns": self.pulldowns, "camera_on": self.camera_on, "wifi_on": self.wifi_on,
                      "flash_used": self.flash_used, "wdt_ms": self.wdt_ms, "events": self.events}
        with open(self.dir + "/sleep.json", "w") as f:
            f.write(json.dumps(self.slept))

    def log(self, msg):
        self.lines.append(msg)
        if not self.settings["quiet"]:
            print("[mcam] " + msg)
        with open(self.dir + "/log.txt", "a") as f:
            f.write(msg + "\n")
