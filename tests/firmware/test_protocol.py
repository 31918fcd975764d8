"""The shared wire protocol: round trips and rejections (CPython), plus a run under MicroPython."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from mcam import protocol as p

from tests.firmware.conftest import FIRMWARE, tool

IMG = bytes(range(256)) * 40
SHA = hashlib.sha256(IMG).hexdigest()


def header(**over):
    h = dict(cid="dev1-0123456789abcdef", i=0, n=3, size=len(IMG), sha=SHA, trig="automatic", tid=None,
             ts=1700000000, bat=3900)
    h.update(over)
    return h


def test_topics_round_trip_and_reject_outsiders():
    assert p.topic("mb_01-A", p.CAPTURE) == "mailcam/v1/mb_01-A/capture"
    assert p.parse_topic("mailcam/v1/mb_01-A/cmd") == ("mb_01-A", "cmd")
    for bad in ["mailcam/v2/x/cmd", "mailcam/v1/x/other", "mailcam/v1/a b/cmd", "mailcam/v1/x/cmd/extra",
                "other/v1/x/cmd", "mailcam/v1//cmd", "mailcam/v1/" + "x" * 33 + "/cmd"]:
        with pytest.raises(p.ProtocolError):
            p.parse_topic(bad)
    with pytest.raises(p.ProtocolError):
        p.topic("bad/serial", p.CMD)
    assert p.valid_serial("a" * 32) and not p.valid_serial("a" * 33) and not p.valid_serial("")


def test_chunks_reassemble_to_the_image():
    n = p.chunk_count(len(IMG), 4096)
    assert n == 3 and p.chunk_count(4096, 4096) == 1 and p.chunk_count(4097, 4096) == 2
    parts = {}
    for i in reversed(range(n)):  # out of order is fine
        payload = p.encode_chunk(**header(i=i), data=IMG[i * 4096:(i + 1) * 4096])
        assert payload.startswith(p.encode_chunk_header(**header(i=i)))
        h, body = p.decode_chunk(payload)
        assert h == dict(header(i=i), v=1)
        parts[i] = bytes(body)
    image = b"".join(parts[i] for i in range(n))
    assert image == IMG and hashlib.sha256(image).hexdigest() == SHA


def test_manual_chunk_carries_tid():
    h, _ = p.decode_chunk(p.encode_chunk(**header(trig="manual", tid="trg-1"), data=IMG[:10]))
    assert (h["trig"], h["tid"]) == ("manual", "trg-1")


@pytest.mark.parametrize("over", [
    {"v": 2}, {"cid": ""}, {"cid": "a/b"}, {"cid": "x" * 65}, {"i": 3}, {"i": -1}, {"n": 0}, {"i": True},
    {"size": 0}, {"size": p.MAX_IMAGE_BYTES + 1}, {"sha": "ABC"}, {"sha": SHA.upper()}, {"trig": "auto"},
    {"trig": "manual", "tid": None}, {"tid": 5}, {"ts": "now"}, {"bat": -1}, {"bat": 1.5},
])
def test_decode_chunk_rejects_bad_headers(over):
    hdr = dict(header(), v=1)
    hdr.update(over)
    with pytest.raises(p.ProtocolError):
        p.decode_chunk(json.dumps(hdr).encode() + b"\n" + IMG[:100])


@pytest.mark.parametrize("payload", [b"", b"no newline", b"\xff\xfe\n123", b"[1]\nabc",
                                     json.dumps(dict(header(), v=1)).encode() + b"\n"])
def test_decode_chunk_rejects_garbage(payload):
    with pytest.raises(p.ProtocolError):
        p.decode_chunk(payload)


@pytest.mark.parametrize("text", ['{"a": 1}', ' {"a": 1}', '{"a": 1} ', '{"a": 1}\t', '{"a": 1} x', '{"a": 1}{"b": 2}',
                                  '', '{', '[1, 2]', '"s"', 'NaN', '{"a": 1e400}', '{"a": "\\ud800"}'])
def test_header_fast_path_gives_what_json_loads_gives(text):
    """`_loads_header` skips json.loads' wrapper on CPython; its answer and its errors must not differ."""
    try:
        expected = ("ok", repr(json.loads(text)))
    except ValueError:
        expected = ("error",)
    try:
        got = ("ok", repr(p._loads_header(text)))
    except ValueError:
        got = ("error",)
    assert got == expected


