"""Stripe's webhooks decide the tier: signed with the SDK's own scheme, posted to the real app (uvicorn)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from cloud.models import StripeEvent, TierChange
from tests.billing import stripe_events as e
from tests.cloudkit import new_device

GRACE = timedelta(days=7)


def _fire(url: str, count: int, request) -> list[httpx.Response]:
    """``count`` requests released at the same moment (threads: no event loop of the test's to depend on)."""
    barrier = threading.Barrier(count)
    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=count)) as client:

        def one(_: int) -> httpx.Response:
            barrier.wait(timeout=30)
            return request(client)

        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one, range(count)))


def _counts(ctx) -> tuple[int, int]:
    with ctx.sessions() as session:
        return session.scalar(select(func.count(StripeEvent.id))), session.scalar(select(func.count(TierChange.id)))


def test_upgrade_makes_premium_and_twenty_concurrent_triggers_are_all_accepted(billing, live, clock):
    new_device(billing.api, billing.account, "box-1")
    start = clock.now()
    billing.upgrade(start)

    me = billing.me()
    assert (me["tier"], me["status"], me["premium_until"], me["can_manage"]) == ("premium", "active", None, True)
    assert me["current_period_end"].startswith((start + e.MONTH).date().isoformat())
    row = billing.row()
    assert (row.stripe_customer_id, row.stripe_subscription_id) == (billing.customer, billing.sub_id)
    with billing.ctx.sessions() as session:
        (change,) = session.scalars(select(TierChange)).all()  # one change: free → premium (then no-ops)
        assert (change.source, change.old_tier, change.new_tier, change.new_status) == (
            "stripe",
            "free",
            "premium",
            "active",
        )

    def trigger(client):
        return client.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=billing.account.headers)

    codes = [r.status_code for r in _fire(live.url, 20, trigger)]
    assert codes == [202] * 20, codes
    status = billing.api.get(
        "/api/device/status/", params={"device_serial": "box-1"}, headers=billing.account.headers
    ).json()
    assert status["user_tier"] == "premium" and status["clicks_limit"] is None


def test_renewal_moves_the_period_on_and_premium_stays(billing, clock):
    start = clock.now()
    billing.upgrade(start)
    renewal = start + e.MONTH
    clock.set(renewal + timedelta(minutes=5))
    billing.deliver(e.subscription("updated", billing.sub_id, billing.customer, "active", renewal))
    billing.deliver(e.invoice("invoice.paid", billing.sub_id, billing.customer, renewal))

    billing.relogin()  # the month has outlived the login token
    me = billing.me()
    assert me["tier"] == "premium" and me["status"] == "active" and me["notice"] is None
    assert me["current_period_end"].startswith((renewal + e.MONTH).date().isoformat())


def test_a_failed_renewal_keeps_premium_through_the_grace_period_with_a_notice_then_free(billing, clock):
    new_device(billing.api, billing.account, "box-1")
    start = clock.now()
    billing.upgrade(start)
    renewal = start + e.MONTH
    clock.set(renewal + timedelta(hours=1))
    billing.deliver(e.invoice("invoice.payment_failed", billing.sub_id, billing.customer, renewal))
    billing.deliver(
        e.subscription(
            "updated", billing.sub_id, billing.customer, "past_due", renewal, created=renewal + timedelta(hours=1)
        )
    )
    billing.relogin()

    me = billing.me()
    assert me["tier"] == "premium" and me["status"] == "past_due"
    assert "payment failed" in me["notice"].lower()
    assert me["grace_until"].startswith((renewal + GRACE).isoformat()[:16])

    # Stripe retries three days later and fails again: the grace is not extended.
    retry = renewal + timedelta(days=3)
    clock.set(retry)
    billing.deliver(e.invoice("invoice.payment_failed", billing.sub_id, billing.customer, renewal, created=retry))
    assert billing.me()["grace_until"] == me["grace_until"]
    assert all(billing.trigger("box-1").status_code == 202 for _ in range(4))  # premium: no limit

    clock.set(renewal + GRACE + timedelta(seconds=1))
    me = billing.me()
    assert me["tier"] == "free" and me["notice"] is None
    assert [billing.trigger("box-1").status_code for _ in range(4)] == [202, 202, 202, 429]

    # The card is updated and the invoice paid: premium again.
    billing.deliver(e.invoice("invoice.paid", billing.sub_id, billing.customer, renewal, created=clock.now()))
    assert billing.me()["tier"] == "premium" and billing.me()["status"] == "active"


