"""What makes an alert rich, whatever carries it (Web Push, Apprise, email): a signed link to the
thumbnail (never the bearer token), the mailbox's name, the time in the owner's zone, and the
"Take a photo now" offer while the owner has clicks left today."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.models import Capture, Device, Notification, User
from cloud.notify import kinds, links, preferences
from cloud.notify.base import OutgoingMessage
from cloud.services import accounts, clicks

# Alerts after which "Take a photo now" makes sense (a look at what just arrived).
TAKE_PHOTO_KINDS = (kinds.MAIL_ARRIVED, kinds.PACKAGE_ARRIVED, kinds.MORE_MAIL)


def alert_extras(session: Session, ctx: AppContext, row: Notification) -> dict[str, str]:
    """What makes an alert rich: the thumbnail's signed link, the mailbox's name, the time in the
    owner's zone, and the "take a photo now" offer."""
    extras: dict[str, str] = {}
    now = ctx.clock.now()
    user = session.get(User, row.user_id)
    taken = session.scalar(select(Capture.taken_at).where(Capture.id == row.capture_pk)) if row.capture_pk else None
    if user is not None:
        local = (taken or row.created_at).astimezone(preferences.zone(user.timezone))
        extras["when"] = local.strftime("%H:%M, %a %d %b")
    device = session.get(Device, row.device_id) if row.device_id is not None else None
    if device is not None:
        extras["device"] = device.name
    if row.capture_pk is not None:
        extras["image"] = links.thumbnail_path(ctx.settings.secret_key, row.capture_pk, now=now,
                                               ttl_s=ctx.settings.notify.alert_link_ttl_s)
    if row.kind in TAKE_PHOTO_KINDS and row.device_id is not None and _clicks_left(session, ctx, row.user_id):
        extras["take_photo"] = "1"
    return extras


def _clicks_left(session: Session, ctx: AppContext, user_id: int) -> bool:
    user = session.get(User, user_id)
    if user is None:
        return False
    now = ctx.clock.now()
    window = clicks.window(session, user, accounts.effective_tier(user, now), now, ctx.settings.free_clicks_per_day)
    return window.limit is None or window.used < window.limit


def with_context(message: OutgoingMessage) -> str:
    """The body and, on a line of its own, which mailbox and when (in the owner's zone)."""
    context = " · ".join(v for v in (message.extras.get("device"), message.extras.get("when")) if v)
    return f"{message.body}\n{context}" if context else message.body
