"""Stand-in for MicroPython's ``network`` WLAN (docs/library/network.WLAN.rst): one access point."""

import board

STA_IF = 0
AP_IF = 1
AP = {"ssid": b"home", "bssid": bytes([0xA4, 0x2B, 0xB0, 0x11, 0x22, 0x33]), "channel": 6, "rssi": -61}


class WLAN:
    IF_STA = 0
    IF_AP = 1

    def __init__(self, interface_id=0):
        self.connected = False

    def active(self, *is_active):
        if is_active:
            board.STATE["wifi_active"] = bool(is_active[0])
            if not is_active[0]:
                self.connected = False
        return board.STATE["wifi_active"]

    def scan(self):
        self._need_active()
        return [(AP["ssid"], AP["bssid"], AP["channel"], AP["rssi"], 3, False)]

    # WLAN.connect(ssid=None, key=None, *, bssid=None)
    def connect(self, ssid=None, key=None, *, bssid=None):
        self._need_active()
        if bssid is not None and not isinstance(bssid, (bytes, bytearray)):
            raise TypeError("bssid is a MAC address as bytes")
        self.connected = ssid == AP["ssid"].decode() and bssid in (None, AP["bssid"])
        board.log("WLAN.connect", ssid, bssid is not None)

    def isconnected(self):
        return self.connected

    def disconnect(self):
        self.connected = False

    def ifconfig(self, *config):
        if config and (len(config[0]) != 4 or not all(isinstance(x, str) for x in config[0])):
            raise ValueError("ifconfig takes (ip, subnet, gateway, dns)")
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def status(self, *param):
        if not param:
            return 1010 if self.connected else 1000
        if param[0] != "rssi":
            raise ValueError("unknown status param")
        if not self.connected:
            raise OSError("not connected")
        return AP["rssi"]

    def _need_active(self):
        if not board.STATE["wifi_active"]:
            raise OSError("Wifi Not Started")
