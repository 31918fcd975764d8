"""Registration, login, tokens and the profile, through HTTP."""

from sqlalchemy import select

from cloud.models import AuthToken, User
from tests.cloudkit import new_account


def test_register_login_and_me(api):
    alice = new_account(api, "Alice@Example.com", name="Alice", timezone="Europe/Berlin")
    me = api.get("/api/users/me/", headers=alice.headers)
    assert me.status_code == 200
    assert me.json() == {
        "id": me.json()["id"],
        "email": "alice@example.com",
        "name": "Alice",
        "timezone": "Europe/Berlin",
        "tier": "free",
        "role": "homeowner",  # registering devices needs an operator to grant "installer"
    }


def test_password_and_token_are_stored_hashed(api, cloud_ctx):
    alice = new_account(api, "alice@example.com", password="s3cret-password")
    with cloud_ctx.sessions() as session:
        user = session.scalar(select(User))
        assert "s3cret-password" not in user.password_hash and user.password_hash.startswith("$argon2")
        stored = session.scalars(select(AuthToken.token_hash)).all()
    assert alice.token not in stored and len(stored[0]) == 64


def test_duplicate_email_is_409(api):
    new_account(api, "bob@example.com")
    again = api.post("/api/users/", json={"email": "BOB@example.com", "password": "another password"})
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


def test_wrong_password_is_401(api):
    new_account(api, "carol@example.com", password="right password")
    response = api.post("/api/auth/token/", json={"email": "carol@example.com", "password": "wrong password"})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    unknown = api.post("/api/auth/token/", json={"email": "nobody@example.com", "password": "whatever1"})
    assert unknown.status_code == 401


def test_logout_revokes_the_token(api):
    dan = new_account(api, "dan@example.com")
    assert api.delete("/api/auth/token/", headers=dan.headers).status_code == 204
    assert api.get("/api/users/me/", headers=dan.headers).status_code == 401


def test_token_expires(api, clock, cloud_ctx):
    erin = new_account(api, "erin@example.com")
    clock.advance(cloud_ctx.settings.user_token_ttl_s + 1)
    assert api.get("/api/users/me/", headers=erin.headers).status_code == 401


def test_bad_timezone_and_short_password_are_422(api):
    body = {"email": "f@example.com", "password": "long enough", "timezone": "Mars/Base"}
    bad_tz = api.post("/api/users/", json=body)
    assert bad_tz.status_code == 422 and bad_tz.json()["error"] == "invalid_request"
    short = api.post("/api/users/", json={"email": "f@example.com", "password": "short"})
    assert short.status_code == 422


def test_update_profile_timezone(api):
    gina = new_account(api, "gina@example.com")
    response = api.patch("/api/users/me/", json={"timezone": "America/New_York"}, headers=gina.headers)
    assert response.status_code == 200 and response.json()["timezone"] == "America/New_York"
