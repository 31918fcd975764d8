"""Web Push's VAPID key pair: one per deployment, whichever replica made it.

``MAILCAM_NOTIFY__VAPID_PRIVATE_KEY`` wins when set. Otherwise the key lives in the database
(``ServerKey`` "vapid", sealed under the server secret), so every replica signs with the key the
browsers subscribed with. The first process to need it adopts the key file an earlier version made
in its data directory (``vapid_key_file``: browsers subscribed with that key keep their alerts),
else generates one. Concurrent first uses agree: the row's primary key lets one insert win, and
the others read the winner's key.

Changing the key invalidates every subscription (browsers subscribed with the old public key).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02, b64urlencode
from sqlalchemy.exc import IntegrityError

from cloud import sealed
from cloud.context import AppContext
from cloud.models import ServerKey

__all__ = ["KeyUnreadable", "Vapid02", "application_server_key", "b64urlencode", "server_vapid"]

KEY_NAME = "vapid"
PURPOSE = "server-key:vapid"


class KeyUnreadable(RuntimeError):
    """The stored key was sealed under another server secret: the replicas' secrets differ."""


def server_vapid(ctx: AppContext) -> Vapid02:
    """The deployment's VAPID key: from the settings, else the database's (made on first use)."""
    settings = ctx.settings.notify
    if settings.vapid_private_key:
        return Vapid02.from_string(settings.vapid_private_key)
    pem = _stored_pem(ctx) or _store_first(ctx, _adopted_or_new_pem(settings.vapid_key_file))
    return Vapid02.from_pem(pem.encode())


def application_server_key(vapid: Vapid02) -> str:
    """The public key as the browser's ``pushManager.subscribe`` wants it (base64url, uncompressed point)."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(raw)


def _stored_pem(ctx: AppContext) -> str | None:
    with ctx.sessions() as session:
        row = session.get(ServerKey, KEY_NAME)
        if row is None:
            return None
        try:
            return sealed.unseal(ctx.settings.secret_key, PURPOSE, row.value_sealed)
        except sealed.SealedUnderAnotherSecret as exc:
            raise KeyUnreadable(
                "the stored Web Push key was sealed under another server secret: every cloud process "
                "needs the same MAILCAM_SECRET_KEY"
            ) from exc


def _store_first(ctx: AppContext, pem: str) -> str:
    """Store ``pem`` unless another process stored its key first; the key that is stored."""
    try:
        with ctx.sessions.begin() as session:
            session.add(ServerKey(name=KEY_NAME, value_sealed=sealed.seal(ctx.settings.secret_key, PURPOSE, pem),
                                  created_at=ctx.clock.now()))
    except IntegrityError:
        stored = _stored_pem(ctx)
        if stored is None:  # pragma: no cover - a stored row is never deleted
            raise
        return stored
    return pem


def _adopted_or_new_pem(key_file: str | None) -> str:
    if key_file and Path(key_file).exists():
        return Path(key_file).read_text()
    vapid = Vapid02()
    vapid.generate_keys()
    return vapid.private_pem().decode()
