"""My notifications: delivery log, preferences, push tokens and webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud.api import schemas as core_schemas
from cloud.api.deps import AccountUser, CtxDep, CurrentUser, OwnedPushToken, OwnedWebhook, SessionDep
from cloud.models import User, Webhook
from cloud.notify import confirmations, preferences, registry
from cloud.notify import schemas as s
from cloud.notify.webhook import new_salt, webhook_secret
from cloud.services import notifications

router = APIRouter(prefix="/api/notifications", tags=["notifications"])
_err = {"model": core_schemas.ErrorBody}
_errors = {404: _err}
_invalid = {422: _err}


@router.get("/", response_model=s.NotificationPage)
def delivery_log(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    kind: Annotated[s.Kind | None, Query()] = None,
    status_: Annotated[s.Status | None, Query(alias="status")] = None,
) -> s.NotificationPage:
    """What was (or will be) sent to me, newest first."""
    rows = notifications.delivery_log(session, user, limit=limit, before_id=before_id, kind=kind, status=status_)
    items = [
        s.NotificationPublic(
            id=n.id, kind=n.kind, channel=n.channel, recipient=n.recipient, title=n.title, body=n.body,
            status=n.delivery, attempts=n.attempts, last_error=n.last_error, created_at=n.created_at,
            next_attempt_at=n.next_attempt_at, sent_at=n.sent_at, device_serial=serial, capture_id=capture_id,
        )
        for n, serial, capture_id in rows
    ]
    return s.NotificationPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)


def _preferences_public(session: SessionDep, ctx: CtxDep, user: User) -> s.PreferencesPublic:
    prefs = preferences.load(session, user, ctx.settings.notify)
    quiet = None
    if prefs.quiet:
        quiet = s.QuietHoursIn(start=preferences.format_hhmm(prefs.quiet.start),
                               end=preferences.format_hhmm(prefs.quiet.end))
    return s.PreferencesPublic(
        events={kind: prefs.channels(kind) for kind in s.kinds.ALL_KINDS},
        phone=prefs.phone,
        phone_confirmed=bool(prefs.phone) and confirmations.is_confirmed(session, user.id, "sms", prefs.phone),
        email=prefs.email_address,
        email_confirmed=confirmations.is_confirmed(session, user.id, "email", prefs.email_address),
        quiet_hours=quiet,
        timezone=prefs.timezone,
        min_confidence=prefs.min_confidence,
        digest_hour=prefs.digest_hour,
        available_channels=registry.available(ctx.settings.notify),
    )


@router.get("/preferences", response_model=s.PreferencesPublic)
def get_preferences(user: CurrentUser, session: SessionDep, ctx: CtxDep) -> s.PreferencesPublic:
    """My notification preferences (defaults filled in)."""
    return _preferences_public(session, ctx, user)


@router.put("/preferences", response_model=s.PreferencesPublic, responses=_invalid)
def put_preferences(
    body: s.PreferencesUpdate, user: AccountUser, session: SessionDep, ctx: CtxDep
) -> s.PreferencesPublic:
    """Change my notification preferences; fields left out keep their value."""
    changes = body.model_dump(exclude_unset=True)
    preferences.save(session, user, changes, ctx.clock.now())
    return _preferences_public(session, ctx, user)


_confirm_errors = {409: _err, 422: _err, 429: _err}


@router.post(
    "/recipients/{channel}/code",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=s.ConfirmationSent,
    responses={**_confirm_errors, 503: _err},
)
def send_confirmation_code(
    channel: s.ConfirmChannel, user: AccountUser, session: SessionDep, ctx: CtxDep
) -> s.ConfirmationSent:
    """Send a 6-digit code to my email address or phone number; it gets nothing until confirmed."""
    sent = confirmations.send_code(session, ctx, user, channel)
    return s.ConfirmationSent(channel=sent.channel, address=sent.address, expires_at=sent.expires_at)


@router.post("/recipients/{channel}/confirm", response_model=s.RecipientConfirmed, responses=_confirm_errors)
def confirm_recipient(
    channel: s.ConfirmChannel, body: s.ConfirmationCode, user: AccountUser, session: SessionDep, ctx: CtxDep
) -> s.RecipientConfirmed:
    """Confirm my email address or phone number with the code sent there."""
    try:
        address = confirmations.confirm(session, ctx, user, channel, body.code)
    finally:
        session.commit()  # a wrong code's attempt counts even though the request fails
    return s.RecipientConfirmed(channel=channel, address=address)


@router.post("/push-tokens/", status_code=status.HTTP_201_CREATED, response_model=s.PushTokenPublic)
def register_push_token(
    body: s.PushTokenCreate, user: AccountUser, session: SessionDep, ctx: CtxDep
) -> s.PushTokenPublic:
    """Register this app install's FCM token (re-registering moves it to me)."""
    row = notifications.register_push_token(session, user, body.token, body.platform, ctx.clock.now())
    return s.PushTokenPublic(id=row.id, platform=row.platform, created_at=row.created_at)


