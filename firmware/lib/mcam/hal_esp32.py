"""ESP32-CAM (AI-Thinker) HAL. Needs a MicroPython build with the ``camera`` module
(micropython-camera-driver / lemariva firmware, see firmware/README.md).

Hardware modules are imported lazily inside the methods: this file must import (and mpy-cross
compile) anywhere, and a board without the camera module fails with a clear error at capture time.
"""

import time

RTC_BYTES = 2048
# time.time() counts from 2000-01-01 on older ESP32 builds and from 1970 on newer ones: ask the port
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


class HAL:
    name = "esp32"

    def __init__(self):
        self.wdt = None
        self.wlan = None
        self.held = []

    # time
    def ticks_ms(self):
        return time.ticks_ms()

    def time(self):
        """Unix seconds from the RTC, which runs on through deep sleep (and reads 2000-01-01 after
        a power loss: the cycle then marks readings ``tu`` until the gateway's clock sets it)."""
        return time.time() + _EPOCH_OFFSET

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
        import camera
        import machine
        machine.Pin(32, machine.Pin.OUT, value=0, hold=False)  # release PWDN held during sleep
        camera.init(0, format=camera.JPEG, fb_location=camera.PSRAM)
        camera.framesize(getattr(camera, "FRAME_" + framesize))
        camera.quality(quality)

    def camera_capture(self, flash):
        import camera
        import machine
        led = machine.Pin(4, machine.Pin.OUT, value=0, hold=False)
        if flash:
            led.value(1)
        try:
            jpeg = camera.capture()
        finally:
            led.value(0)
        if not jpeg:
            raise OSError("camera returned no frame")
        return jpeg

    def camera_deinit(self):
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
            esp32.wake_on_ext0(machine.Pin(wake_pin, machine.Pin.IN), wake_level)
        machine.deepsleep(ms)

    def log(self, msg):
        print("[mcam] " + msg)
        try:
            with open("log.txt", "a") as f:
                f.write(msg + "\n")
        except OSError:
            pass
