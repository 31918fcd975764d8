"""Per-user notification preferences: which kinds on which channels, addresses, quiet hours.

A user without a stored row gets the defaults: every ``DEFAULT_ON`` kind on the free
channels (console, push, webhook); email and SMS are opt-in (they need an address and
SMS costs money). Quiet hours are read in the user's timezone; a notification due inside
them is held until they end, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cloud.errors import ValidationFailed
from cloud.models import NotificationPreference, User
from cloud.notify import kinds
from cloud.notify.config import NotifySettings
from cloud.notify.schemas import E164_PATTERN


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def until(self, now: datetime, tz_name: str) -> datetime | None:
        """When the quiet period containing ``now`` ends (aware UTC), or None if ``now`` is not in one."""
        if self.start == self.end:
            return None
        tz = zone(tz_name)
        local = now.astimezone(tz)
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            inside = self.start <= t < self.end
            end_day = local.date()
        else:  # spans midnight, e.g. 22:00–07:00
            inside = t >= self.start or t < self.end
            end_day = local.date() + timedelta(days=1) if t >= self.start else local.date()
        if not inside:
            return None
        return _local(end_day, self.end, tz).astimezone(UTC)


@dataclass(frozen=True)
class Preferences:
    user_id: int
    timezone: str
    account_email: str
    events: dict[str, list[str]] = field(default_factory=dict)
    phone: str | None = None
    email: str | None = None
    quiet: QuietHours | None = None
    min_confidence: float = 0.6
    digest_hour: int = 8

    def channels(self, kind: str) -> list[str]:
        if kind in self.events:
            return list(self.events[kind])
        return list(kinds.DEFAULT_CHANNELS) if kind in kinds.DEFAULT_ON else []

    @property
    def email_address(self) -> str:
        return self.email or self.account_email

    def quiet_until(self, now: datetime) -> datetime | None:
        return self.quiet.until(now, self.timezone) if self.quiet else None


def load(session: Session, user: User, settings: NotifySettings) -> Preferences:
    return _preferences(user.id, user.timezone, user.email, session.get(NotificationPreference, user.id), settings)


_USERS = User.__table__.c
_STORED = NotificationPreference.__table__.c
# Built once: the notification sink reads them for every alerting event, in the producer's transaction.
_OF_USER = (
    select(_USERS.timezone, _USERS.email.label("account_email"), _STORED.user_id.label("stored"), _STORED.events,
           _STORED.phone, _STORED.email, _STORED.quiet_start, _STORED.quiet_end, _STORED.min_confidence,
           _STORED.digest_hour)
    .select_from(User.__table__.outerjoin(NotificationPreference.__table__, _STORED.user_id == _USERS.id))
    .where(_USERS.id == bindparam("user_id"))
)


def of_user(session: Session, user_id: int, settings: NotifySettings) -> Preferences | None:
    """``load`` by the user's id, in one plain read of the user and their stored row (None: no such user)."""
    row = session.connection().execute(_OF_USER, {"user_id": user_id}).first()
    if row is None:
        return None
    return _preferences(user_id, row.timezone, row.account_email, row if row.stored is not None else None, settings)


def _preferences(user_id: int, timezone: str, account_email: str, row: Any, settings: NotifySettings) -> Preferences:
    """The preferences from the account's fields and the stored row (its columns; None: the defaults)."""
    if row is None:
        return Preferences(
            user_id=user_id,
            timezone=timezone,
            account_email=account_email,
            min_confidence=settings.default_min_confidence,
            digest_hour=settings.default_digest_hour,
        )
    quiet = None
    if row.quiet_start and row.quiet_end:
        quiet = QuietHours(parse_hhmm(row.quiet_start), parse_hhmm(row.quiet_end))
    return Preferences(
        user_id=user_id,
        timezone=timezone,
        account_email=account_email,
        events={k: list(v) for k, v in (row.events or {}).items()},
        phone=row.phone,
        email=row.email,
        quiet=quiet,
        min_confidence=row.min_confidence if row.min_confidence is not None else settings.default_min_confidence,
        digest_hour=row.digest_hour if row.digest_hour is not None else settings.default_digest_hour,
    )


def save(session: Session, user: User, changes: dict, now: datetime) -> NotificationPreference:
    """Apply a partial update (already schema-checked); values are validated again here."""
    row = session.get(NotificationPreference, user.id)
    if row is None:
        row = NotificationPreference(user_id=user.id, events={}, updated_at=now)
        session.add(row)
    if "events" in changes and changes["events"] is not None:
        merged = dict(row.events or {})
        merged.update(validate_events(changes["events"]))
        row.events = merged
    if "phone" in changes:
        row.phone = e164(changes["phone"]) if changes["phone"] else None
    if "email" in changes:
        row.email = changes["email"] or None
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        if quiet:
            row.quiet_start = format_hhmm(parse_hhmm(quiet["start"]))
            row.quiet_end = format_hhmm(parse_hhmm(quiet["end"]))
        else:
            row.quiet_start = row.quiet_end = None
    if "min_confidence" in changes and changes["min_confidence"] is not None:
        row.min_confidence = float(changes["min_confidence"])
    if "digest_hour" in changes and changes["digest_hour"] is not None:
        row.digest_hour = int(changes["digest_hour"])
    row.updated_at = now
    session.flush()
    return row


def validate_events(events: dict[str, list[str]]) -> dict[str, list[str]]:
    clean: dict[str, list[str]] = {}
    for kind, channels in events.items():
        if kind not in kinds.ALL_KINDS:
            raise ValidationFailed(f"unknown notification kind {kind!r}", known=list(kinds.ALL_KINDS))
        unknown = [c for c in channels if c not in kinds.ALL_CHANNELS]
        if unknown:
            raise ValidationFailed(f"unknown channel {unknown[0]!r}", known=list(kinds.ALL_CHANNELS))
        clean[kind] = sorted(set(channels), key=kinds.ALL_CHANNELS.index)
    return clean


def e164(number: str) -> str:
    """The number if it has the E.164 shape (``+15551234567``); ValidationFailed otherwise.

    Only the shape, the same rule the OpenAPI document states: a number of the right shape that
    reaches nobody never gets confirmed (``cloud.notify.confirmations``), so it gets nothing.
    """
    raw = number.strip()
    if not re.fullmatch(E164_PATTERN, raw):
        raise ValidationFailed("phone numbers must be in E.164 form: + and the country code, up to 15 digits")
    return raw


def parse_hhmm(value: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise ValidationFailed(f"times are HH:MM (24 h), not {value!r}") from exc


def format_hhmm(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def zone(name: str) -> ZoneInfo:
    """The named timezone, or UTC for a name this system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=tz)
