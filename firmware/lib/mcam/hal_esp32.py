"""ESP32-CAM (AI-Thinker) HAL. Needs a MicroPython build with a ``camera`` module and PSRAM
(see firmware/README.md):

- primary: cnadler86/micropython-camera-API (``from camera import Camera, PixelFormat, FrameSize``),
  precompiled ESP32-CAM firmware on current MicroPython;
- fallback, detected at run time: the older lemariva micropython-camera-driver (``camera.init(...)``).

Every ESP32-only call here follows the MicroPython ESP32 docs (docs/esp32/quickref.rst, library/esp32.rst):
``Pin(..., hold=)`` pad hold, ``esp32.gpio_deep_sleep_hold(bool)``, ``esp32.wake_on_ext0(Pin, WAKEUP_*)``,
``ADC(pin, atten=).read_uv()`` (ADC1 pins only while Wi-Fi is on), ``WLAN.status("rssi")``,
``RTC.datetime(tuple)``, ``machine.wake_reason()`` with ``EXT0_WAKE``/``EXT1_WAKE``/``TIMER_WAKE``.
tests/firmware/test_hal_esp32.py runs this file under the unix port against stand-ins of those modules
that enforce the documented signatures.

Hardware modules are imported lazily inside the methods: this file must import (and mpy-cross
compile) anywhere, and a board without the camera module fails with a clear error at capture time.
"""

import time

RTC_BYTES = 2048
PWDN_PIN = 32
FLASH_LED_PIN = 4
# AI-Thinker ESP32-CAM camera wiring, passed explicitly so generic camera-API builds work too
AI_THINKER = {"data_pins": [5, 18, 19, 21, 36, 39, 34, 35], "vsync_pin": 25, "href_pin": 23, "sda_pin": 26,
              "scl_pin": 27, "pclk_pin": 22, "xclk_pin": 0, "xclk_freq": 20000000, "powerdown_pin": PWDN_PIN,
              "reset_pin": -1}
# time.time() counts from 2000-01-01 on older ESP32 builds and from 1970 on newer ones: ask the port
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def jpeg_percent(quality):
    """esp32-camera quality (0-63, lower = better) -> the camera API's percent (0-100, higher = better);
    the API maps percent back with 63 - percent * 63 / 100."""
    return ((63 - quality) * 100 + 62) // 63  # rounded up, so the API's truncating map gives ``quality`` back