@router.get("/push-tokens/", response_model=list[s.PushTokenPublic])
def list_push_tokens(user: CurrentUser, session: SessionDep) -> list[s.PushTokenPublic]:
    """My registered app installs (the tokens themselves are not shown)."""
    rows = notifications.push_tokens(session, user)
    return [s.PushTokenPublic(id=r.id, platform=r.platform, created_at=r.created_at) for r in rows]


@router.delete("/push-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors)
def delete_push_token(row: OwnedPushToken, session: SessionDep) -> None:
    """Forget an app install's token (log-out on the phone)."""
    session.delete(row)


def _webhook_public(hook: Webhook) -> s.WebhookPublic:
    return s.WebhookPublic(id=hook.id, url=hook.url, description=hook.description, active=hook.active,
                           created_at=hook.created_at)


@router.post("/webhooks/", status_code=status.HTTP_201_CREATED, response_model=s.WebhookCreated, responses=_invalid)
def create_webhook(body: s.WebhookCreate, user: AccountUser, session: SessionDep, ctx: CtxDep) -> s.WebhookCreated:
    """Add a webhook; its signing secret is shown only here."""
    hook = notifications.create_webhook(session, ctx, user, body.url, body.description)
    secret = webhook_secret(ctx.settings.secret_key, hook.secret_salt)
    return s.WebhookCreated(**_webhook_public(hook).model_dump(), secret=secret)


@router.get("/webhooks/", response_model=list[s.WebhookPublic])
def list_webhooks(user: CurrentUser, session: SessionDep) -> list[s.WebhookPublic]:
    """My webhooks (secrets are not shown again)."""
    return [_webhook_public(h) for h in notifications.webhooks(session, user)]


@router.patch("/webhooks/{webhook_id}", response_model=s.WebhookPublic, responses={**_errors, **_invalid})
def update_webhook(hook: OwnedWebhook, body: s.WebhookUpdate, session: SessionDep, ctx: CtxDep) -> s.WebhookPublic:
    """Change a webhook's URL or description, or switch it on or off."""
    notifications.update_webhook(session, ctx, hook, body.model_dump(exclude_unset=True, exclude_none=True))
    return _webhook_public(hook)


@router.post("/webhooks/{webhook_id}/rotate-secret", response_model=s.WebhookCreated, responses=_errors)
def rotate_webhook_secret(hook: OwnedWebhook, session: SessionDep, ctx: CtxDep) -> s.WebhookCreated:
    """Replace a webhook's signing secret; the new one is shown only here."""
    hook.secret_salt = new_salt()
    return s.WebhookCreated(**_webhook_public(hook).model_dump(),
                            secret=webhook_secret(ctx.settings.secret_key, hook.secret_salt))


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors)
def delete_webhook(hook: OwnedWebhook, session: SessionDep) -> None:
    """Remove a webhook."""
    session.delete(hook)
