"""The simulator runs the real firmware cycle under CPython; the scenes are deterministic with truth."""

from __future__ import annotations

import hashlib
import io
import uuid

from mcam import protocol
from PIL import Image

from mailcam import scenes, simulate
from tests.firmware.test_cycle_micropython import captures, telemetry


def test_scenes_are_deterministic_jpegs_with_ground_truth():
    assert set(scenes.KINDS) == {"empty", "letters", "package", "magazine", "dark", "blurry"}
    for kind in scenes.KINDS:
        jpeg = scenes.render(kind, 7)
        assert jpeg == scenes.render(kind, 7) and jpeg[:2] == b"\xff\xd8"
        assert Image.open(io.BytesIO(jpeg)).size == scenes.SIZE
        t = scenes.truth(kind, 7)
        assert t.mail == (kind in ("letters", "package", "magazine", "blurry")) and t.mail == bool(t.items)
    assert scenes.render("letters", 1) != scenes.render("letters", 2)
    assert len(scenes.render("empty", 1, light=0.2)) < len(scenes.render("empty", 1, light=1.0))


def test_three_devices_publish_valid_captures(mosquitto, watch):
    prefix = "s" + uuid.uuid4().hex[:8]
    w = watch(mosquitto, "mailcam/v1/+/#")

    def mine(ms):
        return [m for m in ms if m.topic.split("/")[2].startswith(prefix + "-")]

    seen = []
    reports = simulate.run(mosquitto.host, mosquitto.port, devices=3, serial_prefix=prefix, interval_s=0.05,
                           cycles=2, door_probability=0.5, on_cycle=seen.append)
    assert len(reports) == len(seen) == 6 and all(r.ok for r in reports)
    assert all(r.result["round_trips"] <= 4 for r in reports)
    w.wait(lambda ms: len(captures(mine(ms))) == 6 and len(telemetry(mine(ms))) == 6)
    for h, image in captures(mine(w.messages)).values():
        assert hashlib.sha256(image).hexdigest() == h["sha"] and image[:2] == b"\xff\xd8"
        assert protocol.valid_capture_id(h["cid"]) and h["cid"].startswith(prefix)
    serials = {protocol.parse_topic(m.topic)[0] for m in mine(w.messages)}
    assert serials == {f"{prefix}-{n}" for n in (1, 2, 3)}
