"""Send limits for what costs money or lands in a stranger's inbox: email, SMS and confirmation codes.

Counted per user and per recipient in fixed one-hour windows (confirmation codes to one address:
per day), by one atomic upsert each (``INSERT … ON CONFLICT DO UPDATE … WHERE count < limit``),
so concurrent senders on SQLite or PostgreSQL cannot overspend. An alert over the limit is not
dropped: it waits, pending, for the next window. A confirmation code over the limit is a 429.
Recipients are keyed by a hash of the address (the table is not a list of addresses).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.models import SendCount
from cloud.notify.config import NotifySettings

HOUR, DAY = 3600, 86400


def _address_key(channel: str, address: str) -> str:
    return f"to:{channel}:{hashlib.sha256(address.strip().lower().encode()).hexdigest()[:40]}"


def take(session: Session, key: str, *, now: datetime, window_s: int, limit: int) -> datetime | None:
    """Count one send under ``key``; None when allowed, else when the window ends (nothing counted)."""
    window = int(now.timestamp()) // window_s
    if limit > 0:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        stmt = insert(SendCount).values(key=key, window=window, count=1).on_conflict_do_update(
            index_elements=[SendCount.key, SendCount.window], set_={"count": SendCount.count + 1},
            where=SendCount.count < limit,
        ).returning(SendCount.count)
        if session.execute(stmt).scalar() is not None:
            return None
    return datetime.fromtimestamp((window + 1) * window_s, UTC)


def take_alert(session: Session, settings: NotifySettings, *, user_id: int, channel: str, address: str,
               now: datetime) -> datetime | None:
    """An email or SMS alert: the user's hourly allowance, then the recipient's. None: send now."""
    per_user = settings.sms_per_user_per_hour if channel == "sms" else settings.email_per_user_per_hour
    until = take(session, f"user:{user_id}:{channel}", now=now, window_s=HOUR, limit=per_user)
    if until is None:
        until = take(session, _address_key(channel, address), now=now, window_s=HOUR,
                     limit=settings.sends_per_recipient_per_hour)
    return until


def take_code(session: Session, settings: NotifySettings, *, user_id: int, channel: str, address: str,
              now: datetime) -> datetime | None:
    """A confirmation code: few per user an hour (no cycling through strangers' addresses), and few
    per address a day whoever asks (no flooding one person from many accounts)."""
    until = take(session, f"code-user:{user_id}", now=now, window_s=HOUR,
                 limit=settings.confirm_codes_per_user_per_hour)
    if until is None:
        until = take(session, "code-" + _address_key(channel, address), now=now, window_s=DAY,
                     limit=settings.confirm_codes_per_address_per_day)
    return until
