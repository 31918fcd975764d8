"""Secrets the server must read back (not hash): sealed at rest under the server secret.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a key derived from
``settings.secret_key`` per purpose, so one purpose's ciphertext never opens as another's.
Replicas share the server secret, so each can open what another sealed; a database dump alone
opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken


class SealedUnderAnotherSecret(ValueError):
    """The value was sealed under a different server secret (or was altered)."""


def purpose_key(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the server secret."""
    return hmac.new(secret.encode(), f"mailcam-{purpose}".encode(), hashlib.sha256).digest()


def seal(secret: str, purpose: str, plain: str) -> str:
    return _fernet(secret, purpose).encrypt(plain.encode()).decode()


def unseal(secret: str, purpose: str, sealed: str) -> str:
    try:
        return _fernet(secret, purpose).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SealedUnderAnotherSecret(f"{purpose} was sealed under another server secret") from exc


def _fernet(secret: str, purpose: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(purpose_key(secret, purpose)))
