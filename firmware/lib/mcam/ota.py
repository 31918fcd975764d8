"""Firmware updates on the device: download a signed release a bounded piece per wake, check it, stage
it in the other slot; ``boot.py`` switches at the next boot and rolls back by itself.

Files in flash (``ota/`` next to config.json; they outlive RTC memory):

    ota/state.json   {"cur": slot|null, "try": {"slot","ver","rid","boots","max","err"}|null,
                      "rb": {"rid","ver","why"}|null, "bad": [rid...], "report": {...}|null}
                     ``cur`` null = the factory firmware in /lib; boot.py counts ``try.boots`` and
                     gives up on a trial after ``try.max`` boots without a complete wake
    ota/dl.json      the offer being downloaded; ota/dl.bin its bytes so far (resume = file size)
    ota/a/mcam/, ota/b/mcam/   the two slots: the running version and the new (or the previous) one

    offer (retained, read in round trip 1) -> fwreq for [size so far, + ota.bytes_per_wake) ->
    chunks appended to dl.bin -> complete: Ed25519 signature of the manifest, then every file's
    SHA-256 while it is copied to the free slot -> state.try = that slot -> next boot runs it ->
    a complete wake confirms it (cur = slot; the old slot stays as the previous version)

A release this device refused (bad signature or hash) or rolled back is never downloaded again:
the operator publishes a new one. ``report`` is what telemetry says (``protocol.OTA_STATES``).
"""

import gc
import os

from . import FW_VERSION, flashjson, protocol
from .compat import hexstr

DIR = "ota"
STATE = DIR + "/state.json"
DL_META = DIR + "/dl.json"
DL_BIN = DIR + "/dl.bin"
MAX_BAD = 4
COPY_BUF = 1024


def load_state():
    st = flashjson.read(STATE)
    if not isinstance(st, dict):
        st = {}
    for k, v in (("cur", None), ("try", None), ("rb", None), ("bad", []), ("report", None)):
        st.setdefault(k, v)
    return st


def _mkdirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        try:
            os.mkdir("/".join(parts[:i]))
        except OSError:
            pass  # exists


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def _rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


