"""Buying and managing premium: the real stripe SDK calls a local fake Stripe, which checks the requests."""

from __future__ import annotations

import stripe
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.context import AppContext
from cloud.models import TierChange
from mailcam.cli import app as cli
from tests.billing import stripe_events as e
from tests.billing.fake_stripe import API_KEY
from tests.cloudkit import make_settings, new_account


def test_upgrade_opens_a_checkout_session_for_the_plan_the_email_and_the_way_back(billing, fake_stripe, live):
    r = billing.api.post("/api/billing/checkout/", json={"plan": "yearly"}, headers=billing.account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith(f"{fake_stripe.url}/c/pay/cs_test_")

    (call,) = fake_stripe.requests
    assert call.path == "/v1/checkout/sessions"
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["stripe-version"] == stripe.StripeClient(API_KEY)._requestor._options.stripe_version
    assert call.form["mode"] == "subscription"
    assert call.form["line_items[0][price]"] == "price_yearly_test"
    assert call.form["line_items[0][quantity]"] == "1"
    assert call.form["customer_email"] == "alice@example.com"
    assert "customer" not in call.form
    assert call.form["client_reference_id"] == str(billing.user_id)
    assert call.form["subscription_data[metadata][mailcam_user_id]"] == str(billing.user_id)
    assert call.form["success_url"] == f"{live.url}/#/billing/success"
    assert call.form["cancel_url"] == f"{live.url}/#/billing/cancelled"

    monthly = billing.api.post("/api/billing/checkout/", json={}, headers=billing.account.headers)
    assert monthly.status_code == 200
    assert fake_stripe.requests[-1].form["line_items[0][price]"] == "price_monthly_test"


def test_a_returning_customer_checks_out_as_the_same_stripe_customer(billing, fake_stripe, clock):
    start = clock.now()
    billing.upgrade(start)
    billing.deliver(
        e.subscription("deleted", billing.sub_id, billing.customer, "canceled", start, created=start + e.MONTH / 2)
    )

    r = billing.api.post("/api/billing/checkout/", json={"plan": "monthly"}, headers=billing.account.headers)
    assert r.status_code == 200, r.text
    form = fake_stripe.requests[-1].form
    assert form["customer"] == billing.customer and "customer_email" not in form


def test_a_subscriber_is_sent_to_manage_not_to_buy_again(billing, fake_stripe, clock):
    billing.upgrade(clock.now())
    again = billing.api.post("/api/billing/checkout/", json={"plan": "monthly"}, headers=billing.account.headers)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert fake_stripe.requests == []

    portal = billing.api.post("/api/billing/portal/", headers=billing.account.headers)
    assert portal.status_code == 200, portal.text
    assert portal.json()["url"].startswith(f"{fake_stripe.url}/p/session/bps_")
    (call,) = fake_stripe.requests
    assert call.path == "/v1/billing_portal/sessions"
    assert call.form["customer"] == billing.customer
    assert call.form["return_url"].endswith("/#/account")


def test_manage_without_a_stripe_customer_is_404_and_calls_nobody(billing, fake_stripe):
    r = billing.api.post("/api/billing/portal/", headers=billing.account.headers)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert billing.me()["can_manage"] is False
    assert fake_stripe.requests == []


def test_stripe_down_or_refusing_our_key_gives_a_503_not_a_500(billing, fake_stripe):
    fake_stripe.fail_with = 500
    r = billing.api.post("/api/billing/checkout/", json={"plan": "monthly"}, headers=billing.account.headers)
    assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
    assert len(fake_stripe.requests) == 2  # the SDK retried once

    fake_stripe.reset()
    billing.ctx.stripe = None  # rebuilt with a key Stripe does not know
    billing.ctx.settings.billing.stripe_api_key = SecretStr("sk_test_revoked")
    r = billing.api.post("/api/billing/checkout/", json={"plan": "monthly"}, headers=billing.account.headers)
    assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
    assert "sk_test_revoked" not in r.text
    assert billing.me()["tier"] == "free"


def test_an_unknown_plan_is_refused_before_stripe_is_called(billing, fake_stripe):
    r = billing.api.post("/api/billing/checkout/", json={"plan": "weekly"}, headers=billing.account.headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert fake_stripe.requests == []


def test_without_stripe_configured_there_is_no_upgrade_and_set_tier_still_works(tmp_path, database_url):
    """The embedded default: billing off. The summary says so (the dashboard hides the button), the
    routes answer 404 billing_disabled, a webhook changes nothing, and the operator's CLI still works
    (and is audited)."""
    ctx = AppContext.build(make_settings(tmp_path, database_url))
    try:
        with TestClient(create_app(ctx=ctx)) as api:
            alice = new_account(api, "alice@example.com")
            summary = api.get("/api/billing/", headers=alice.headers).json()
            assert summary["enabled"] is False and summary["plans"] == [] and summary["tier"] == "free"
            for path in ("/api/billing/checkout/", "/api/billing/portal/"):
                r = api.post(path, json={}, headers=alice.headers)
                assert r.status_code == 404 and r.json()["error"] == "billing_disabled", r.text
            body, headers = e.signed(e.checkout_completed(1, "cus_x", "sub_x", ctx.clock.now()))
            hook = api.post("/api/billing/stripe-webhook", content=body, headers=headers)
            assert hook.status_code == 404 and hook.json()["error"] == "billing_disabled"

            result = CliRunner().invoke(
                cli, ["set-tier", "alice@example.com", "premium"], env={"MAILCAM_DATABASE_URL": database_url}
            )
            assert result.exit_code == 0, result.output
            assert api.get("/api/billing/", headers=alice.headers).json()["tier"] == "premium"
            with ctx.sessions() as session:
                (change,) = session.scalars(select(TierChange)).all()
                assert (change.source, change.old_tier, change.new_tier) == ("cli", "free", "premium")
    finally:
        ctx.engine.dispose()
