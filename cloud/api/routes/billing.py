"""Billing: my plan, Stripe Checkout and the customer portal, and Stripe's webhook."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from cloud.api import schemas
from cloud.api.deps import AccountUser, CtxDep, SessionDep
from cloud.billing import schemas as s
from cloud.billing import service, webhooks

router = APIRouter(prefix="/api/billing", tags=["billing"])
_err = {"model": schemas.ErrorBody}


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature is over these bytes."""
    return await request.body()


@router.get("/", response_model=s.BillingPublic, responses={401: _err, 403: _err})
def get_billing(user: AccountUser, ctx: CtxDep) -> s.BillingPublic:
    """My plan, its Stripe status and period, and whether payments are set up here."""
    return s.BillingPublic(**dataclasses.asdict(service.summary(ctx, user, ctx.clock.now())))


@router.post("/checkout/", response_model=s.RedirectOut, responses={404: _err, 409: _err, 503: _err})
def create_checkout(body: s.CheckoutCreate, user: AccountUser, ctx: CtxDep, request: Request) -> s.RedirectOut:
    """Start buying premium: a Stripe Checkout session for the plan's price."""
    return s.RedirectOut(url=service.checkout_url(ctx, user, body.plan, str(request.base_url)))


@router.post("/portal/", response_model=s.RedirectOut, responses={404: _err, 503: _err})
def open_portal(user: AccountUser, ctx: CtxDep, request: Request) -> s.RedirectOut:
    """Manage my subscription (card, plan, cancel) in Stripe's customer portal."""
    return s.RedirectOut(url=service.portal_url(ctx, user, str(request.base_url)))


@router.post("/stripe-webhook", response_model=s.WebhookOut, responses={400: _err, 404: _err})
def stripe_webhook(
    payload: Annotated[bytes, Depends(raw_body)],
    session: SessionDep,
    ctx: CtxDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> s.WebhookOut:
    """Stripe's events (signed): subscriptions and invoices decide the tier."""
    event = service.stripe_api(ctx).verified_event(payload, stripe_signature)
    outcome = webhooks.process(session, ctx.settings.billing, event, ctx.clock.now())
    status = outcome if outcome in ("duplicate", "ignored") else "processed"
    return s.WebhookOut(status=status, outcome=outcome)
