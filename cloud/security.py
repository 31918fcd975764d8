"""Passwords (argon2) and opaque tokens (random, stored as SHA-256 only).

An argon2 hash or check takes 64 MB and a good part of a CPU-second: at most
``password_hash_concurrency`` run at once in a process (its memory is what they share).
A caller that waits longer than ``password_hash_wait_s`` for a slot gets a 429 rather than
holding a server thread; the slots are set from the settings by the app factory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloud.errors import RateLimited

_hasher = PasswordHasher()
DEFAULT_HASH_CONCURRENCY = 2
DEFAULT_HASH_WAIT_S = 10.0
_slots = threading.BoundedSemaphore(DEFAULT_HASH_CONCURRENCY)
_wait_s = DEFAULT_HASH_WAIT_S


def configure_hashing(concurrency: int = DEFAULT_HASH_CONCURRENCY, wait_s: float = DEFAULT_HASH_WAIT_S) -> None:
    global _slots, _wait_s
    _slots, _wait_s = threading.BoundedSemaphore(concurrency), wait_s


@contextmanager
def hashing_slot() -> Iterator[None]:
    """One of the process's argon2 slots, or ``RateLimited`` after waiting ``password_hash_wait_s``."""
    slots = _slots
    if not slots.acquire(timeout=_wait_s):
        raise RateLimited("the server is busy checking passwords; try again shortly", retry_after=1)
    try:
        yield
    finally:
        slots.release()


def hash_password(password: str) -> str:
    with hashing_slot():
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    with hashing_slot():
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def new_token(prefix: str) -> str:
    """A bearer token; the prefix tells a reader which kind it is (user, device, gateway, key)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_claim_code() -> str:
    """A claim code an installer reads out or prints on a sticker: 12 chars, no ambiguous ones."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_claim_code(code: str) -> str:
    return code.strip().upper().replace(" ", "")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