def test_cancellation_at_period_end_keeps_premium_until_then_and_the_free_limit_comes_back(billing, clock):
    new_device(billing.api, billing.account, "box-1")
    start = clock.now()
    billing.upgrade(start)
    period_end = start + e.MONTH
    clock.advance(timedelta(days=10))
    billing.deliver(
        e.subscription(
            "updated", billing.sub_id, billing.customer, "active", start, created=clock.now(), cancel_at_period_end=True
        )
    )

    me = billing.me()
    assert me["tier"] == "premium" and me["cancel_at_period_end"] is True
    assert me["premium_until"].startswith(period_end.isoformat()[:19])

    clock.set(period_end - timedelta(minutes=1))
    billing.relogin()
    assert all(billing.trigger("box-1").status_code == 202 for _ in range(5))

    # The period is over; Stripe's customer.subscription.deleted has not even arrived yet.
    clock.set(period_end + timedelta(seconds=1))
    billing.relogin()
    assert billing.me()["tier"] == "free"
    assert [billing.trigger("box-1").status_code for _ in range(4)] == [202, 202, 202, 429]
    limited = billing.trigger("box-1").json()
    assert limited["error"] == "click_limit_exceeded" and limited["clicks_limit"] == 3

    billing.deliver(
        e.subscription(
            "deleted", billing.sub_id, billing.customer, "canceled", start, created=period_end + timedelta(seconds=2)
        )
    )
    me = billing.me()
    assert (me["tier"], me["status"]) == ("free", "canceled")
    with billing.ctx.sessions() as session:
        statuses = [c.new_status for c in session.scalars(select(TierChange).order_by(TierChange.id))]
    assert statuses == ["active", "active", "canceled"]  # bought, set to cancel, ended: the audit


def test_a_duplicate_delivery_is_processed_once_even_when_it_arrives_at_once(billing, live, clock):
    start = clock.now()
    billing.upgrade(start)
    clock.set(start + e.MONTH + timedelta(hours=1))
    failed = e.invoice("invoice.payment_failed", billing.sub_id, billing.customer, start + e.MONTH)
    body, headers = e.signed(failed)
    events_before, changes_before = _counts(billing.ctx)

    def deliver(client):
        return client.post("/api/billing/stripe-webhook", content=body, headers=headers)

    replies = _fire(live.url, 6, deliver)
    assert [r.status_code for r in replies] == [200] * 6
    assert sorted(r.json()["status"] for r in replies) == ["duplicate"] * 5 + ["processed"]
    assert _counts(billing.ctx) == (events_before + 1, changes_before + 1)

    billing.deliver(
        e.invoice(
            "invoice.paid",
            billing.sub_id,
            billing.customer,
            start + e.MONTH,
            created=clock.now() + timedelta(minutes=1),
        )
    )
    assert billing.post(failed).json()["status"] == "duplicate"  # a late redelivery: still once
    billing.relogin()
    assert billing.me()["status"] == "active"


