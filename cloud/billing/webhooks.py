"""Stripe webhook events → the user's subscription row. Webhooks are the source of truth.

Each event id is processed once, on any number of replicas: the first thing done is inserting its
``StripeEvent`` row (``ON CONFLICT DO NOTHING``), in the same transaction as its effects. A
second delivery, or the same event on another replica, finds the row (on PostgreSQL it waits for
the first transaction, then sees the conflict) and changes nothing. A failure rolls the row back
with everything else, so Stripe's retry processes it again.

Stripe does not deliver in order. An event older (by Stripe's ``created``) than the newest one
applied to a subscription changes nothing (outcome ``stale``); events of the same second apply in
arrival order.

Finding the user: the subscription id, then the customer id stored at checkout, then the
``mailcam_user_id`` the Checkout session put in the subscription's metadata (its events can come
before ``checkout.session.completed``). An event for none of these is recorded with its payload
(``unknown_customer``) and answered 200: retrying would not help.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.billing.config import BillingSettings
from cloud.billing.entitlement import LIVE_STATUSES, Grant, grant_for
from cloud.billing.stripe_api import BadWebhook
from cloud.db import upsert
from cloud.models import StripeEvent, Subscription, Tier, User
from cloud.services import accounts

log = logging.getLogger("mailcam.billing")

SUBSCRIPTION_EVENTS = tuple(f"customer.subscription.{change}" for change in ("created", "updated", "deleted"))
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed")
HANDLED = ("checkout.session.completed", *SUBSCRIPTION_EVENTS, *INVOICE_EVENTS)


# --- the parts of Stripe's objects we read (API 2025-03-31 and newer, and the older field places) ---


class _Object(BaseModel):
    id: str
    customer: str | None = None
    metadata: dict[str, str] = {}


class _CheckoutSession(_Object):
    mode: str | None = None
    subscription: str | None = None
    client_reference_id: str | None = None
    payment_status: str | None = None


class _Item(BaseModel):
    current_period_start: int | None = None
    current_period_end: int | None = None


class _Items(BaseModel):
    data: list[_Item] = []


class _Subscription(_Object):
    customer: str
    status: str
    cancel_at_period_end: bool = False
    current_period_start: int | None = None  # before 2025-03-31 the period was on the subscription
    current_period_end: int | None = None
    items: _Items = _Items()

    def period(self) -> tuple[datetime | None, datetime | None]:
        starts = [item.current_period_start for item in self.items.data] + [self.current_period_start]
        ends = [item.current_period_end for item in self.items.data] + [self.current_period_end]
        return (_time(min((s for s in starts if s), default=None)), _time(max((e for e in ends if e), default=None)))


class _LinePeriod(BaseModel):
    end: int | None = None


class _Line(BaseModel):
    period: _LinePeriod = _LinePeriod()


class _Lines(BaseModel):
    data: list[_Line] = []


class _SubscriptionDetails(BaseModel):
    subscription: str | None = None


class _Parent(BaseModel):
    subscription_details: _SubscriptionDetails | None = None


class _Invoice(_Object):
    created: int
    subscription: str | None = None  # before 2025-03-31; since then under parent.subscription_details
    parent: _Parent | None = None
    lines: _Lines = _Lines()

    @property
    def subscription_id(self) -> str | None:
        if self.parent and self.parent.subscription_details and self.parent.subscription_details.subscription:
            return self.parent.subscription_details.subscription
        return self.subscription

    def period_end(self) -> datetime | None:
        ends = [line.period.end for line in self.lines.data if line.period.end]
        return _time(max(ends)) if ends else None


class _EventData(BaseModel):
    object: dict[str, Any]


class _Event(BaseModel):
    id: str
    type: str
    created: int
    data: _EventData


def _time(stamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp else None


def _parse(model: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise BadWebhook(f"the event does not have the fields a {model.__name__.strip('_')} needs") from exc


# --- processing ---------------------------------------------------------------------------------


class _Run:
    """One event being processed: its ledger row and the settings and time it needs."""

    def __init__(self, session: Session, settings: BillingSettings, event: _Event, row: StripeEvent, now: datetime):
        self.session, self.settings, self.event, self.row, self.now = session, settings, event, row, now
        self.created = _time(event.created) or now

    def find(self, *, subscription_id: str | None, customer: str | None, user_hint: str | None) -> Subscription | None:
        """The user's subscription row, locked (PostgreSQL) so two events of one user apply one after the other."""
        query = select(Subscription).with_for_update()
        for column, value in (
            (Subscription.stripe_subscription_id, subscription_id),
            (Subscription.stripe_customer_id, customer),
        ):
            if value:
                found = self.session.scalar(query.where(column == value))
                if found is not None:
                    return found
        user_id = int(user_hint) if user_hint and user_hint.isdigit() and len(user_hint) < 10 else None
        if user_id is not None and self.session.get(User, user_id) is not None:
            found = self.session.scalar(query.where(Subscription.user_id == user_id))
            if found is None:  # an account from before subscriptions rows were made at sign-up
                found = Subscription(user_id=user_id, tier=Tier.FREE, active=True, started_at=self.now)
                self.session.add(found)
                self.session.flush()
            return found
        return None

    def unknown(self, customer: str | None, payload: dict[str, Any]) -> str:
        log.warning(
            "Stripe event %s (%s) is for a customer we do not know (%s): recorded",
            self.event.id,
            self.event.type,
            customer,
        )
        self.row.stripe_customer_id = customer
        self.row.payload = payload
        return "unknown_customer"

    def link(self, sub: Subscription, *, customer: str | None, subscription_id: str | None) -> None:
        self.row.user_id = sub.user_id
        self.row.stripe_customer_id = customer
        if customer and sub.stripe_customer_id is None:
            taken = self.session.scalar(select(Subscription.id).where(Subscription.stripe_customer_id == customer))
            if taken is None:
                sub.stripe_customer_id = customer
        if subscription_id:
            sub.stripe_subscription_id = subscription_id

    def stale(self, sub: Subscription) -> bool:
        return sub.stripe_synced_at is not None and self.created < sub.stripe_synced_at

    def apply(
        self,
        sub: Subscription,
        status: str,
        *,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        cancel_at_period_end: bool | None = None,
    ) -> str:
        if cancel_at_period_end is not None:
            sub.cancel_at_period_end = cancel_at_period_end
        if period_end is not None:
            sub.current_period_end = period_end
        current = Grant(sub.tier if sub.active else Tier.FREE, sub.ends_at, sub.grace_until)
        grant = grant_for(
            status,
            period_start=period_start,
            period_end=sub.current_period_end,
            cancel_at_period_end=sub.cancel_at_period_end,
            current=current,
            grace=timedelta(days=self.settings.grace_days),
            now=self.now,
        )
        sub.grace_until = grant.grace_until
        sub.stripe_synced_at = max(self.created, sub.stripe_synced_at or self.created)
        accounts.change_tier(
            self.session,
            sub,
            tier=grant.tier,
            ends_at=grant.ends_at,
            status=status,
            now=self.now,
            source="stripe",
            stripe_event_id=self.event.id,
        )
        return "applied"

    # --- one method per event type ---

    def checkout_session_completed(self, values: dict[str, Any]) -> str:
        checkout = _parse(_CheckoutSession, values)
        if checkout.mode not in (None, "subscription"):
            return "ignored"
        sub = self.find(
            subscription_id=checkout.subscription,
            customer=checkout.customer,
            user_hint=checkout.client_reference_id or checkout.metadata.get("mailcam_user_id"),
        )
        if sub is None:
            return self.unknown(checkout.customer, values)
        if self.stale(sub):  # e.g. a first delivery retried for days, after the subscription ended
            return "stale"
        self.link(sub, customer=checkout.customer, subscription_id=checkout.subscription)
        # Paid: premium at once (the customer is on the success page). The subscription's own events,
        # which may have come first (then this changes nothing), refine it with the status and period.
        if checkout.payment_status in ("paid", "no_payment_required") and sub.status not in LIVE_STATUSES:
            return self.apply(sub, "active")
        return "applied"

    def subscription_changed(self, values: dict[str, Any]) -> str:
        stripe_sub = _parse(_Subscription, values)
        sub = self.find(
            subscription_id=stripe_sub.id,
            customer=stripe_sub.customer,
            user_hint=stripe_sub.metadata.get("mailcam_user_id"),
        )
        if sub is None:
            return self.unknown(stripe_sub.customer, values)
        if sub.stripe_subscription_id not in (None, stripe_sub.id) and sub.status in LIVE_STATUSES:
            # A second subscription of one customer (bought twice): the live one keeps the say.
            log.warning(
                "Stripe subscription %s ignored: user %s has %s", stripe_sub.id, sub.user_id, sub.stripe_subscription_id
            )
            self.row.user_id = sub.user_id
            return "other_subscription"
        self.link(sub, customer=stripe_sub.customer, subscription_id=stripe_sub.id)
        if self.stale(sub):
            return "stale"
        start, end = stripe_sub.period()
        status = "canceled" if self.event.type == "customer.subscription.deleted" else stripe_sub.status
        return self.apply(
            sub, status, period_start=start, period_end=end, cancel_at_period_end=stripe_sub.cancel_at_period_end
        )

    def invoice_event(self, values: dict[str, Any]) -> str:
        invoice = _parse(_Invoice, values)
        sub = self.find(subscription_id=invoice.subscription_id, customer=invoice.customer, user_hint=None)
        if sub is None:
            return self.unknown(invoice.customer, values)
        self.link(sub, customer=invoice.customer, subscription_id=invoice.subscription_id)
        if self.stale(sub):
            return "stale"
        if self.event.type == "invoice.paid":
            period_end = invoice.period_end()
            if period_end and sub.current_period_end and period_end < sub.current_period_end:
                period_end = None  # an old invoice paid late does not shorten the period
            status = "active" if sub.status in (None, "past_due", "unpaid", "incomplete") else sub.status
            return self.apply(sub, status, period_end=period_end)
        if sub.status in LIVE_STATUSES:  # a renewal failed: grace from the invoice's date
            return self.apply(sub, "past_due", period_start=_time(invoice.created))
        return "applied"


def process(session: Session, settings: BillingSettings, values: dict[str, Any], now: datetime) -> str:
    """Apply one verified event once; the outcome (``duplicate`` if it was seen before, ``ignored``)."""
    event = _parse(_Event, values)
    if event.type not in HANDLED:
        log.info("Stripe event %s of type %s ignored (not one mailcam uses)", event.id, event.type)
        return "ignored"
    claimed = session.execute(
        upsert(session, StripeEvent)
        .values(
            event_id=event.id,
            type=event.type,
            created_at=_time(event.created) or now,
            received_at=now,
            outcome="processing",
        )
        .on_conflict_do_nothing(index_elements=[StripeEvent.event_id])
        .returning(StripeEvent.id)
    ).scalar_one_or_none()
    if claimed is None:
        log.info("Stripe event %s delivered again: already processed", event.id)
        return "duplicate"
    row = session.get(StripeEvent, claimed)
    run = _Run(session, settings, event, row, now)
    values = event.data.object
    if event.type == "checkout.session.completed":
        row.outcome = run.checkout_session_completed(values)
    elif event.type in SUBSCRIPTION_EVENTS:
        row.outcome = run.subscription_changed(values)
    else:
        row.outcome = run.invoice_event(values)
    session.flush()
    return row.outcome
