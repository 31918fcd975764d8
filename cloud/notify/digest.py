"""The optional daily digest: one summary per user per local day, at their chosen hour."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud import events
from cloud.context import AppContext
from cloud.events import DomainEvent
from cloud.models import Analysis, Capture, Device, Notification, NotificationPreference, User
from cloud.notify import kinds, preferences


def send_digests(session: Session, ctx: AppContext) -> int:
    """Raise today's digest for every subscriber whose digest hour has come; returns how many."""
    now = ctx.clock.now()
    raised = 0
    for row in session.scalars(select(NotificationPreference).order_by(NotificationPreference.user_id)):
        if not (row.events or {}).get(kinds.DAILY_DIGEST):
            continue
        user = session.get(User, row.user_id)
        if user is None:
            continue
        prefs = preferences.load(session, user, ctx.settings.notify)
        local = now.astimezone(preferences.zone(user.timezone))
        if local.hour < prefs.digest_hour:
            continue
        key = f"digest:{user.id}:{local.date().isoformat()}"
        if session.scalar(select(Notification.id).where(Notification.event_key == f"{kinds.DAILY_DIGEST}:{key}")):
            continue
        digest = summary(session, user.id, now - timedelta(days=1), now)
        events.emit(ctx.events, session, DomainEvent.DAILY_DIGEST, digest, user_id=user.id, key=key)
        raised += 1
    return raised


def summary(session: Session, user_id: int, start: datetime, end: datetime) -> events.DailyDigest:
    """Counts for the digest: photos, photos with mail, packages, over [start, end)."""
    base = (
        select(func.count(Capture.id))
        .join(Device, Device.id == Capture.device_id)
        .outerjoin(Analysis, Analysis.capture_pk == Capture.id)
        .where(Device.owner_id == user_id, Capture.received_at >= start, Capture.received_at < end)
    )
    photos = session.scalar(base) or 0
    with_mail = session.scalar(base.where(Analysis.mail_detected.is_(True))) or 0
    packages = session.scalar(base.where(Analysis.package_present.is_(True))) or 0
    text = f"{photos} photo{'s' if photos != 1 else ''} in the last 24 hours; mail in {with_mail}"
    text += f", {packages} with a package." if packages else "."
    return {"title": "Your mailbox today", "text": text, "photos": photos, "with_mail": with_mail,
            "packages": packages}
