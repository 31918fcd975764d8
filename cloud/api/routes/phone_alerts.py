"""Alerts on my phone without an app: Web Push subscriptions, Apprise links ("Other apps"), signed thumbnail links."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import Response
from sqlalchemy import select

from cloud import netguard
from cloud.api import schemas as core_schemas
from cloud.api.deps import AccountUser, CtxDep, CurrentUser, SessionDep
from cloud.api.schemas import RowId
from cloud.errors import Conflict, NotFound, RateLimited, ValidationFailed
from cloud.models import AppriseTarget, Capture, WebPushSubscription
from cloud.notify import apprise_channel, links, send_limits, vapid, webpush
from cloud.notify import phone_schemas as s
from cloud.notify.base import ChannelError, OutgoingMessage

router = APIRouter(prefix="/api/notifications/webpush", tags=["notifications"])
links_router = APIRouter(prefix=links.PATH, tags=["notifications"])
_err = {"model": core_schemas.ErrorBody}


@router.get("/key", response_model=s.WebPushKey)
def vapid_public_key(ctx: CtxDep) -> s.WebPushKey:
    """The server's VAPID public key, to subscribe a browser with."""
    return s.WebPushKey(public_key=vapid.application_server_key(vapid.server_vapid(ctx)))


def _public(sub: WebPushSubscription) -> s.WebPushSubscriptionPublic:
    return s.WebPushSubscriptionPublic(id=sub.id, name=sub.name, created_at=sub.created_at,
                                       last_sent_at=sub.last_sent_at)


@router.post("/subscriptions/", status_code=status.HTTP_201_CREATED, response_model=s.WebPushSubscriptionPublic,
             responses={422: _err})
def subscribe(
    body: s.WebPushSubscriptionCreate, user: AccountUser, session: SessionDep, ctx: CtxDep,
    user_agent: Annotated[str | None, Header(max_length=1000)] = None,
) -> s.WebPushSubscriptionPublic:
    """Notify me on this browser (re-subscribing the same browser updates it)."""
    try:
        netguard.Policy.from_allow(ctx.settings.notify.outbound_allow).check_url(body.endpoint)
    except netguard.TargetRefused as exc:
        raise ValidationFailed(f"the push service's address is not allowed: {exc.reason}") from exc
    digest = hashlib.sha256(body.endpoint.encode()).hexdigest()
    sub = session.scalar(select(WebPushSubscription).where(WebPushSubscription.endpoint_sha256 == digest))
    if sub is None:
        sub = WebPushSubscription(endpoint=body.endpoint, endpoint_sha256=digest, created_at=ctx.clock.now())
        session.add(sub)
    sub.user_id, sub.p256dh, sub.auth = user.id, body.keys.p256dh, body.keys.auth
    sub.name = webpush.device_name(user_agent)
    session.commit()
    return _public(sub)


@router.get("/subscriptions/", response_model=list[s.WebPushSubscriptionPublic])
def list_subscriptions(user: CurrentUser, session: SessionDep) -> list[s.WebPushSubscriptionPublic]:
    """The browsers that get my alerts."""
    rows = session.scalars(
        select(WebPushSubscription).where(WebPushSubscription.user_id == user.id).order_by(WebPushSubscription.id)
    )
    return [_public(r) for r in rows]


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: _err})
def unsubscribe(subscription_id: RowId, user: AccountUser, session: SessionDep) -> None:
    """Stop notifying a browser."""
    sub = session.get(WebPushSubscription, subscription_id)
    if sub is None or sub.user_id != user.id:
        raise NotFound("no such browser subscription", subscription_id=subscription_id)
    session.delete(sub)
    session.commit()


@links_router.get("/{capture_pk}", response_class=Response, responses={404: _err, 200: {"content": {"image/jpeg": {}}}})
def signed_thumbnail(
    capture_pk: RowId, ctx: CtxDep, session: SessionDep,
    exp: Annotated[int, Query(ge=0, le=2**40)], sig: Annotated[str, Query(pattern=r"^[0-9a-f]{32}$")],
) -> Response:
    """A capture's thumbnail through the signed link in an alert (no login; expires)."""
    if not links.is_valid(ctx.settings.secret_key, capture_pk, exp, sig, now=ctx.clock.now()):
        raise NotFound("this link has expired or is not valid")
    sha = session.scalar(select(Capture.image_sha256).where(Capture.id == capture_pk))
    try:
        data = ctx.images.read(sha, thumbnail=True) if sha else None
    except FileNotFoundError:
        data = None
    if data is None:
        raise NotFound("the photo has been deleted")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600",
                                                            "Referrer-Policy": "no-referrer"})


