"""Bounded flash queue of captures waiting for upload.

Each capture is two files in ``root``: ``<seq>.jpg`` (the image) and ``<seq>.json`` (its chunk header
fields plus ``acked``: chunk indexes the broker acknowledged, and ``sent``: how far a previous attempt
got, so redelivered chunks carry DUP=1). The oldest capture is discarded when more than ``max_items``
are queued; ``discarded`` counts them. The JSON file is written last, so a capture without one (power
lost mid-write) is ignored and removed.
"""

import json
import os

try:
    import hashlib
except ImportError:  # pragma: no cover
    import uhashlib as hashlib

from .compat import hexstr


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdirs(path):
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        if not _exists(cur):
            os.mkdir(cur)


def _rm(path):
    try:
        os.remove(path)
    except OSError:
        pass


class FlashQueue:
    def __init__(self, root, max_items):
        self.root = root
        self.max_items = max_items
        _mkdirs(root)
        self.stats = self._read_json(root + "/stats.json") or {"seq": 0, "discarded": 0}

    def _read_json(self, path):
        try:
            with open(path) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def _write_json(self, path, obj):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(obj))
        os.rename(tmp, path)

    @property
    def discarded(self):
        return self.stats["discarded"]

    def keys(self):
        """Queued capture keys, oldest first (orphan images without metadata are removed)."""
        seqs = []
        for name in os.listdir(self.root):
            if name.endswith(".jpg"):
                seq = name[:-4]
                if _exists(self.root + "/" + seq + ".json"):
                    seqs.append(int(seq))
                else:
                    _rm(self.root + "/" + name)
        seqs.sort()
        return ["%08d" % s for s in seqs]

    def put(self, jpeg, cid, trig, tid, ts, bat, wake=None):
        """Write a capture to flash; returns its key. Drops the oldest beyond max_items."""
        self.stats["seq"] += 1
        key = "%08d" % self.stats["seq"]
        self._write_json(self.root + "/stats.json", self.stats)
        with open(self.root + "/" + key + ".jpg", "wb") as f:
            f.write(jpeg)
        meta = {"cid": cid, "size": len(jpeg), "sha": hexstr(hashlib.sha256(jpeg).digest()),
                "trig": trig, "tid": tid, "ts": ts, "bat": bat, "wake": wake, "acked": [], "sent": 0, "pid0": 0}
        self._write_json(self.root + "/" + key + ".json", meta)
        keys = self.keys()
        while len(keys) > self.max_items:
            self.remove(keys.pop(0))
            self.stats["discarded"] += 1
            self._write_json(self.root + "/stats.json", self.stats)
        return key

    def meta(self, key):
        return self._read_json(self.root + "/" + key + ".json")

    def save_meta(self, key, meta):
        self._write_json(self.root + "/" + key + ".json", meta)

    def open_image(self, key):
        return open(self.root + "/" + key + ".jpg", "rb")

    def remove(self, key):
        _rm(self.root + "/" + key + ".json")
        _rm(self.root + "/" + key + ".jpg")