def test_body_longer_than_size_is_rejected():
    with pytest.raises(p.ProtocolError):
        p.decode_chunk(json.dumps(dict(header(size=10, n=1), v=1)).encode() + b"\n" + IMG[:11])


def test_telemetry_round_trip_ignores_extra_keys_and_validates():
    fields = dict(ts=1700000000, bat=3712, rssi=-70, wake="door", awake_ms=2100, fw="1.0.0", boot=7,
                  err=None, pending=2)
    d = p.decode_telemetry(p.encode_telemetry(**fields))
    assert d == dict(fields, v=1, tu=False, cfgv=None, cfge=None, ota=None)
    extra = json.loads(p.encode_telemetry(**fields))
    extra["future"] = 1
    assert "future" not in p.decode_telemetry(json.dumps(extra).encode())
    for bad in [{"wake": "sneeze"}, {"bat": "x"}, {"rssi": 1.5}, {"fw": ""}, {"err": 3}, {"boot": -1}]:
        with pytest.raises(p.ProtocolError):
            p.encode_telemetry(**dict(fields, **bad))
    with pytest.raises(p.ProtocolError):
        p.decode_telemetry(b"{")


def test_cmd_round_trip_and_empty_means_none():
    assert p.decode_cmd(p.encode_cmd("t-1", 1700000600)) == {"v": 1, "tid": "t-1", "exp": 1700000600}
    assert p.decode_cmd(b"") is None
    for bad in [b"{}", b'{"v":1,"tid":"","exp":1}', b'{"v":1,"tid":"a","exp":"x"}', b"nope"]:
        with pytest.raises(p.ProtocolError):
            p.decode_cmd(bad)


def test_clock_round_trip_and_rejections():
    assert p.decode_clock(p.encode_clock(1800000000, 30)) == {"v": 1, "t": 1800000000, "every": 30}
    assert p.decode_clock(b"") is None  # cleared when the gateway stops
    for bad in [b"{}", b'{"v":1,"t":946684800,"every":30}', b'{"v":1,"t":1800000000,"every":0}', b"x"]:
        with pytest.raises(p.ProtocolError):
            p.decode_clock(bad)


def test_corrected_time_moves_the_clock_only_into_the_window_the_beacon_allows():
    clock = {"v": 1, "t": 1800000000, "every": 30}
    assert p.corrected_time(946684800 + 12, clock) == 1800000000  # unset RTC: the earliest possible time
    assert p.corrected_time(1800000010, clock) == 1800000010  # already inside [t, t + every + slack]
    assert p.corrected_time(1800000000 + 3600, clock) == 1800000035  # ran fast: back to the latest possible


def test_sane_epoch_and_uncertain_time_marks():
    assert not p.time_is_sane(946684800 + 5) and p.time_is_sane(p.SANE_EPOCH)
    h, _ = p.decode_chunk(p.encode_chunk(*header(ts=12).values(), IMG[:100], tu=True))
    assert h["tu"] == 1 and h["ts"] == 12
    with pytest.raises(p.ProtocolError):
        p.decode_chunk(json.dumps(header(tu=2)).encode() + b"\n" + IMG[:10])
    fields = dict(ts=5, bat=3900, rssi=None, wake="power_on", awake_ms=None, fw="1", boot=1, err=None, pending=0)
    assert p.decode_telemetry(p.encode_telemetry(tu=True, **fields))["tu"] is True


@pytest.mark.parametrize(("serial", "portable"), [
    ("mb0001", "mb0001"),
    ("a" * 23, "a" * 23),
    ("a" * 24, None),
    ("mb-0001", None),
    ("mb_0001", None),
])
def test_client_id_is_the_serial_only_when_every_broker_must_accept_it(serial, portable):
    cid = p.client_id(serial)
    assert cid == portable if portable else (len(cid) <= 23 and cid.isalnum() and cid == p.client_id(serial))
    assert p.client_id("mb-0001") != p.client_id("mb_0001")


