"""A local Web Push service: checks the VAPID JWT as a real push service does and decrypts the payload
with the browser's keys, so a test sees exactly what the browser's service worker would get."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.notify.fakes import FakeHttp, Reply, Seen


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """A browser's push subscription keys, made here as the browser makes them (P-256 + 16-byte secret)."""

    path: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, base_url: str) -> dict:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{base_url}{self.path}", "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


class PushService(FakeHttp):
    """Answers ``status_by_path`` (default 201); records each decrypted payload by path."""

    def __init__(self, vapid_public_key: str) -> None:
        super().__init__(self._receive)
        self.vapid_public_key = vapid_public_key
        self.browsers: dict[str, Browser] = {}
        self.status_by_path: dict[str, int] = {}
        self.delivered: dict[str, list[dict]] = {}
        self.claims: list[dict] = []

    def browser(self, path: str) -> Browser:
        self.browsers[path] = Browser(path)
        return self.browsers[path]

    def _receive(self, seen: Seen) -> Reply:
        self.claims.append(self._check_vapid(seen.headers.get("authorization", "")))
        assert seen.headers.get("content-encoding") == "aes128gcm", seen.headers
        assert int(seen.headers["ttl"]) > 0
        status = self.status_by_path.get(seen.path, 201)
        if status < 300:
            browser = self.browsers[seen.path]
            plain = http_ece.decrypt(seen.body, private_key=browser.private_key, auth_secret=browser.auth,
                                     version="aes128gcm")
            self.delivered.setdefault(seen.path, []).append(json.loads(plain))
        return Reply(status, {})

    def _check_vapid(self, header: str) -> dict:
        """RFC 8292: ``vapid t=<JWT>, k=<public key>``; the JWT is ES256 over the served key."""
        scheme, _, params = header.partition(" ")
        assert scheme == "vapid", header
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        assert parts["k"] == self.vapid_public_key, "signed with another key than the one the page was given"
        head_b64, claims_b64, sig_b64 = parts["t"].split(".")
        assert json.loads(unb64url(head_b64))["alg"] == "ES256"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
        sig = unb64url(sig_b64)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
        claims = json.loads(unb64url(claims_b64))
        assert claims["aud"] == self.url, claims  # the push service's origin
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims  # RFC 8292 §2: at most 24 h
        assert claims["sub"].startswith(("mailto:", "https:")), claims
        return claims
