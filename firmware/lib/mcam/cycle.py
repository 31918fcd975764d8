"""One wake cycle: the supervisor over the HAL, the flash queue and the MQTT client.

    wake -> config -> watchdog -> battery -> capture (to flash) -> Wi-Fi -> MQTT session -> sleep

MQTT session, pipelined so a cycle costs 3 broker round trips (with or without a trigger):
  1. CONNECT + SUBSCRIBE (cmd, clock, settings) + PINGREQ in one write; CONNACK, SUBACK, the retained
     clock, cmd and settings, PINGRESP back (persistent session, LWT ``status`` = "lost"). The clock sets the RTC and
     corrects this power-on's captures not sent yet; a new trigger is photographed right away.
  2. every unacknowledged telemetry of earlier wakes, every queued chunk, this wake's telemetry; the
     PUBACKs collected once per window of ``broker.window`` messages
  3. DISCONNECT (a clean close: the broker drops the LWT)

A firmware update (``mcam.ota``) adds one exchange only to the wakes that download: the retained
offer comes with round trip 1, the request for the next piece goes out with round trip 2, and the
gateway's chunks are awaited once (``ota.wait_ms``) before DISCONNECT. Installing (signature, hashes,
copy to the free slot) happens after the radio is off.

What must outlive RTC memory (a power loss empties it) is in flash next to the queue: the answered
trigger ids (``answered.json``), telemetry the broker has not acknowledged (``telemetry.json``,
re-sent with its packet id on the next connection of the session, MQTT-4.4.0-1), and the remote
settings in effect (``settings.json``, from the retained ``settings`` topic read in round trip 1).

Failures (Wi-Fi, broker, timeouts) keep the captures in flash, record the error in RTC memory, and
sleep a backed-off retry interval. A bad config sleeps ``config.SAFE_SLEEP_S``. Nothing here may
raise out to main.py except a bug, and main.py sleeps safely on that too.
"""

import gc
import json
import os

from . import FW_VERSION, config, flashjson, protocol
from .compat import hexstr, ticks_diff
from .flash_queue import FlashQueue
from .mqtt import MQTTClient, MQTTError

MAX_TIDS = 4  # answered trigger ids remembered (RTC memory and flash)
MAX_TELEMETRY = 4  # unacknowledged telemetry messages kept for redelivery
PID_CHUNK_RANGE = 60000  # chunk packet ids live in 1..60000; SUBSCRIBE/telemetry above


class UploadError(Exception):
    pass


def _mem_peak():
    try:
        import micropython
        return micropython.mem_peak()
    except (ImportError, AttributeError):
        return None


def _ignore_publish(topic, msg, retained, dup):
    pass


