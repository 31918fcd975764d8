"""Stripe events as Stripe sends them (API 2026-10-28: the period on subscription items, an invoice's
subscription under ``parent.subscription_details``), signed with the SDK's own scheme."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta

import stripe

WEBHOOK_SECRET = "whsec_test_mailcam_fake"
_ids = itertools.count(1)
MONTH = timedelta(days=30)


def _stamp(when: datetime) -> int:
    return int(when.timestamp())


def event(kind: str, obj: dict, created: datetime, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test_{next(_ids):06d}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": _stamp(created),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def checkout_completed(user_id: int, customer: str, subscription: str, created: datetime) -> dict:
    return event(
        "checkout.session.completed",
        {
            "id": f"cs_test_{next(_ids):06d}",
            "object": "checkout.session",
            "mode": "subscription",
            "status": "complete",
            "payment_status": "paid",
            "client_reference_id": str(user_id),
            "customer": customer,
            "customer_details": {"email": "alice@example.com"},
            "subscription": subscription,
            "metadata": {"mailcam_user_id": str(user_id)},
        },
        created,
    )


def subscription(
    kind: str,
    sub_id: str,
    customer: str,
    status: str,
    start: datetime,
    *,
    created: datetime | None = None,
    cancel_at_period_end: bool = False,
    user_id: int | None = None,
    period: timedelta = MONTH,
) -> dict:
    end = start + period
    return event(
        f"customer.subscription.{kind}",
        {
            "id": sub_id,
            "object": "subscription",
            "customer": customer,
            "status": status,
            "cancel_at_period_end": cancel_at_period_end,
            "cancel_at": _stamp(end) if cancel_at_period_end else None,
            "ended_at": _stamp(created or start) if status == "canceled" else None,
            "metadata": {"mailcam_user_id": str(user_id)} if user_id else {},
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": f"si_test_{next(_ids):06d}",
                        "object": "subscription_item",
                        "current_period_start": _stamp(start),
                        "current_period_end": _stamp(end),
                        "price": {"id": "price_monthly_test", "object": "price"},
                        "quantity": 1,
                    }
                ],
            },
        },
        created or start,
    )


def invoice(
    kind: str,
    sub_id: str,
    customer: str,
    period_start: datetime,
    *,
    created: datetime | None = None,
    period: timedelta = MONTH,
) -> dict:
    paid = kind == "invoice.paid"
    return event(
        kind,
        {
            "id": f"in_test_{next(_ids):06d}",
            "object": "invoice",
            "customer": customer,
            "created": _stamp(period_start),
            "status": "paid" if paid else "open",
            "billing_reason": "subscription_cycle",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub_id}},
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": f"il_test_{next(_ids):06d}",
                        "period": {"start": _stamp(period_start), "end": _stamp(period_start + period)},
                    }
                ],
            },
        },
        created or period_start,
    )


def signed(payload: dict | str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, dict]:
    """The body and headers Stripe would send: ``Stripe-Signature`` by the SDK's own signing code."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}
