"""What the billing routes take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from cloud.api.schemas import Strict


class BillingPublic(BaseModel):
    enabled: bool  # false: payments are not set up here (no upgrade button)
    plans: list[Literal["monthly", "yearly"]]
    tier: Literal["free", "premium"]
    free_clicks_per_day: int  # the free tier's photos on request a day
    status: str | None  # Stripe's subscription status, if there is one
    current_period_end: datetime | None
    cancel_at_period_end: bool
    premium_until: datetime | None  # premium ends then (cancelled, or the grace of a failed payment)
    grace_until: datetime | None
    can_manage: bool  # a Stripe customer exists: the customer portal can open
    notice: str | None  # e.g. a failed payment


class CheckoutCreate(Strict):
    plan: Literal["monthly", "yearly"] = "monthly"


class RedirectOut(BaseModel):
    url: str  # send the browser here (Stripe Checkout or the customer portal)


class WebhookOut(BaseModel):
    status: Literal["processed", "duplicate", "ignored"]
    outcome: str
