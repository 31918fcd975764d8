"""The firmware's recorded wakes, replayed as any device: the same bytes, other serial, capture id, time.

``bench/record_wakes.py`` stored what the real firmware published; here each message becomes a template:
the recorded JSON text (MicroPython's key order and spacing kept) with the per-wake values — capture id,
chunk index and count, image size and hash, time, battery, boot count — cut out and filled in at publish
time. Replayed as the recording's own device with the recorded values, the bytes are the recorded ones
(``tests/bench/test_replay.py`` checks it).

Each photo carries a JPEG comment naming the device and the wake (pixels unchanged, see ``device_image``):
the cloud stores, hashes and deduplicates images by content, and 100 mailboxes do not send one shared
photo, nor one mailbox the same bytes twice (a real camera's noise never does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mcam import protocol

RECORDING = Path(__file__).resolve().parent / "recordings" / "firmware_wakes.json"
CHUNK_FIELDS = ("cid", "i", "n", "size", "sha", "ts", "bat")
TELEMETRY_FIELDS = ("ts", "bat", "boot")


class Template:
    """A recorded JSON text with some keys' values left open: ``fill(ts=…, bat=…)`` gives the bytes."""

    def __init__(self, raw: bytes, keys: tuple[str, ...]) -> None:
        text = raw.decode().replace("{", "{{").replace("}", "}}")
        for key in keys:
            text, found = re.subn(rf'"{key}": (?:"[^"]*"|-?\d+|null)', f'"{key}": {{{key}}}', text)
            if found != 1:
                raise ValueError(f"recorded message has {found} {key!r} fields")
        self.text = text

    def fill(self, **values: object) -> bytes:
        return self.text.format(**{key: json.dumps(value) for key, value in values.items()}).encode()


@dataclass(frozen=True)
class RecordedMessage:
    kind: str  # capture | telemetry
    template: Template
    body: bytes = b""  # a chunk's image bytes (the recording's own device)


@dataclass(frozen=True)
class RecordedWake:
    label: str
    serial: str
    messages: list[RecordedMessage]
    image: bytes  # the whole JPEG, reassembled
    chunk_size: int
    recorded: list[bytes] = field(repr=False)  # the payloads as published


def load(path: Path = RECORDING) -> list[RecordedWake]:
    recording = json.loads(path.read_text())
    wakes = []
    for wake in recording["wakes"]:
        messages, chunks, payloads = [], {}, []
        for message in wake["messages"]:
            payload = base64.b64decode(message["payload"])
            payloads.append(payload)
            if message["kind"] == "capture":
                header, body = protocol.decode_chunk(payload)
                chunks[header["i"]] = bytes(body)
                raw = payload[: payload.index(b"\n")]
                messages.append(RecordedMessage("capture", Template(raw, CHUNK_FIELDS), bytes(body)))
            elif message["kind"] == "telemetry":
                messages.append(RecordedMessage("telemetry", Template(payload, TELEMETRY_FIELDS)))
        image = b"".join(chunks[i] for i in range(len(chunks)))
        wakes.append(RecordedWake(wake["label"], recording["serial"], messages, image, len(chunks[0]), payloads))
    return wakes


def device_image(image: bytes, label: str) -> bytes:
    """The same photo with a JPEG COM segment (ITU T.81 B.2.4.5) saying ``label``: other bytes, same pixels."""
    comment = f"mailcam bench {label}".encode()
    return image[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + image[2:]


@dataclass
class Device:
    """One replayed mailbox: the recorded wakes, sent with this device's serial, ids, time and battery."""

    serial: str
    recording: list[RecordedWake]
    own_images: bool = True
    boot: int = 0
    battery_mv: int = 3950

    @classmethod
    def prepare(cls, serial: str, recording: list[RecordedWake], *, own_images: bool = True) -> Device:
        return cls(serial, recording, own_images)

    def messages(self, index: int, now: int, *, cid: str | None = None) -> tuple[str, list[tuple[str, bytes]]]:
        """(capture id, [(topic, payload)]) for wake ``index`` of the recorded round (it repeats), in the
        firmware's order; this device's image may need another number of chunks than the recorded one."""
        wake = self.recording[index % len(self.recording)]
        self.boot += 1
        self.battery_mv -= 1
        cid = cid or f"{self.serial}-{os.urandom(8).hex()}"
        # Never the same bytes twice (a real camera's sensor noise sees to that): no false cache hits.
        image = device_image(wake.image, f"{self.serial} wake {self.boot}") if self.own_images else wake.image
        sha, size = hashlib.sha256(image).hexdigest(), len(image)
        bodies = [image[k : k + wake.chunk_size] for k in range(0, size, wake.chunk_size)]
        common = {"ts": now, "bat": self.battery_mv}
        out: list[tuple[str, bytes]] = []
        chunks_sent = False
        for message in wake.messages:
            if message.kind == "telemetry":
                out.append((protocol.topic(self.serial, "telemetry"), message.template.fill(boot=self.boot, **common)))
            elif not chunks_sent:
                chunks_sent = True
                out.extend(
                    (
                        protocol.topic(self.serial, "capture"),
                        message.template.fill(cid=cid, i=i, n=len(bodies), size=size, sha=sha, **common) + b"\n" + body,
                    )
                    for i, body in enumerate(bodies)
                )
        return cid, out
