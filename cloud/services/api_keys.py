"""Integration API keys (``mck_…``): scoped, revocable, rate-limited per key by the owner's tier.

Scopes: ``read`` may use GET endpoints; ``trigger`` may also ``POST /api/device/trigger/``.
Endpoints for the account itself (keys, profile) refuse keys whatever their scope.
The rate limit is a fixed one-minute window counted by an atomic upsert on
``api_rate_windows``, so it holds across cloud processes on SQLite and PostgreSQL. The
count is committed in its own short transaction before the request's own work begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.db import upsert
from cloud.errors import Forbidden, NotAuthenticated, RateLimited, ValidationFailed
from cloud.models import ApiKey, ApiRateWindow, Tier, User
from cloud.security import hash_token, new_token
from cloud.services import accounts

PREFIX = "mck"
SCOPES = ("read", "trigger")
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
TRIGGER_ROUTES = {("POST", "/api/device/trigger/")}


def is_api_key(token: str) -> bool:
    return token.startswith(f"{PREFIX}_")


@dataclass(frozen=True)
class KeyCaller:
    user_id: int
    key_id: int
    scope: str


def create(session: Session, user: User, *, name: str, scope: str, now: datetime) -> tuple[ApiKey, str]:
    """A new key; the returned plain key is shown once and never stored."""
    if scope not in SCOPES:
        raise ValidationFailed(f"unknown scope {scope!r}", scopes=list(SCOPES))
    key = new_token(PREFIX)
    row = ApiKey(user_id=user.id, name=name, prefix=key[:12], key_hash=hash_token(key), scope=scope, created_at=now)
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, user: User) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)))


def revoke(session: Session, row: ApiKey, now: datetime) -> ApiKey:
    """Revoke the key (the caller's: ``cloud.api.deps.OwnedApiKey``); revoking twice changes nothing."""
    if row.revoked_at is None:
        row.revoked_at = now
    session.flush()
    return row


def allowed(scope: str, method: str, path: str) -> bool:
    if method.upper() in READ_METHODS:
        return True
    return scope == "trigger" and (method.upper(), path) in TRIGGER_ROUTES


def authenticate(ctx: AppContext, key: str, *, method: str, path: str) -> KeyCaller:
    """Check the key, count it against its rate limit, then check its scope (own short transaction)."""
    now = ctx.clock.now()
    with ctx.sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(key)))
        if row is None or row.revoked_at is not None:
            raise NotAuthenticated("invalid or revoked API key")
        user = session.get(User, row.user_id)
        if user is None:
            raise NotAuthenticated("invalid or revoked API key")
        limit = per_minute(ctx, accounts.effective_tier(user, now))
        window = int(now.timestamp()) // 60
        used = _count(session, row.id, window)
        row.last_used_at = now
        caller = KeyCaller(user_id=row.user_id, key_id=row.id, scope=row.scope)
        session.commit()
    if used > limit:
        retry_after = max(1, 60 - int(now.timestamp()) % 60)
        raise RateLimited("too many requests for this API key", limit_per_minute=limit, retry_after=retry_after)
    if not allowed(caller.scope, method, path):
        raise Forbidden(f"this API key's scope ({caller.scope}) does not allow {method} {path}")
    return caller


def per_minute(ctx: AppContext, tier: Tier) -> int:
    s = ctx.settings.notify
    return s.api_rate_premium_per_min if tier == Tier.PREMIUM else s.api_rate_free_per_min


def _count(session: Session, key_id: int, window: int) -> int:
    stmt = (
        upsert(session, ApiRateWindow)
        .values(api_key_id=key_id, window=window, count=1)
        .on_conflict_do_update(
            index_elements=[ApiRateWindow.api_key_id, ApiRateWindow.window], set_={"count": ApiRateWindow.count + 1}
        )
        .returning(ApiRateWindow.count)
    )
    used = session.execute(stmt).scalar_one()
    if used == 1:  # first request of a new window: drop this key's old windows
        session.execute(delete(ApiRateWindow).where(ApiRateWindow.api_key_id == key_id, ApiRateWindow.window < window))
    return used


def prune_windows(session: Session, now: datetime) -> int:
    """Drop rate-limit windows that ended before the current minute; returns how many."""
    spent = delete(ApiRateWindow).where(ApiRateWindow.window < int(now.timestamp()) // 60 - 1)
    return session.execute(spent).rowcount or 0
