"""Users, login tokens, subscription tiers and roles."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.errors import Conflict, Forbidden, NotAuthenticated
from cloud.models import AuthToken, Role, Subscription, Tier, TierChange, User
from cloud.security import hash_password, hash_token, new_token, verify_password


def create_user(
    session: Session, *, email: str, password: str, now: datetime, name: str | None = None, timezone: str = "UTC"
) -> User:
    email = email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists", email=email)
    user = User(email=email, password_hash=hash_password(password), name=name, timezone=timezone, created_at=now)
    user.subscription = Subscription(tier=Tier.FREE, active=True, started_at=now)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists", email=email) from exc
    return user


def login(session: Session, *, email: str, password: str, now: datetime, ttl_s: int) -> tuple[str, AuthToken]:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    # Verify against a dummy hash for unknown users too, so timing does not reveal accounts.
    stored = user.password_hash if user else _DUMMY_HASH
    if not verify_password(stored, password) or user is None:
        raise NotAuthenticated("wrong email or password")
    return issue_token(session, user, now=now, ttl_s=ttl_s)


def issue_token(session: Session, user: User, *, now: datetime, ttl_s: int) -> tuple[str, AuthToken]:
    """A new login token for ``user`` (only its hash is stored)."""
    token = new_token("mcu")
    row = AuthToken(
        user_id=user.id, token_hash=hash_token(token), created_at=now, expires_at=now + timedelta(seconds=ttl_s)
    )
    session.add(row)
    session.flush()
    return token, row


def user_for_token(session: Session, token: str, now: datetime) -> User:
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == hash_token(token)))
    if row is None or row.expires_at <= now:
        raise NotAuthenticated("invalid or expired token")
    user = session.get(User, row.user_id)
    if user is None:
        raise NotAuthenticated("invalid or expired token")
    return user


def logout(session: Session, token: str) -> None:
    session.execute(delete(AuthToken).where(AuthToken.token_hash == hash_token(token)))


def logout_everywhere(session: Session, user: User) -> int:
    """Revoke every login token of ``user`` (API keys are managed on their own); returns how many."""
    return session.execute(delete(AuthToken).where(AuthToken.user_id == user.id)).rowcount or 0


def change_password(
    session: Session, user: User, *, current: str, new: str, now: datetime, ttl_s: int
) -> tuple[str, AuthToken]:
    """Set a new password and log out everywhere: whoever knew the old one keeps no session.

    Returns a fresh token, so the caller's own session goes on.
    """
    if not verify_password(user.password_hash, current):
        raise Forbidden("the current password is wrong")
    user.password_hash = hash_password(new)
    logout_everywhere(session, user)
    return issue_token(session, user, now=now, ttl_s=ttl_s)


def purge_expired_tokens(session: Session, now: datetime) -> int:
    """Delete login tokens past their expiry (the scheduler runs this daily); returns how many."""
    return session.execute(delete(AuthToken).where(AuthToken.expires_at <= now)).rowcount or 0


def effective_tier(user: User, now: datetime) -> Tier:
    sub = user.subscription
    if sub is None or not sub.active or sub.tier != Tier.PREMIUM:
        return Tier.FREE
    if sub.ends_at is not None and sub.ends_at <= now:
        return Tier.FREE
    return Tier.PREMIUM


def set_tier(session: Session, user: User, tier: Tier, now: datetime, ends_at: datetime | None = None) -> None:
    """An operator's change (``mailcam set-tier``): audited; a later Stripe event may change it again."""
    if user.subscription is None:
        user.subscription = Subscription(tier=Tier.FREE, active=True, started_at=now)
        session.flush()
    change_tier(session, user.subscription, tier=tier, ends_at=ends_at, status=user.subscription.status,
                now=now, source="cli")
    user.subscription.started_at = now
    session.flush()


def change_tier(
    session: Session,
    sub: Subscription,
    *,
    tier: Tier,
    ends_at: datetime | None,
    status: str | None,
    now: datetime,
    source: str,
    stripe_event_id: str | None = None,
) -> bool:
    """Set what ``sub`` grants, with a ``TierChange`` row when that differs from before; True if it did."""
    before = (sub.tier if sub.active else None, sub.ends_at, sub.status)
    if before == (tier, ends_at, status):
        return False
    session.add(TierChange(
        user_id=sub.user_id, at=now, source=source, stripe_event_id=stripe_event_id,
        old_tier=before[0], new_tier=tier, old_status=before[2], new_status=status, ends_at=ends_at,
    ))
    sub.tier, sub.active, sub.ends_at, sub.status = tier, True, ends_at, status
    return True


def set_role(session: Session, email: str, role: Role) -> bool:
    """Grant ``role`` to the account with this email (an operator's act); False if there is none."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        return False
    user.role = role
    session.flush()
    return True


_DUMMY_HASH = hash_password("not-a-real-password-just-timing")
