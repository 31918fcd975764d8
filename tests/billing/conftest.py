"""Billing fixtures: the real stripe SDK against a local fake Stripe, the app configured for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cloud.app import create_app
from cloud.models import Subscription, User
from cloud.services import accounts
from tests.billing import stripe_events
from tests.billing.fake_stripe import API_KEY, FakeStripe
from tests.cloudkit import Account, LiveServer, make_settings

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def _fake_stripe_server() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_stripe(_fake_stripe_server: FakeStripe) -> FakeStripe:
    _fake_stripe_server.reset()
    return _fake_stripe_server


def billing_settings(fake: FakeStripe) -> dict:
    return {
        "stripe_api_key": API_KEY,
        "stripe_webhook_secret": stripe_events.WEBHOOK_SECRET,
        "stripe_price_monthly": "price_monthly_test",
        "stripe_price_yearly": "price_yearly_test",
        "stripe_api_base": fake.url,
    }


@pytest.fixture
def cloud_settings(tmp_path: Path, database_url: str, fake_stripe: FakeStripe):
    return make_settings(tmp_path, database_url, billing=billing_settings(fake_stripe))


class Billing:
    """A signed-up user and shortcuts to post Stripe's events for them and read their subscription."""

    def __init__(self, api, ctx) -> None:
        self.api, self.ctx = api, ctx
        with ctx.sessions() as session:  # made here, not by sign-up and log-in: one argon2 hash, not two
            user = accounts.create_user(session, email="alice@example.com", password=PASSWORD, now=ctx.clock.now())
            self.user_id = user.id
            session.commit()
        self.relogin()
        self.customer, self.sub_id = "cus_test_alice", "sub_test_alice"

    def relogin(self) -> None:
        """A fresh login token (after the clock has jumped past the old one's lifetime)."""
        with self.ctx.sessions() as session:
            token, _ = accounts.issue_token(
                session,
                session.get(User, self.user_id),
                now=self.ctx.clock.now(),
                ttl_s=self.ctx.settings.user_token_ttl_s,
            )
            session.commit()
        self.account = Account("alice@example.com", token)

    def post(self, payload: dict | str, **sign) -> object:
        body, headers = stripe_events.signed(payload, **sign)
        return self.api.post("/api/billing/stripe-webhook", content=body, headers=headers)

    def deliver(self, payload: dict) -> dict:
        r = self.post(payload)
        assert r.status_code == 200, r.text
        return r.json()

    def me(self) -> dict:
        r = self.api.get("/api/billing/", headers=self.account.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def row(self) -> Subscription:
        with self.ctx.sessions() as session:
            return session.scalar(select(Subscription).join(User).where(User.id == self.user_id))

    def trigger(self, serial: str):
        return self.api.post("/api/device/trigger/", json={"device_serial": serial}, headers=self.account.headers)

    def upgrade(self, start) -> None:
        """What Stripe sends when Checkout succeeds (the subscription's event first, as often happens)."""
        e = stripe_events
        self.deliver(e.subscription("created", self.sub_id, self.customer, "active", start, user_id=self.user_id))
        self.deliver(e.checkout_completed(self.user_id, self.customer, self.sub_id, start))
        self.deliver(e.invoice("invoice.paid", self.sub_id, self.customer, start))


@pytest.fixture
def live(cloud_ctx) -> Iterator[LiveServer]:
    """The real app under uvicorn (requests from several threads at once, as replicas would get them)."""
    with LiveServer(create_app(ctx=cloud_ctx)) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


@pytest.fixture
def billing(http: httpx.Client, cloud_ctx) -> Billing:
    return Billing(http, cloud_ctx)