# --- "Other apps" (Apprise URLs) ---------------------------------------------------------------

apprise_router = APIRouter(prefix="/api/notifications/apprise", tags=["notifications"])
TESTS_PER_HOUR = 10


def _target_public(target: AppriseTarget) -> s.AppriseTargetPublic:
    return s.AppriseTargetPublic(id=target.id, label=target.label, active=target.active,
                                 created_at=target.created_at)


def _owned_target(session: SessionDep, user_id: int, target_id: int) -> AppriseTarget:
    target = session.get(AppriseTarget, target_id)
    if target is None or target.user_id != user_id:
        raise NotFound("no such app link", target_id=target_id)
    return target


@apprise_router.post("/targets/", status_code=status.HTTP_201_CREATED, response_model=s.AppriseTargetPublic,
                     responses={409: _err, 422: _err})
def add_target(
    body: s.AppriseTargetCreate, user: AccountUser, session: SessionDep, ctx: CtxDep
) -> s.AppriseTargetPublic:
    """Send my alerts to another app through an Apprise URL (stored encrypted, shown masked)."""
    secret = ctx.settings.secret_key
    try:
        apprise_channel.check_target(body.url, netguard.Policy.from_allow(ctx.settings.notify.outbound_allow))
        label = apprise_channel.label(body.url)
    except apprise_channel.InvalidTarget as exc:
        raise ValidationFailed(exc.reason) from exc
    digest = apprise_channel.fingerprint(secret, body.url)
    known = select(AppriseTarget.id).where(AppriseTarget.user_id == user.id, AppriseTarget.url_sha256 == digest)
    if session.scalar(known) is not None:
        raise Conflict("this app link is already added")
    target = AppriseTarget(user_id=user.id, url_encrypted=apprise_channel.encrypt(secret, body.url), url_sha256=digest,
                           label=label, active=True, created_at=ctx.clock.now())
    session.add(target)
    session.commit()
    return _target_public(target)


@apprise_router.get("/targets/", response_model=list[s.AppriseTargetPublic])
def list_targets(user: CurrentUser, session: SessionDep) -> list[s.AppriseTargetPublic]:
    """My app links (masked)."""
    rows = session.scalars(select(AppriseTarget).where(AppriseTarget.user_id == user.id).order_by(AppriseTarget.id))
    return [_target_public(t) for t in rows]


@apprise_router.delete("/targets/{target_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: _err})
def remove_target(target_id: RowId, user: AccountUser, session: SessionDep) -> None:
    """Stop sending my alerts to this app."""
    session.delete(_owned_target(session, user.id, target_id))
    session.commit()


@apprise_router.post("/targets/{target_id}/test", response_model=s.AppriseTestResult, responses={404: _err, 429: _err})
def test_target(target_id: RowId, user: AccountUser, session: SessionDep, ctx: CtxDep) -> s.AppriseTestResult:
    """Send a test message to this app now."""
    target = _owned_target(session, user.id, target_id)
    now = ctx.clock.now()
    until = send_limits.take(session, f"apprise-test:{user.id}", now=now, window_s=send_limits.HOUR,
                             limit=TESTS_PER_HOUR)
    if until is not None:  # the button must not become a way to hammer someone's endpoint
        raise RateLimited("too many test messages; try again later", retry_after=int((until - now).total_seconds()) + 1)
    session.commit()
    try:
        url = apprise_channel.decrypt(ctx.settings.secret_key, target.url_encrypted)
    except ValueError:
        return s.AppriseTestResult(sent=False, detail="this link was saved under another server secret: add it again")
    notify = ctx.settings.notify
    channel = apprise_channel.AppriseChannel(notify, policy=netguard.Policy.from_allow(notify.outbound_allow))
    message = OutgoingMessage(notification_id=0, kind="test", event_key="test", title="mailcam test",
                              body="This app will get your mailbox alerts.", data={}, created_at=ctx.clock.now(),
                              address=url, extras={"label": target.label})
    try:
        channel.send(message)
    except ChannelError as exc:
        return s.AppriseTestResult(sent=False, detail=exc.detail)
    return s.AppriseTestResult(sent=True, detail=f"Sent to {target.label}.")