def test_bad_webhooks_are_refused_and_change_nothing(billing, clock):
    good = e.subscription("created", billing.sub_id, billing.customer, "active", clock.now(), user_id=billing.user_id)
    body, headers = e.signed(good)
    hook = "/api/billing/stripe-webhook"
    refused = {
        "unsigned": billing.api.post(hook, content=body, headers={"Content-Type": "application/json"}),
        "wrong secret": billing.post(good, secret="whsec_someone_else"),
        "tampered": billing.api.post(hook, content=body.replace('"active"', '"trialing"'), headers=headers),
        "replayed": billing.post(good, timestamp=int(time.time()) - 301),
        "garbage header": billing.api.post(hook, content=body, headers={"Stripe-Signature": "t=abc,v1"}),
        "not utf-8": billing.api.post(hook, content=b"\xff\xfe" + body.encode(), headers=headers),
        "signed, not json": billing.post("this is not json"),
        "signed, json list": billing.post("[1, 2]"),
        "signed, no status": billing.post({**good, "data": {"object": {"id": "sub_x", "customer": "cus_x"}}}),
    }
    for why, r in refused.items():
        assert r.status_code == 400, (why, r.status_code, r.text)
        assert r.json()["error"] == "bad_webhook" and r.json()["detail"], why
    assert _counts(billing.ctx) == (0, 0)
    assert billing.me()["tier"] == "free"
    assert billing.post(good).json()["status"] == "processed"  # the same event, properly signed


def test_unknown_types_are_ignored_and_unknown_customers_recorded_not_a_500(billing, clock):
    now = clock.now()
    ignored = billing.deliver(e.event("charge.refunded", {"id": "ch_1", "object": "charge"}, now))
    assert ignored == {"status": "ignored", "outcome": "ignored"}

    stranger = e.subscription("updated", "sub_stranger", "cus_stranger", "active", now)
    assert billing.deliver(stranger) == {"status": "processed", "outcome": "unknown_customer"}
    paid = billing.deliver(e.invoice("invoice.paid", "sub_stranger", "cus_stranger", now))
    assert paid["outcome"] == "unknown_customer"
    with billing.ctx.sessions() as session:
        rows = session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
        assert [(r.type, r.outcome, r.stripe_customer_id, r.user_id) for r in rows] == [
            ("customer.subscription.updated", "unknown_customer", "cus_stranger", None),
            ("invoice.paid", "unknown_customer", "cus_stranger", None),
        ]
        assert rows[0].payload["id"] == "sub_stranger"
        assert session.scalar(select(func.count(TierChange.id))) == 0
    assert billing.me()["tier"] == "free"


def test_an_older_event_arriving_late_does_not_undo_a_newer_one(billing, clock):
    start = clock.now()
    billing.upgrade(start)
    late = e.subscription(
        "updated", billing.sub_id, billing.customer, "incomplete", start, created=start - timedelta(seconds=30)
    )
    assert billing.deliver(late)["outcome"] == "stale"
    assert billing.me()["tier"] == "premium"


def test_checkout_first_then_events_of_api_versions_before_2025_03_31(billing, clock):
    """Checkout's event may come before the subscription's (premium at once); an account on an older API
    version sends the period on the subscription and the subscription id on the invoice."""
    start = clock.now()
    assert (
        billing.deliver(e.checkout_completed(billing.user_id, billing.customer, billing.sub_id, start))["outcome"]
        == "applied"
    )
    assert billing.me()["tier"] == "premium"

    old = e.subscription("updated", billing.sub_id, billing.customer, "active", start, cancel_at_period_end=True)
    item = old["data"]["object"].pop("items")["data"][0]
    old["data"]["object"].update(
        current_period_start=item["current_period_start"], current_period_end=item["current_period_end"]
    )
    billing.deliver(old)
    me = billing.me()
    assert me["premium_until"].startswith((start + e.MONTH).isoformat()[:19])

    failed = e.invoice(
        "invoice.payment_failed", billing.sub_id, billing.customer, start, created=start + timedelta(seconds=1)
    )
    invoice = failed["data"]["object"]
    invoice["subscription"] = invoice.pop("parent")["subscription_details"]["subscription"]
    assert billing.deliver(failed)["outcome"] == "applied"
    assert billing.me()["status"] == "past_due"
