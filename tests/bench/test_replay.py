"""The benchmark's devices replay the real firmware's bytes (issue 16 item 4), not an imitation of them."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from mcam import protocol
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import replay


def test_replayed_as_the_recorded_device_the_bytes_are_the_recorded_ones():
    wakes = replay.load()
    assert [w.label for w in wakes] == ["timer-empty", "door-mail", "timer-mail", "door-collected"]
    for index, wake in enumerate(wakes):
        first = protocol.decode_chunk(wake.recorded[0])[0]
        telemetry = next(
            protocol.decode_telemetry(p)
            for p, m in zip(wake.recorded, wake.messages, strict=True)
            if m.kind == "telemetry"
        )
        device = replay.Device.prepare(wake.serial, wakes, own_images=False)
        device.boot, device.battery_mv = telemetry["boot"] - 1, first["bat"] + 1
        assert first["ts"] == telemetry["ts"] and first["bat"] == telemetry["bat"]
        cid, messages = device.messages(index, first["ts"], cid=first["cid"])
        assert [payload for _, payload in messages] == wake.recorded


def test_each_device_sends_its_own_valid_capture_with_a_fresh_id():
    wakes = replay.load()
    a, b = replay.Device.prepare("box-a", wakes), replay.Device.prepare("box-b", wakes)
    cid_a, sent_a = a.messages(1, 1_800_000_000)
    cid_b, sent_b = b.messages(1, 1_800_000_000)
    assert cid_a.startswith("box-a-") and cid_b.startswith("box-b-")
    again_cid, again = a.messages(5, 1_800_000_010)  # the same recorded wake, one round later
    assert (
        again_cid != cid_a
        and protocol.decode_chunk(again[0][1])[0]["sha"] != protocol.decode_chunk(sent_a[0][1])[0]["sha"]
    )
    images = []
    for sent, serial in ((sent_a, "box-a"), (sent_b, "box-b")):
        assert {protocol.parse_topic(topic) for topic, _ in sent} == {(serial, "capture"), (serial, "telemetry")}
        chunks = [protocol.decode_chunk(p) for topic, p in sent if topic.endswith("/capture")]
        image = b"".join(bytes(body) for _, body in sorted(chunks, key=lambda c: c[0]["i"]))
        header = chunks[0][0]
        assert len(chunks) == header["n"] and hashlib.sha256(image).hexdigest() == header["sha"]
        assert header["ts"] == 1_800_000_000 and header["trig"] == "automatic"
        images.append(image)
    assert images[0] != images[1]  # stored and hashed as two photos (and never the same bytes twice) ...
    pixels = [Image.open(io.BytesIO(image)).tobytes() for image in images]
    assert pixels[0] == pixels[1] == Image.open(io.BytesIO(wakes[1].image)).tobytes()  # ... of the same view
