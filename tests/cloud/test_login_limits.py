"""Login is limited per account and per client address, and password hashing is bounded.

Found in review: 30 wrong passwords in a row got 30 x 401 (no limit), and every attempt ran an
argon2 check costing 64 MB, with no bound on how many ran at once.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cloud import security
from cloud.app import create_app
from cloud.context import AppContext
from tests.cloudkit import make_settings, new_account

LIMITS = {"login_failures_per_account": 3, "login_failures_per_address": 5, "login_window_s": 600}


@pytest.fixture
def cloud_settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, **LIMITS)


def _login(client: TestClient, email: str, password: str):
    return client.post("/api/auth/token/", json={"email": email, "password": password})


def _from(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 50000))


def test_wrong_passwords_for_one_account_are_limited_with_retry_after(api, cloud_app, clock):
    """Expected: 429 with Retry-After after 3 failures, even from other addresses. Before: 401 forever."""
    new_account(api, "alice@example.com", password="right password")
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert _login(_from(cloud_app, address), "alice@example.com", "wrong").status_code == 401
    refused = _login(_from(cloud_app, "10.0.0.4"), "Alice@Example.com", "right password")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited" and refused.json()["detail"]
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= LIMITS["login_window_s"]
    clock.advance(retry_after)
    assert _login(api, "alice@example.com", "right password").status_code == 200


def test_one_address_guessing_many_accounts_is_limited(api, cloud_app):
    """Expected: 429 after 5 failures from one address, whatever the account. Before: 401 forever."""
    new_account(api, "bob@example.com", password="right password")
    guesser = _from(cloud_app, "203.0.113.9")
    for n in range(LIMITS["login_failures_per_address"]):
        assert _login(guesser, f"user{n}@example.com", "guess").status_code == 401
    assert _login(guesser, "bob@example.com", "right password").status_code == 429
    assert _login(_from(cloud_app, "203.0.113.10"), "bob@example.com", "right password").status_code == 200


def test_a_successful_login_clears_the_accounts_failures(api, cloud_app):
    new_account(api, "carol@example.com", password="right password")
    client = _from(cloud_app, "10.1.0.1")
    for _ in range(2):
        assert _login(client, "carol@example.com", "typo").status_code == 401
    assert _login(client, "carol@example.com", "right password").status_code == 200
    for _ in range(2):
        assert _login(client, "carol@example.com", "typo").status_code == 401


def test_failures_are_counted_in_the_database_across_processes(api, cloud_app, cloud_settings, clock):
    """Two apps (two cloud replicas) on one database share the count."""
    new_account(api, "dave@example.com", password="right password")
    for _ in range(LIMITS["login_failures_per_account"]):
        assert _login(api, "dave@example.com", "wrong").status_code == 401
    other = AppContext.build(cloud_settings, clock=clock)
    try:
        with TestClient(create_app(ctx=other)) as replica:
            assert _login(replica, "dave@example.com", "right password").status_code == 429
    finally:
        other.engine.dispose()


def test_password_hashing_is_bounded_and_a_waiting_login_gets_429(cloud_settings, clock):
    """Expected: with every hashing slot busy, a login waits briefly, then 429 + Retry-After.
    Before: nothing bounded concurrent argon2 checks (64 MB each)."""
    cloud_settings.password_hash_concurrency = 1
    cloud_settings.password_hash_wait_s = 0.2
    ctx = AppContext.build(cloud_settings, clock=clock)
    try:
        with TestClient(create_app(ctx=ctx)) as client:
            new_account(client, "erin@example.com", password="right password")
            with security.hashing_slot():  # someone else's login holds the only slot
                for _ in range(LIMITS["login_failures_per_account"] + 1):
                    busy = _login(client, "erin@example.com", "right password")
                    assert busy.status_code == 429 and busy.headers["Retry-After"]
            # Attempts the server was too busy to check did not count against the account.
            assert _login(client, "erin@example.com", "right password").status_code == 200
    finally:
        ctx.engine.dispose()
        security.configure_hashing()  # back to the defaults for other tests