class HAL:
    name = "esp32"

    def __init__(self):
        self.wdt = None
        self.wlan = None
        self.held = []
        self.cam = None  # a camera-API Camera; None with the lemariva driver or when off

    # time
    def ticks_ms(self):
        return time.ticks_ms()

    def time(self):
        """Unix seconds from the RTC, which runs on through deep sleep (and reads 2000-01-01 after
        a power loss: the cycle then marks readings ``tu`` until the gateway's clock sets it)."""
        return int(time.time()) + _EPOCH_OFFSET  # an int on the ESP32 port, a float on others

    def set_time(self, unix_s):
        import machine
        y, mo, d, h, mi, s, wd = time.gmtime(unix_s - _EPOCH_OFFSET)[:7]
        machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))  # RTC.datetime() order: weekday 4th

    def wake_reason(self):
        import machine
        r = machine.wake_reason()
        if r in (machine.EXT0_WAKE, machine.EXT1_WAKE):
            return "door"
        if r == machine.TIMER_WAKE:
            return "timer"
        return "power_on"

    # RTC memory survives deep sleep
    def rtc_load(self):
        import machine
        return machine.RTC().memory()

    def rtc_save(self, data):
        import machine
        if len(data) > RTC_BYTES:
            raise ValueError("RTC memory holds 2048 bytes")
        machine.RTC().memory(data)

    # watchdog
    def wdt_start(self, timeout_ms):
        import machine
        self.wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self.wdt:
            self.wdt.feed()

    # ADC
    def adc_read_uv(self, pin):
        import machine
        adc = machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)
        return adc.read_uv()  # factory-calibrated microvolts

    # camera
    def camera_power(self, pin, level):
        """Switch the camera rail on (a transistor on a spare GPIO, see firmware/README.md)."""
        import machine
        machine.Pin(pin, machine.Pin.OUT, value=level, hold=False)
        time.sleep_ms(5)  # let the LDOs of the sensor settle before its XCLK starts

    def camera_init(self, framesize, quality):
        """``quality`` is the config's 2-63 (esp32-camera scale, lower = better)."""
        import camera
        import machine
        machine.Pin(PWDN_PIN, machine.Pin.OUT, value=0, hold=False)  # release PWDN held during sleep
        if hasattr(camera, "Camera"):
            self.cam = camera.Camera(pixel_format=camera.PixelFormat.JPEG,
                                     frame_size=getattr(camera.FrameSize, framesize),
                                     jpeg_quality=jpeg_percent(quality), fb_count=1,
                                     grab_mode=camera.GrabMode.WHEN_EMPTY, **AI_THINKER)
        else:
            camera.init(0, format=camera.JPEG, fb_location=camera.PSRAM)
            camera.framesize(getattr(camera, "FRAME_" + framesize))
            camera.quality(quality)

    def camera_capture(self, flash):
        """The JPEG; with the camera API a memoryview into the frame buffer, valid until the next
        capture or ``camera_deinit`` (the cycle writes it to flash at once)."""
        import machine
        led = machine.Pin(FLASH_LED_PIN, machine.Pin.OUT, value=0, hold=False)
        if flash:
            led.value(1)
        try:
            if self.cam is not None:
                jpeg = self.cam.capture()
            else:
                import camera
                jpeg = camera.capture()
        finally:
            led.value(0)
        if not jpeg:
            raise OSError("camera returned no frame")
        return jpeg

    def camera_deinit(self):
        if self.cam is not None:
            self.cam.deinit()
            self.cam = None
            return
        import camera
        camera.deinit()

    # Wi-Fi: remembered channel/BSSID first, then a full scan; each step bounded
    def wifi_connect(self, ssid, password, channel, bssid, static_ip, timeout_ms):
        import network
        w = network.WLAN(network.STA_IF)
        self.wlan = w
        w.active(True)
        if static_ip:
            w.ifconfig((static_ip["ip"], static_ip["netmask"], static_ip["gateway"], static_ip["dns"]))
        if channel and bssid and self._join(w, ssid, password, self._mac(bssid), timeout_ms // 3):
            return self._info(w, channel, bssid, "fast")
        nets = [n for n in w.scan() if n[0] == ssid.encode()]  # (ssid, bssid, channel, rssi, ...)
        nets.sort(key=lambda n: -n[3])
        for n in nets[:2]:
            if self._join(w, ssid, password, n[1], timeout_ms // 3):
                return self._info(w, n[2], ":".join("%02x" % x for x in n[1]), "scan")
        w.active(False)
        raise OSError("cannot join " + ssid)

    def _mac(self, s):
        return bytes(int(x, 16) for x in s.split(":"))

    def _join(self, w, ssid, password, bssid, timeout_ms):
        try:
            w.connect(ssid, password, bssid=bssid)
        except OSError:
            return False
        start = time.ticks_ms()
        while not w.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                w.disconnect()
                return False
            time.sleep_ms(20)
        return True

    def _info(self, w, channel, bssid, mode):
        try:
            rssi = w.status("rssi")
        except (ValueError, OSError):
            rssi = None
        return {"channel": channel, "bssid": bssid, "rssi": rssi, "mode": mode}

    def wifi_off(self):
        if self.wlan:
            self.wlan.active(False)

    def socket(self, host, port, timeout_ms):
        from .mqtt import _default_socket
        return _default_socket(host, port, timeout_ms)

    # pins and sleep
    def pin_hold(self, pin, value):
        import machine
        machine.Pin(pin, machine.Pin.OUT, value=value, hold=True)

    def pin_pull_down(self, pin):
        import machine
        machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_DOWN, hold=True)

    def deep_sleep(self, ms, wake_pin, wake_level):
        import esp32
        import machine
        esp32.gpio_deep_sleep_hold(True)  # keep PWDN high and the flash LED low through sleep
        if wake_pin is not None:
            level = esp32.WAKEUP_ANY_HIGH if wake_level else esp32.WAKEUP_ALL_LOW
            esp32.wake_on_ext0(machine.Pin(wake_pin, machine.Pin.IN), level)
        machine.deepsleep(ms)

    def log(self, msg):
        print("[mcam] " + msg)
        try:
            with open("log.txt", "a") as f:
                f.write(msg + "\n")
        except OSError:
            pass
