"""Short-lived signed links to a capture's thumbnail, for alerts read outside the dashboard.

A push notification (or an Apprise message) shows the photo without the user's bearer
token: the link names the capture, an expiry and an HMAC of both under the server secret.
Anyone holding the link sees that one thumbnail until it expires, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

PATH = "/api/alert-links/thumbnails"


def _signature(secret: str, capture_pk: int, expires: int) -> str:
    message = f"mailcam-thumbnail:{capture_pk}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def thumbnail_path(secret: str, capture_pk: int, *, now: datetime, ttl_s: int) -> str:
    """The link's path and query (relative: a service worker resolves it against its own origin)."""
    expires = int(now.timestamp()) + ttl_s
    return f"{PATH}/{capture_pk}?exp={expires}&sig={_signature(secret, capture_pk, expires)}"


def is_valid(secret: str, capture_pk: int, expires: int, signature: str, *, now: datetime) -> bool:
    """The signature is ours and the link has not expired."""
    if expires < int(now.timestamp()):
        return False
    return hmac.compare_digest(_signature(secret, capture_pk, expires), signature)