class Updater:
    """One wake's view of the update: what to ask for, where chunks go, when to install."""

    def __init__(self, cfg, battery_mv):
        self.cfg = cfg["ota"]
        self.battery_mv = battery_mv
        self.st = load_state()
        self.offer = None
        self.want = 0  # bytes asked for this wake
        self.got = 0  # bytes appended this wake
        self._f = None
        self._end = 0
        self.dirty = False

    # ------------------------------------------------------------ the offer (round trip 1)

    def take_offer(self, raws):
        """The retained offer read on connect; returns the fwreq payload to send, or None."""
        offer = None
        for raw in raws:
            try:
                offer = protocol.decode_offer(raw)
            except protocol.ProtocolError:
                offer = None
        if offer is None or not self.cfg["key"]:
            return None
        rid = offer["rid"]
        if offer["ver"] == FW_VERSION or rid in self.st["bad"] or (self.st["try"] or {}).get("rid") == rid:
            return None  # running it, refused or rolled back, or staged and waiting for the reboot
        if self.battery_mv < self.cfg["min_mv"]:
            return None  # downloading costs awake time: wait for a fuller battery
        kept = flashjson.read(DL_META)
        if not kept or kept.get("rid") != rid or kept.get("sig") != offer["sig"]:
            flashjson.remove(DL_BIN)  # a new offer replaces whatever was half downloaded
            _mkdirs(DIR)
            flashjson.write(DL_META, offer)
        have = _size(DL_BIN)
        if have > offer["size"]:
            flashjson.remove(DL_BIN)
            have = 0
        self.offer = offer
        if have == offer["size"]:
            return None  # complete already (installed below)
        self._end = have
        self.want = min(self.cfg["bytes_per_wake"], offer["size"] - have)
        return protocol.encode_fwreq(rid, have, self.want, self.cfg["chunk"])

    # ------------------------------------------------------------ chunks (QoS 0, in order)

    def on_chunk(self, payload):
        """Append a chunk that continues dl.bin exactly; anything else is dropped (asked for again)."""
        if self.offer is None:
            return
        try:
            h, body = protocol.decode_fw_chunk(payload)
        except protocol.ProtocolError:
            return
        if h["rid"] != self.offer["rid"] or h["size"] != self.offer["size"]:
            return
        if h["off"] != self._end:
            return  # a gap (a lost QoS 0 chunk): the rest of this wake's answer is asked for again
        if self._f is None:
            self._f = open(DL_BIN, "ab")
        self._f.write(body)
        self.got += len(body)
        self._end = h["off"] + len(body)

    def done_receiving(self):
        return self.got >= self.want

    def finish(self, install_boots):
        """After the wake's download: close the file, install a complete bundle, update the report."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if self.offer is None:
            return
        have = _size(DL_BIN)
        o = self.offer
        if have < o["size"]:
            self._report("downloading", o, pct=have * 100 // o["size"])
            return
        why = self._install(install_boots)
        flashjson.remove(DL_BIN)
        flashjson.remove(DL_META)
        if why:
            self.st["bad"] = (self.st["bad"] + [o["rid"]])[-MAX_BAD:]
            self._report("refused", o, why=why)
        else:
            self._report("staged", o, pct=100)

    def _report(self, st, o, pct=None, why=None):
        if self.st["rb"] and self.st["rb"]["rid"] != o["rid"]:
            self.st["rb"] = None  # reported since (kept telemetry is re-sent): the newer release's state counts now
        r = {"rid": o["rid"], "ver": o["ver"], "st": st}
        if pct is not None:
            r["pct"] = pct
        if why:
            r["why"] = why[:120]
        self.st["report"] = r
        self.dirty = True

    # ------------------------------------------------------------ install

    def _install(self, install_boots):
        """Check the signature and every hash while copying into the free slot; None or why not."""
        o = self.offer
        with open(DL_BIN, "rb") as f:
            line = f.readline(protocol.MAX_MANIFEST_BYTES + 1)
            if not line.endswith(b"\n"):
                return "no manifest line"
            line = line[:-1]
            why = self._check_signature(line, o)
            if why:
                return why
            try:
                manifest = protocol.decode_manifest(line)
            except protocol.ProtocolError as e:
                return "bad manifest: " + str(e)
            if manifest["ver"] != o["ver"]:
                return "manifest is version %s, offer %s" % (manifest["ver"], o["ver"])
            if len(line) + 1 + sum([s for _, s, _ in manifest["files"]]) != o["size"]:
                return "bundle size does not match its manifest"
            slot = "b" if self.st["cur"] == "a" else "a"
            root = DIR + "/" + slot
            _rmtree(root)  # the version before the previous one, or a half-staged copy
            _mkdirs(root + "/mcam")
            why = self._copy_files(f, manifest["files"], root)
        if why:
            _rmtree(root)
            return why
        self.st["try"] = {"slot": slot, "ver": o["ver"], "rid": o["rid"], "boots": 0, "max": install_boots, "err": None}
        self.st["rb"] = None
        return None

    def _check_signature(self, line, o):
        from binascii import unhexlify

        gc.collect()
        from . import ed25519

        try:
            ok = ed25519.verify(unhexlify(self.cfg["key"]), unhexlify(o["sig"]), protocol.release_message(line))
        finally:
            # ~13 KB of module and tables, needed once per release: forget it (module and package attribute)
            import sys

            sys.modules.pop(ed25519.__name__, None)
            package = sys.modules.get(__name__.rsplit(".", 1)[0])
            if package is not None and hasattr(package, "ed25519"):
                delattr(package, "ed25519")
            gc.collect()
        return None if ok else "bad signature (not signed by this device's cloud key)"

    def _copy_files(self, f, files, root):
        import hashlib

        buf = bytearray(COPY_BUF)
        mv = memoryview(buf)
        for path, size, sha in files:
            h = hashlib.sha256()
            left = size
            with open(root + "/" + path, "wb") as out:
                while left:
                    n = f.readinto(mv[: min(COPY_BUF, left)])
                    if not n:
                        return "bundle ends inside " + path
                    h.update(mv[:n])
                    out.write(mv[:n])
                    left -= n
            if hexstr(h.digest()) != sha:
                return "hash mismatch: " + path
        return None

    # ------------------------------------------------------------ confirm / telemetry

    def confirm(self):
        """A complete wake under a trial version: it becomes the current one (the old slot stays)."""
        t = self.st["try"]
        if not t or t["ver"] != FW_VERSION:
            return False
        self.st["cur"] = t["slot"]
        self.st["try"] = None
        self.st["report"] = {"rid": t["rid"], "ver": t["ver"], "st": "installed", "pct": 100}
        self.dirty = True
        return True

    def report(self):
        """The ``ota`` telemetry field: a rollback boot.py recorded wins over the last step."""
        rb = self.st["rb"]
        if rb:
            return {"rid": rb["rid"], "ver": rb["ver"], "st": "rolled_back", "why": rb["why"][:120]}
        return self.st["report"]

    def save(self):
        if self.dirty:
            _mkdirs(DIR)
            flashjson.write(STATE, self.st)
            self.dirty = False
