"""The device's Ed25519 verifier (mcam.ed25519) under the MicroPython unix port with a 256 KB heap: RFC 8032
test vectors, signatures made by the `cryptography` library over many messages, and forgeries refused."""

from __future__ import annotations

import json
import os
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.firmware.conftest import FIRMWARE, HEAP, tool

# RFC 8032 §7.1, TEST 1 and TEST 2: (public key, message, signature)
RFC_8032 = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2"
        "4655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302ae"
        "eb00d291612bb0c00",
    ),
]

SCRIPT = """
import json, sys, gc, time
from binascii import unhexlify
from mcam import ed25519
cases = json.loads(sys.stdin.read())
out = []
worst = 0
for pub, msg, sig in cases:
    gc.collect()
    t = time.ticks_ms()
    out.append(ed25519.verify(unhexlify(pub), unhexlify(sig), unhexlify(msg)))
    worst = max(worst, time.ticks_diff(time.ticks_ms(), t))
print(json.dumps({"ok": out, "worst_ms": worst}))
"""


def run(cases: list[tuple[str, str, str]]) -> dict:
    proc = subprocess.run(
        [tool("micropython"), "-X", f"heapsize={HEAP}", "-c", SCRIPT],
        input=json.dumps(cases),
        env=dict(os.environ, MICROPYPATH=str(FIRMWARE / "lib")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _flip(hex_str: str, i: int) -> str:
    b = bytearray(bytes.fromhex(hex_str))
    b[i % len(b)] ^= 1 << (i % 8)
    return b.hex()


def test_verifies_what_cryptography_signs_and_refuses_every_forgery():
    cases = list(RFC_8032)
    for n in (0, 1, 51, 111, 112, 128, 300):  # SHA-512 one and several blocks, padding edges
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        msg = os.urandom(n)
        cases.append((pub, msg.hex(), key.sign(msg).hex()))
    good = len(cases)
    for i, (pub, msg, sig) in enumerate(list(cases)):
        cases.append((pub, msg, _flip(sig, 7 * i + 3)))  # R or S changed
        cases.append((pub, (msg or "00")[:-2] + ("ff" if msg[-2:] != "ff" else "00"), sig))  # message changed
        cases.append((_flip(pub, i + 1), msg, sig))  # another key
    result = run(cases)
    assert result["ok"][:good] == [True] * good
    assert not any(result["ok"][good:])