def test_settings_round_trip_and_rejections():
    assert p.decode_settings(p.encode_settings(3, {"wake_interval_s": 600})) == {
        "v": 1, "ver": 3, "set": {"wake_interval_s": 600}}
    assert p.decode_settings(b"") is None
    for bad in [b"{}", b'{"v":1,"ver":0,"set":{}}', b'{"v":1,"ver":2,"set":[]}', b"x"]:
        with pytest.raises(p.ProtocolError):
            p.decode_settings(bad)
    assert p.parse_topic("mailcam/v1/mb-1/settings") == ("mb-1", "settings")


def test_same_module_runs_under_micropython(tmp_path):
    script = tmp_path / "t.py"
    script.write_text(
        "from mcam import protocol as p\n"
        "c = p.encode_chunk('d-1', 0, 1, 3, '" + SHA + "', 'manual', 't', 1, 3900, b'abc')\n"
        "h, b = p.decode_chunk(c)\n"
        "assert bytes(b) == b'abc' and h['tid'] == 't'\n"
        "assert p.parse_topic('mailcam/v1/d-1/status') == ('d-1', 'status')\n"
        "assert p.decode_cmd(p.encode_cmd('x', 5))['tid'] == 'x'\n"
        "assert p.client_id('mb-0001') == '" + p.client_id("mb-0001") + "'\n"
        "assert p.corrected_time(3, p.decode_clock(p.encode_clock(1800000000, 30))) == 1800000000\n"
        "try:\n    p.decode_chunk(b'{}\\nabc')\nexcept p.ProtocolError:\n    print('OK')\n"
    )
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE / "lib"))
    out = subprocess.run([tool("micropython"), str(script)], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "OK", out.stderr


# ---------------------------------------------------------------- firmware updates


def test_firmware_update_messages_round_trip_and_refuse_what_a_device_must_not_take():
    sig = "ab" * 64
    assert p.decode_offer(p.encode_offer(3, "1.2.0", 5000, sig)) == {
        "rid": 3, "ver": "1.2.0", "size": 5000, "sig": sig}
    assert p.decode_offer(b"") is None
    assert p.decode_fwreq(p.encode_fwreq(3, 4096, 2048, 1024)) == {
        "rid": 3, "off": 4096, "len": 2048, "cs": 1024}
    header, body = p.decode_fw_chunk(p.encode_fw_chunk(3, 100, 200, b"x" * 100))
    assert header == {"rid": 3, "off": 100, "size": 200} and bytes(body) == b"x" * 100
    for bad in (
        lambda: p.encode_offer(3, "1.2.0 beta", 5000, sig),  # version with a space
        lambda: p.encode_offer(3, "1.2.0", p.MAX_BUNDLE_BYTES + 1, sig),
        lambda: p.encode_fw_chunk(3, 150, 200, b"x" * 100),  # past the bundle's end
        lambda: p.decode_fw_chunk(b'{"v":1,"rid":3,"off":150,"size":200}\n' + b"x" * 100),
        lambda: p.encode_fwreq(3, 0, 10, 64),  # chunk below 256 bytes
        lambda: p.encode_manifest("1.0", [("../boot.py", 1, "0" * 64)]),  # outside the slot
        lambda: p.encode_manifest("1.0", [("mcam/x/y.mpy", 1, "0" * 64)]),  # a subfolder
        lambda: p.encode_manifest("1.0", [("main.py", 1, "0" * 64)]),  # the loader is never replaced
        lambda: p.decode_release_file(b"MCFW1 " + b"z" * 128 + b"\nxx"),
    ):
        with pytest.raises(p.ProtocolError):
            bad()


def test_check_bundle_finds_a_changed_byte_in_any_file():
    files = [("mcam/a.mpy", b"first"), ("mcam/b.mpy", b"second file")]
    line = p.encode_manifest("2.0", [(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files])
    bundle = line + b"\n" + b"".join(b for _, b in files)
    assert p.check_bundle(bundle)[1]["ver"] == "2.0"
    for i in range(len(line) + 1, len(bundle)):
        broken = bytearray(bundle)
        broken[i] ^= 0x20
        with pytest.raises(p.ProtocolError, match="hash mismatch"):
            p.check_bundle(bytes(broken))
    with pytest.raises(p.ProtocolError, match="after its last file"):
        p.check_bundle(bundle + b"!")
