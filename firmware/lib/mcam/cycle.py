"""One wake cycle: the supervisor over the HAL, the flash queue and the MQTT client.

    wake -> config -> watchdog -> battery -> capture (to flash) -> Wi-Fi -> MQTT session -> sleep

MQTT session, pipelined so a cycle without a trigger costs 3 broker round trips:
  1. CONNECT / CONNACK (persistent session, LWT ``status`` = "lost")
  2. SUBSCRIBE cmd + every queued chunk + telemetry, then SUBACKs/PUBACKs (and the retained cmd) collected
     once per window of ``broker.window`` messages
  3. only with a new trigger: the manual capture's chunks / PUBACKs
  4. DISCONNECT (a clean close: the broker drops the LWT)

Failures (Wi-Fi, broker, timeouts) keep the captures in flash, record the error in RTC memory, and
sleep a backed-off retry interval. A bad config sleeps ``config.SAFE_SLEEP_S``. Nothing here may
raise out to main.py except a bug, and main.py sleeps safely on that too.
"""

import gc
import json
import os

from . import FW_VERSION, config, protocol
from .compat import hexstr, ticks_diff
from .flash_queue import FlashQueue
from .mqtt import MQTTClient, MQTTError

MAX_TIDS = 4  # answered trigger ids remembered in RTC memory
PID_CHUNK_RANGE = 60000  # chunk packet ids live in 1..60000; SUBSCRIBE/telemetry above


class UploadError(Exception):
    pass


def _mem_peak():
    try:
        import micropython
        return micropython.mem_peak()
    except (ImportError, AttributeError):
        return None


