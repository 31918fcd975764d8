"""The owner's side of notifications: the delivery log, app push tokens and webhooks.

(Delivery itself lives in ``cloud.notify``.) A webhook's URL is checked against the outbound
address rule (``cloud.netguard``) when it is saved, and again at every send.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import netguard
from cloud.context import AppContext
from cloud.errors import ValidationFailed
from cloud.models import Capture, Device, Notification, PushToken, User, Webhook
from cloud.notify.webhook import new_salt


def delivery_log(
    session: Session, user: User, *, limit: int, before_id: int | None = None, kind: str | None = None,
    status: str | None = None,
) -> list[tuple[Notification, str | None, str | None]]:
    """(notification, device serial, capture id) for the user, newest first; ``status`` is a
    delivery-log word (``cloud.models.DELIVERY_WORDS``)."""
    query = (
        select(Notification, Device.serial, Capture.capture_id)
        .outerjoin(Device, Device.id == Notification.device_id)
        .outerjoin(Capture, Capture.id == Notification.capture_pk)
        .where(Notification.user_id == user.id)
    )
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    if status is not None:
        query = query.where(Notification.delivered_as(status))
    return [tuple(row) for row in session.execute(query.order_by(Notification.id.desc()).limit(limit)).all()]


def register_push_token(session: Session, user: User, token: str, platform: str | None, now: datetime) -> PushToken:
    """Register an app install's token; one already known moves to this user."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = session.scalar(select(PushToken).where(PushToken.token_sha256 == digest))
    if row is None:
        row = PushToken(user_id=user.id, token=token, token_sha256=digest, platform=platform, created_at=now)
        session.add(row)
    else:
        row.user_id, row.platform = user.id, platform or row.platform
    session.flush()
    return row


def push_tokens(session: Session, user: User) -> list[PushToken]:
    return list(session.scalars(select(PushToken).where(PushToken.user_id == user.id).order_by(PushToken.id)))


def check_webhook_target(ctx: AppContext, url: str) -> None:
    try:
        netguard.Policy.from_allow(ctx.settings.notify.outbound_allow).check_url(url)
    except netguard.TargetRefused as exc:
        raise ValidationFailed(f"the webhook URL is not allowed: {exc.reason}") from exc


def create_webhook(session: Session, ctx: AppContext, user: User, url: str, description: str | None) -> Webhook:
    check_webhook_target(ctx, url)
    hook = Webhook(user_id=user.id, url=url, description=description, secret_salt=new_salt(), active=True,
                   created_at=ctx.clock.now())
    session.add(hook)
    session.flush()
    return hook


def update_webhook(session: Session, ctx: AppContext, hook: Webhook, changes: dict[str, Any]) -> None:
    if "url" in changes:
        check_webhook_target(ctx, changes["url"])
    for field, value in changes.items():
        setattr(hook, field, value)
    session.flush()


def webhooks(session: Session, user: User) -> list[Webhook]:
    return list(session.scalars(select(Webhook).where(Webhook.user_id == user.id).order_by(Webhook.id)))