class Cycle:
    """State of one wake; ``run()`` returns a result dict (what the tests, simulator and bench read)."""

    def __init__(self, hal, config_path="config.json", queue_dir="queue"):
        self.hal = hal
        self.config_path = config_path
        self.queue_dir = queue_dir
        self.t0 = hal.ticks_ms()
        self.st = self._load_state()
        self.cfg = None
        self.base_cfg = None  # config.json alone, without remote settings
        self.cfgv = None  # version of the remote settings in effect this wake
        self.client = None
        self.store = None
        self.bat = 0
        self.rssi = None
        self.camera_on = False
        self.buf = None
        self.inflight = {}  # pid -> (key, chunk index)
        self.metas = {}  # key -> meta dict of captures touched this session
        self.telemetry = []  # [{"pid", "msg", "sent"}] not yet acknowledged by the broker
        self.result = {"captures": [], "manual_tid": None, "error": None, "round_trips": 0,
                       "bytes_out": 0, "bytes_in": 0, "wifi_mode": None, "wake": None,
                       "client_id": None, "clock_step": None}
        self.heap_hw = 0
        self.ota = None  # mcam.ota.Updater when the config has an update key

    # ---------------------------------------------------------------- RTC state

    def _load_state(self):
        st = None
        try:
            raw = self.hal.rtc_load()
            st = json.loads(raw) if raw else None
        except ValueError:
            st = None
        if not isinstance(st, dict) or not st:
            # RTC memory lost (power-on): the answered triggers are in flash too
            st = {"tids": flashjson.read(self._path("answered.json")) or []}
        if "pe" not in st:
            st["pe"] = hexstr(os.urandom(4))  # a power epoch: the RTC clock counts from this reset
        for k, v in (("boot", 0), ("ch", None), ("bssid", None), ("awake_ms", None), ("err", None),
                     ("tids", []), ("fails", 0), ("pid", 1), ("retry", False)):
            st.setdefault(k, v)
        return st

    def _path(self, name):
        return self.queue_dir + "/" + name

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
            self.base_cfg = config.load(self.config_path)
        except config.ConfigError as e:
            self.st["err"] = "config: " + str(e)
            self.log("bad config, safe sleep: " + str(e))
            self.result["error"] = self.st["err"]
            return self._sleep(config.SAFE_SLEEP_S, low=True)
        self.cfg = self._apply_kept_settings(self.base_cfg)
        cfg = self.cfg
        self.hal.wdt_start(cfg["watchdog_ms"])
        self.bat = self.read_battery_mv()
        low = self.bat < cfg["low_battery"]["mv"]
        self.result["low_battery"] = low
        self.store = FlashQueue(self.queue_dir, cfg["max_queued"])
        backlog = len(self.store.keys())
        if wake != "timer" or not self.st["retry"]:
            self.capture(protocol.AUTOMATIC, None, flash=cfg["camera"]["flash"] and not low, wake=wake)
        self._note_heap()
        try:
            self.upload(wake, backlog, low)
            self.st["fails"] = 0
            self.st["err"] = None
            if self.ota and self.ota.confirm():
                self.log("firmware " + FW_VERSION + " completed a wake: confirmed")
        except (UploadError, MQTTError, OSError) as e:
            self.st["fails"] += 1
            self.st["err"] = str(e)[:120]
            self.result["error"] = self.st["err"]
            self.log("upload failed: " + self.st["err"])
        finally:
            self._close_network()
        if self.ota:
            self._finish_update()
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

    def capture(self, trig, tid, flash, wake):
        cam = self.cfg["camera"]
        if not self.camera_on:
            if cam["rail_pin"] >= 0:
                self.hal.camera_power(cam["rail_pin"], cam["rail_on"])  # the switched 3.3 V/2.8 V/1.2 V rail
            self.hal.camera_init(cam["framesize"], cam["quality"])
            self.camera_on = True
        jpeg = self.hal.camera_capture(flash)
        cid = self.cfg["serial"] + "-" + hexstr(os.urandom(8))
        ts = self.hal.time()
        key = self.store.put(jpeg, cid, trig, tid, ts, self.bat, wake)
        jpeg = None
        gc.collect()
        if not protocol.time_is_sane(ts):
            # stamped by an unset clock: marked, and tied to this power epoch so a later clock fix
            # (same RTC, still counting from the same reset) can correct it
            meta = self.store.meta(key)
            meta["tu"] = 1
            meta["pe"] = self.st["pe"]
            self.store.save_meta(key, meta)
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
        cid = protocol.client_id(cfg["serial"])
        self.result["client_id"] = cid
        c = MQTTClient(cid, b["host"], b["port"], b["user"], b["password"], b["keepalive"],
                       b["timeout_ms"], sock_factory=self.hal.socket)
        self.client = c
        c.set_last_will(self._topic(protocol.STATUS), protocol.STATUS_LOST, retain=False, qos=1)
        cmd_topic = self._topic(protocol.CMD)
        got = []
        c.set_callback(lambda topic, msg, retained, dup: got.append((topic, msg)))
        sub_pid = self._ctl_pid()
        settings_topic = self._topic(protocol.SETTINGS)
        subs = [(cmd_topic, 1), (protocol.CLOCK_TOPIC, 1), (settings_topic, 1)]
        if cfg["ota"]["key"]:
            from .ota import Updater
            self.ota = Updater(cfg, self.bat)
            subs += [(self._topic(protocol.OTA), 1), (self._topic(protocol.FW), 0)]  # chunks: QoS 0
        c.connect(clean_session=False, subscribe=subs, sub_pid=sub_pid)
        self.hal.wdt_feed()
        granted = c.granted.get(sub_pid) or [0x80]
        if granted[0] == 0x80:
            raise UploadError("broker refused the cmd subscription (ACL?)")
        cmd_b = cmd_topic.encode()
        clock_b = protocol.CLOCK_TOPIC.encode()
        self._sync_clock([m for t, m in got if t == clock_b])
        settings_b = settings_topic.encode()
        self._take_settings([m for t, m in got if t == settings_b])
        tid = self._new_trigger([m for t, m in got if t == cmd_b])
        fwreq = None
        if self.ota:
            ota_b = self._topic(protocol.OTA).encode()
            fwreq = self.ota.take_offer([m for t, m in got if t == ota_b])
        # From here on, what arrives (the clock republished, a new trigger) waits for the next wake:
        # retained, it is delivered again then. The callback must still accept it (a None list here
        # crashed the cycle mid-upload when the gateway republished the clock). Firmware chunks go
        # to the updater.
        if fwreq:
            fw_b = self._topic(protocol.FW).encode()
            updater = self.ota
            c.set_callback(lambda topic, msg, retained, dup: topic == fw_b and updater.on_chunk(msg))
        else:
            c.set_callback(_ignore_publish)
        got = None
        if tid:
            self.capture(protocol.MANUAL, tid, flash=cfg["camera"]["flash"] and not low, wake="manual")
            self._answered(tid)
            self.result["manual_tid"] = tid
        self.buf = bytearray(cfg["chunk_size"])
        try:
            self._resend_telemetry()
            for key in self.store.keys():
                self.send_capture(key)
            ts = self.hal.time()
            tele = protocol.encode_telemetry(
                ts=ts, bat=self.bat, rssi=self.rssi, wake=wake, awake_ms=self.st["awake_ms"], fw=FW_VERSION,
                boot=self.st["boot"], err=self.st["err"], pending=backlog, tu=not protocol.time_is_sane(ts),
                cfgv=self.cfgv, cfge=self.st.get("cfge"), ota=self.ota and self.ota.report())
            self._publish_telemetry({"pid": self._ctl_pid(), "msg": tele.decode(), "sent": False})
            if fwreq:
                c.publish(self._topic(protocol.FWREQ), fwreq, qos=1, pid=self._ctl_pid())
            self._collect()
            if fwreq:
                self._receive_update()
        finally:
            self._record_acks()
            self._keep_telemetry()
        c.disconnect()

    # ---------------------------------------------------------------- firmware updates (mcam.ota)

    def _receive_update(self):
        """Wait (bounded by ``ota.wait_ms``) for the chunks the gateway sends in answer to this wake's request."""
        u = self.ota
        if not u.done_receiving():
            self.client.wait_until(u.done_receiving, self.cfg["ota"]["wait_ms"])
        self.hal.wdt_feed()
        self.result["ota_bytes"] = u.got

    def _finish_update(self):
        """After the radio is off: install a complete download (signature, hashes, the free slot)."""
        self.ota.finish(self.cfg["ota"]["boots"])
        self.ota.save()
        self.result["ota"] = self.ota.report()
        self.hal.wdt_feed()
        self._note_heap()

    # ---------------------------------------------------------------- remote settings

    def _apply_kept_settings(self, cfg):
        """config.json + the remote settings kept in flash (validated when they arrived)."""
        kept = flashjson.read(self._path("settings.json"))
        if not kept:
            return cfg
        try:
            applied = config.with_settings(cfg, kept["set"])
        except (config.ConfigError, KeyError, TypeError) as e:  # e.g. config.json changed under them
            self.st["cfge"] = ("ver %s no longer applies: " % kept.get("ver") + str(e))[:120]
            return cfg
        self.cfgv = kept["ver"]
        return applied

    def _take_settings(self, raws):
        """A new retained settings version: validated against config.json, kept in flash for the next
        wake, or refused with the reason (reported as ``cfge`` until a newer version arrives)."""
        for raw in raws:
            try:
                s = protocol.decode_settings(raw)
            except protocol.ProtocolError as e:
                self.st["cfge"] = ("settings: " + str(e))[:120]
                continue
            if s is None or s["ver"] == self.cfgv or s["ver"] == self.st.get("cfgr"):
                continue  # none, in effect, or refused before
            try:
                config.with_settings(self.base_cfg, s["set"])
            except config.ConfigError as e:
                self.st["cfgr"] = s["ver"]
                self.st["cfge"] = ("ver %d: " % s["ver"] + str(e))[:120]
                self.log("refused settings " + self.st["cfge"])
                continue
            flashjson.write(self._path("settings.json"), {"ver": s["ver"], "set": s["set"]})
            self.st["cfge"] = None
            self.result["settings_kept"] = s["ver"]
            self.log("settings ver %d kept, in effect from the next wake" % s["ver"])

    # ---------------------------------------------------------------- time

    def _sync_clock(self, raws):
        """Move the RTC into the window the gateway's retained clock allows, and restamp unsent captures
        by the same step where it is exact for them: this wake's (a drifted RTC) and this power-on's
        taken with the unset clock (same RTC, counting from the same reset)."""
        clock = None
        for raw in raws:
            try:
                clock = protocol.decode_clock(raw) or clock
            except protocol.ProtocolError as e:
                self.log("ignoring bad clock: " + str(e))
        if clock is None:
            self.log("no clock from the gateway")
            return
        before = self.hal.time()
        now = protocol.corrected_time(before, clock)
        self.result["clock_step"] = now - before
        if now == before:
            return
        self.hal.set_time(now)
        self.log("clock set, step %d s" % (now - before))
        for key in self.store.keys():
            meta = self.store.meta(key)
            if not meta or meta["sent"]:
                continue  # chunks with the old stamp went out already: one capture, one header
            # this wake's captures (seconds before the step), or any of this power-on's unset clock
            if meta["cid"] in self.result["captures"] or (meta.get("tu") and meta.get("pe") == self.st["pe"]):
                meta["ts"] += now - before
                if protocol.time_is_sane(meta["ts"]):
                    meta.pop("tu", None)
                self.store.save_meta(key, meta)

    # ---------------------------------------------------------------- telemetry (MQTT-4.4.0-1)

    def _resend_telemetry(self):
        """Telemetry of earlier wakes the broker never acknowledged: same packet id, DUP only if sent."""
        for t in flashjson.read(self._path("telemetry.json")) or []:
            self._publish_telemetry(t)

    def _publish_telemetry(self, t):
        while t["pid"] in self.client.pending:  # after an RTC loss the control ids restart
            t["pid"] = self._ctl_pid()
        self.telemetry.append(t)
        self.client.publish(self._topic(protocol.TELEMETRY), t["msg"].encode(), qos=1, pid=t["pid"], dup=t["sent"])
        t["sent"] = True

    def _keep_telemetry(self):
        """Write what is still unacknowledged to flash (or clear the file): the next wake re-sends it."""
        pending = self.client.pending if self.client else {}
        keep = [t for t in self.telemetry if t["pid"] in pending][-MAX_TELEMETRY:]
        if keep:
            flashjson.write(self._path("telemetry.json"), keep)
        elif self.telemetry:
            flashjson.remove(self._path("telemetry.json"))

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
        if not meta["pid0"]:
            meta["cs"] = self.cfg["chunk_size"]  # a capture keeps its chunking if chunk_size changes
        cs = meta.get("cs") or self.cfg["chunk_size"]
        n = protocol.chunk_count(meta["size"], cs)
        if not meta["pid0"]:
            meta["pid0"] = self._chunk_pid0(n)
        self.metas[key] = meta
        acked = meta["acked"]
        resent_upto = meta["sent"]
        topic = self._topic(protocol.CAPTURE)
        if len(self.buf) < cs:
            self.buf = None
            gc.collect()
            self.buf = bytearray(cs)
        mv = memoryview(self.buf)[:cs]
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
                                                   meta["tid"], meta["ts"], meta["bat"], meta.get("tu", 0),
                                                   meta.get("wake"))
                self.inflight[pid] = (key, i)
                # §4.4: a PUBLISH re-sent in a new connection of the same session keeps its packet id,
                # DUP=1 (§3.3.1.1) only if it really went out before: ``sent`` moves after the write
                c.publish(topic, [hdr, mv[:got]], qos=1, pid=pid, dup=i < resent_upto)
                if i + 1 > meta["sent"]:
                    meta["sent"] = i + 1
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
        for key in list(self.metas):
            meta = self.metas[key]
            if len(meta["acked"]) >= protocol.chunk_count(meta["size"], meta.get("cs") or self.cfg["chunk_size"]):
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
            if protocol.time_is_sane(now) and cmd["exp"] < now:
                self.log("ignoring expired trigger " + cmd["tid"])
                self._remember_tid(cmd["tid"])
                continue
            return cmd["tid"]
        return None

    def _remember_tid(self, tid):
        self.st["tids"] = (self.st["tids"] + [tid])[-MAX_TIDS:]

    def _answered(self, tid):
        """An answered trigger id goes to flash as well: the cmd stays retained until the gateway
        clears it, and a power loss must not make the device answer it again."""
        self._remember_tid(tid)
        flashjson.write(self._path("answered.json"), self.st["tids"])

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
        """Camera off (PWDN high, its rail switched off when one is configured), flash LED held low,
        unused pins pulled down, then deep sleep."""
        cfg = self.cfg or config.DEFAULTS
        cam = cfg["camera"]
        if self.camera_on:
            self.hal.camera_deinit()
            self.camera_on = False
        if cam["pwdn_pin"] >= 0:
            self.hal.pin_hold(cam["pwdn_pin"], 1)
        if cam["flash_pin"] >= 0:
            self.hal.pin_hold(cam["flash_pin"], 0)
        if cam["rail_pin"] >= 0:
            self.hal.pin_hold(cam["rail_pin"], 1 - cam["rail_on"])  # camera rail off through deep sleep
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
