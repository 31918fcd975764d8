"""Click limits for manual triggers: reserve → work → refund, exact under concurrency.

A click is reserved with a single atomic upsert (``INSERT … ON CONFLICT DO
UPDATE … WHERE used < limit RETURNING used``): the database, not Python,
decides whether one is left, so concurrent requests cannot overspend on
SQLite or PostgreSQL. The day is the user's local day.

Changing the time zone must not hand out a fresh day at once (UTC 23:30 → UTC+14 is
already tomorrow): ``carry_over`` moves today's count to the new zone's current day, so
a change of zone never lowers the clicks used "today".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from cloud.db import upsert
from cloud.models import ClickUsage, Tier, User


@dataclass(frozen=True)
class ClickWindow:
    day: date
    used: int
    limit: int | None  # None: unlimited (premium)
    reset_at: datetime  # next local midnight, aware, in the user's timezone


def local_day(now: datetime, tz_name: str) -> tuple[date, datetime]:
    """The user's local date at ``now`` and the next local midnight."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    reset = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz)
    return local.date(), reset


def window(session: Session, user: User, tier: Tier, now: datetime, free_limit: int) -> ClickWindow:
    day, reset = local_day(now, user.timezone)
    used = session.scalar(select(ClickUsage.used).where(ClickUsage.user_id == user.id, ClickUsage.day == day))
    return ClickWindow(day, used or 0, None if tier == Tier.PREMIUM else free_limit, reset)


def try_reserve(session: Session, user_id: int, day: date, limit: int) -> int | None:
    """Take one click of ``limit`` for ``day``; the new count, or None when none is left."""
    if limit <= 0:
        return None
    stmt = upsert(session, ClickUsage).values(user_id=user_id, day=day, used=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ClickUsage.user_id, ClickUsage.day],
        set_={"used": ClickUsage.used + 1},
        where=ClickUsage.used < limit,
    ).returning(ClickUsage.used)
    return session.execute(stmt).scalar_one_or_none()


def refund(session: Session, user_id: int, day: date) -> None:
    """Give one click back; callers guarantee (by a guarded status update) it happens once."""
    session.execute(
        update(ClickUsage)
        .where(ClickUsage.user_id == user_id, ClickUsage.day == day, ClickUsage.used > 0)
        .values(used=ClickUsage.used - 1)
    )


def carry_over(session: Session, user_id: int, old_tz: str, new_tz: str, now: datetime) -> None:
    """Count today's clicks (old zone) against the current day of the new zone too, never lowering it."""
    old_day, _ = local_day(now, old_tz)
    new_day, _ = local_day(now, new_tz)
    if old_day == new_day:
        return
    used = session.scalar(select(ClickUsage.used).where(ClickUsage.user_id == user_id, ClickUsage.day == old_day))
    if not used:
        return
    stmt = upsert(session, ClickUsage).values(user_id=user_id, day=new_day, used=used)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ClickUsage.user_id, ClickUsage.day],
            set_={"used": case((ClickUsage.used < stmt.excluded.used, stmt.excluded.used), else_=ClickUsage.used)},
        )
    )