class Cycle:
    """State of one wake; ``run()`` returns a result dict (what the tests, simulator and bench read)."""

    def __init__(self, hal, config_path="config.json", queue_dir="queue"):
        self.hal = hal
        self.config_path = config_path
        self.queue_dir = queue_dir
        self.t0 = hal.ticks_ms()
        self.st = self._load_state()
        self.cfg = None
        self.client = None
        self.store = None
        self.bat = 0
        self.rssi = None
        self.camera_on = False
        self.buf = None
        self.inflight = {}  # pid -> (key, chunk index)
        self.metas = {}  # key -> meta dict of captures touched this session
        self.result = {"captures": [], "manual_tid": None, "error": None, "round_trips": 0,
                       "bytes_out": 0, "bytes_in": 0, "wifi_mode": None, "wake": None}
        self.heap_hw = 0

    # ---------------------------------------------------------------- RTC state

    def _load_state(self):
        st = None
        try:
            raw = self.hal.rtc_load()
            st = json.loads(raw) if raw else None
        except ValueError:
            st = None
        if not isinstance(st, dict):
            st = {}
        for k, v in (("boot", 0), ("ch", None), ("bssid", None), ("awake_ms", None), ("err", None),
                     ("tids", []), ("fails", 0), ("pid", 1), ("retry", False)):
            st.setdefault(k, v)
        return st

    def _save_state(self):
        self.hal.rtc_save(json.dumps(self.st).encode())

    def _note_heap(self):
        gc.collect()
        used = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
        if used > self.heap_hw:
            self.heap_hw = used

    def log(self, msg):
        self.hal.log(msg)

    # ---------------------------------------------------------------- the cycle

    def run(self):
        self.st["boot"] += 1
        wake = self.hal.wake_reason()
        self.result["wake"] = wake
        try:
            self.cfg = config.load(self.config_path)
        except config.ConfigError as e:
            self.st["err"] = "config: " + str(e)
            self.log("bad config, safe sleep: " + str(e))
            self.result["error"] = self.st["err"]
            return self._sleep(config.SAFE_SLEEP_S, low=True)
        cfg = self.cfg
        self.hal.wdt_start(cfg["watchdog_ms"])
        self.bat = self.read_battery_mv()
        low = self.bat < cfg["low_battery"]["mv"]
        self.result["low_battery"] = low
        self.store = FlashQueue(self.queue_dir, cfg["max_queued"])
        backlog = len(self.store.keys())
        if wake != "timer" or not self.st["retry"]:
            self.capture(protocol.AUTOMATIC, None, flash=cfg["camera"]["flash"] and not low)
        self._note_heap()
        try:
            self.upload(wake, backlog, low)
            self.st["fails"] = 0
            self.st["err"] = None
        except (UploadError, MQTTError, OSError) as e:
            self.st["fails"] += 1
            self.st["err"] = str(e)[:120]
            self.result["error"] = self.st["err"]
            self.log("upload failed: " + self.st["err"])
        finally:
            self._close_network()
        pending = len(self.store.keys())
        self.result["pending"] = pending
        self.st["retry"] = pending > 0
        return self._sleep(self._sleep_s(low, pending), low)

    def _sleep_s(self, low, pending):
        cfg = self.cfg
        interval = cfg["low_battery"]["interval_s"] if low else cfg["wake_interval_s"]
        if not pending or not self.st["fails"]:
            return interval
        backoff = cfg["retry"]["base_s"] * (1 << min(self.st["fails"] - 1, 16))
        return min(backoff, cfg["retry"]["max_s"], interval)

    # ---------------------------------------------------------------- sensors

    def read_battery_mv(self):
        """Average ``adc.samples`` readings (µV at the pin) x divider x calibration -> battery mV."""
        a = self.cfg["adc"]
        total = 0
        for _ in range(a["samples"]):
            total += self.hal.adc_read_uv(a["pin"])
        return int(total / a["samples"] * a["divider"] * a["calibration"] / 1000)

    def capture(self, trig, tid, flash):
        cam = self.cfg["camera"]
        if not self.camera_on:
            self.hal.camera_init(cam["framesize"], cam["quality"])
            self.camera_on = True
        jpeg = self.hal.camera_capture(flash)
        cid = self.cfg["serial"] + "-" + hexstr(os.urandom(8))
        key = self.store.put(jpeg, cid, trig, tid, self.hal.time(), self.bat)
        jpeg = None
        gc.collect()
        self.result["captures"].append(cid)
        self.log("captured " + cid + " (" + trig + ")")
        return key

    # ---------------------------------------------------------------- network

    def _topic(self, kind):
        return protocol.topic(self.cfg["serial"], kind)

    def upload(self, wake, backlog, low):
        cfg = self.cfg
        w = cfg["wifi"]
        try:
            info = self.hal.wifi_connect(w["ssid"], w["password"], self.st["ch"], self.st["bssid"],
                                         w["static_ip"], w["timeout_ms"])
        except OSError as e:
            self.st["ch"] = None  # next time: a full scan
            self.st["bssid"] = None
            raise UploadError("wifi: " + str(e)) from e
        self.st["ch"], self.st["bssid"] = info["channel"], info["bssid"]
        self.rssi = info.get("rssi")
        self.result["wifi_mode"] = info.get("mode")
        self.hal.wdt_feed()
        b = cfg["broker"]
        c = MQTTClient(cfg["serial"], b["host"], b["port"], b["user"], b["password"], b["keepalive"],
                       b["timeout_ms"], sock_factory=self.hal.socket)
        self.client = c
        c.set_last_will(self._topic(protocol.STATUS), protocol.STATUS_LOST, retain=False, qos=1)
        cmds = []
        c.set_callback(lambda topic, msg, retained, dup: cmds.append(msg))
        c.connect(clean_session=False)
        self.hal.wdt_feed()
        c.subscribe(self._topic(protocol.CMD), 1, pid=self._ctl_pid())
        self.buf = bytearray(cfg["chunk_size"])
        try:
            for key in self.store.keys():
                self.send_capture(key)
            tele = protocol.encode_telemetry(
                ts=self.hal.time(), bat=self.bat, rssi=self.rssi, wake=wake, awake_ms=self.st["awake_ms"],
                fw=FW_VERSION, boot=self.st["boot"], err=self.st["err"], pending=backlog)
            c.publish(self._topic(protocol.TELEMETRY), tele, qos=1, pid=self._ctl_pid())
            self._collect()
            c.check_msg(0)
            tid = self._new_trigger(cmds)
            if tid:
                key = self.capture(protocol.MANUAL, tid, flash=cfg["camera"]["flash"] and not low)
                self._remember_tid(tid)
                self.result["manual_tid"] = tid
                self.send_capture(key)
                self._collect()
        finally:
            self._record_acks()
        c.disconnect()

    def _ctl_pid(self):
        p = self.st.get("cpid", PID_CHUNK_RANGE)
        p = p + 1 if p < 65535 else PID_CHUNK_RANGE + 1
        self.st["cpid"] = p
        return p

    def _chunk_pid0(self, n):
        p = self.st["pid"]
        if p + n > PID_CHUNK_RANGE:
            p = 1
        self.st["pid"] = p + n
        return p

    def send_capture(self, key):
        """Publish every not-yet-acknowledged chunk of one queued capture, a window at a time."""
        c = self.client
        meta = self.store.meta(key)
        if meta is None:
            return
        cs = self.cfg["chunk_size"]
        n = protocol.chunk_count(meta["size"], cs)
        if not meta["pid0"]:
            meta["pid0"] = self._chunk_pid0(n)
        self.metas[key] = meta
        acked = meta["acked"]
        resent_upto = meta["sent"]
        topic = self._topic(protocol.CAPTURE)
        mv = memoryview(self.buf)
        with self.store.open_image(key) as f:
            for i in range(n):
                if i in acked:
                    continue
                pid = meta["pid0"] + i
                if len(self.inflight) >= self.cfg["broker"]["window"] or pid in c.pending:
                    self._collect()
                f.seek(i * cs)
                got = f.readinto(mv)
                hdr = protocol.encode_chunk_header(meta["cid"], i, n, meta["size"], meta["sha"], meta["trig"],
                                                   meta["tid"], meta["ts"], meta["bat"])
                self.inflight[pid] = (key, i)
                if i + 1 > meta["sent"]:
                    meta["sent"] = i + 1
                # §4.4: a PUBLISH re-sent in a new connection of the same session keeps its packet id, DUP=1
                c.publish(topic, [hdr, mv[:got]], qos=1, pid=pid, dup=i < resent_upto)
        self._note_heap()

    def _collect(self):
        self.client.wait_acks()
        self.hal.wdt_feed()
        self._record_acks()

    def _record_acks(self):
        """Move acknowledged chunks from ``inflight`` into their capture's metadata; drop finished ones."""
        if self.client is None:
            return
        for pid in [p for p in self.inflight if p not in self.client.pending]:
            key, i = self.inflight.pop(pid)
            self.metas[key]["acked"].append(i)
        cs = self.cfg["chunk_size"]
        for key in list(self.metas):
            meta = self.metas[key]
            if len(meta["acked"]) >= protocol.chunk_count(meta["size"], cs):
                self.store.remove(key)
                del self.metas[key]
            else:
                self.store.save_meta(key, meta)

    def _new_trigger(self, cmds):
        now = self.hal.time()
        for raw in cmds:
            try:
                cmd = protocol.decode_cmd(raw)
            except protocol.ProtocolError as e:
                self.log("ignoring bad cmd: " + str(e))
                continue
            if cmd is None or cmd["tid"] in self.st["tids"]:
                continue
            if now > 1600000000 and cmd["exp"] < now:
                self.log("ignoring expired trigger " + cmd["tid"])
                self._remember_tid(cmd["tid"])
                continue
            return cmd["tid"]
        return None

    def _remember_tid(self, tid):
        self.st["tids"] = (self.st["tids"] + [tid])[-MAX_TIDS:]

    def _close_network(self):
        if self.client is not None:
            self.result["round_trips"] = self.client.round_trips
            self.result["bytes_out"] = self.client.bytes_out
            self.result["bytes_in"] = self.client.bytes_in
            self.client.close()
            self.client = None
        self.buf = None
        self.hal.wifi_off()

    # ---------------------------------------------------------------- sleep

    def _sleep(self, seconds, low):
        """Camera off (PWDN high), flash LED held low, unused pins pulled down, then deep sleep."""
        cfg = self.cfg or config.DEFAULTS
        cam = cfg["camera"]
        if self.camera_on:
            self.hal.camera_deinit()
            self.camera_on = False
        if cam["pwdn_pin"] >= 0:
            self.hal.pin_hold(cam["pwdn_pin"], 1)
        if cam["flash_pin"] >= 0:
            self.hal.pin_hold(cam["flash_pin"], 0)
        for p in cfg["sleep"]["pulldown_pins"]:
            self.hal.pin_pull_down(p)
        awake = ticks_diff(self.hal.ticks_ms(), self.t0)
        self.st["awake_ms"] = awake
        self._save_state()
        self._note_heap()
        door = cfg["door"]
        self.result.update({"sleep_s": seconds, "awake_ms": awake, "battery_mv": self.bat,
                            "boot": self.st["boot"], "heap_peak": _mem_peak(), "heap_hw": self.heap_hw})
        self.hal.deep_sleep(seconds * 1000, door["pin"] if door else None, door["level"] if door else 0)
        return self.result


def run(hal, config_path="config.json", queue_dir="queue"):
    return Cycle(hal, config_path, queue_dir).run()
