"""Billing for the routes: the summary the dashboard shows, and where to send the browser to pay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cloud.billing.entitlement import LIVE_STATUSES
from cloud.billing.stripe_api import StripeApi
from cloud.context import AppContext
from cloud.errors import Conflict, NotFound
from cloud.models import Subscription, User
from cloud.services import accounts

SUCCESS_PATH = "/#/billing/success"
CANCEL_PATH = "/#/billing/cancelled"
RETURN_PATH = "/#/account"


class BillingDisabled(NotFound):
    code = "billing_disabled"


@dataclass(frozen=True)
class BillingSummary:
    enabled: bool
    plans: list[str]
    tier: str
    free_clicks_per_day: int
    status: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    premium_until: datetime | None
    grace_until: datetime | None
    can_manage: bool
    notice: str | None


def stripe_api(ctx: AppContext) -> StripeApi:
    """The app's Stripe client (one per context, built on first use); 404 while billing is off."""
    if not ctx.settings.billing.enabled:
        raise BillingDisabled("payments are not set up on this server")
    if ctx.stripe is None:
        ctx.stripe = StripeApi(ctx.settings.billing)
    return ctx.stripe


def summary(ctx: AppContext, user: User, now: datetime) -> BillingSummary:
    sub: Subscription | None = user.subscription
    tier = accounts.effective_tier(user, now)
    grace = sub.grace_until if sub and sub.status == "past_due" and sub.grace_until and sub.grace_until > now else None
    notice = None
    if grace is not None:
        notice = (
            f"Your last payment failed. Premium goes on until {grace:%-d %B %Y} while the card is "
            "tried again; update it under Manage subscription."
        )
    return BillingSummary(
        enabled=ctx.settings.billing.enabled,
        plans=list(ctx.settings.billing.prices) if ctx.settings.billing.enabled else [],
        tier=tier.value,
        free_clicks_per_day=ctx.settings.free_clicks_per_day,
        status=sub.status if sub else None,
        current_period_end=sub.current_period_end if sub else None,
        cancel_at_period_end=bool(sub and sub.cancel_at_period_end),
        premium_until=sub.ends_at if sub and tier.value == "premium" else None,
        grace_until=grace,
        can_manage=bool(ctx.settings.billing.enabled and sub and sub.stripe_customer_id),
        notice=notice,
    )


def checkout_url(ctx: AppContext, user: User, plan: str, base_url: str) -> str:
    api = stripe_api(ctx)
    if plan not in ctx.settings.billing.prices:
        raise NotFound(f"no {plan} plan is on sale", plan=plan)
    sub = user.subscription
    if sub is not None and sub.status in LIVE_STATUSES:
        raise Conflict("you already have a subscription: use Manage subscription", status=sub.status)
    base = (ctx.settings.notify.public_url or base_url).rstrip("/")
    return api.checkout_url(
        plan=plan,
        user_id=user.id,
        email=user.email,
        customer_id=sub.stripe_customer_id if sub else None,
        success_url=base + SUCCESS_PATH,
        cancel_url=base + CANCEL_PATH,
    )


def portal_url(ctx: AppContext, user: User, base_url: str) -> str:
    api = stripe_api(ctx)
    sub = user.subscription
    if sub is None or not sub.stripe_customer_id:
        raise NotFound("you have no subscription to manage yet")
    base = (ctx.settings.notify.public_url or base_url).rstrip("/")
    return api.portal_url(customer_id=sub.stripe_customer_id, return_url=base + RETURN_PATH)
