"""The seed's device contract, exactly: a published API that clients were written against."""

from datetime import datetime

from fastapi.testclient import TestClient

from tests.cloudkit import capture_body, new_account, new_device


def _me(api, account) -> dict:
    return api.get("/api/users/me/", headers=account.headers).json()


def test_trigger_takes_the_seeds_body_and_checks_user_id_against_the_caller(api):
    """Expected: the seed's ``{device_serial, user_id}`` accepted and ``user_id`` checked.
    Happened: 422 (user_id was an unknown field), and the 200/202 bodies had no ``message``."""
    alice = new_account(api, "alice@example.com")
    mallory = new_account(api, "mallory@example.com")
    new_device(api, alice, "box-1")

    own = api.post("/api/device/trigger/", json={"device_serial": "box-1", "user_id": _me(api, alice)["id"]},
                   headers=alice.headers)
    assert own.status_code == 202, own.text
    assert own.json()["status"] == "queued" and own.json()["message"]

    # Naming another user never lets the caller act as them, and costs the caller nothing.
    posing = api.post("/api/device/trigger/", json={"device_serial": "box-1", "user_id": _me(api, mallory)["id"]},
                      headers=alice.headers)
    assert posing.status_code == 403
    assert posing.json()["error"] == "forbidden"
    status = api.get("/api/device/status/", params={"device_serial": "box-1"}, headers=alice.headers).json()
    assert status["clicks_used_today"] == 1


def test_click_limit_429_has_the_seeds_fields(api):
    """Expected: ``status: "error"`` and ``message`` next to the click counts. Happened: neither was there."""
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    for _ in range(3):
        api.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=alice.headers)
    refused = api.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=alice.headers)
    assert refused.status_code == 429
    body = refused.json()
    assert body["status"] == "error" and body["message"]
    assert (body["clicks_used"], body["clicks_limit"]) == (3, 3)
    assert datetime.fromisoformat(body["reset_at"]).tzinfo is not None


def test_status_gives_last_capture_as_a_timestamp(api):
    """Expected: ``last_capture`` a timestamp as in the seed. Happened: it was a capture object."""
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    empty = api.get("/api/device/status/", params={"device_serial": "box-1"}, headers=alice.headers).json()
    assert empty["last_capture"] is None
    body = capture_body("box-1", capture_id="cap-1", timestamp="2026-05-01T08:30:00+00:00")
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
    status = api.get("/api/device/status/", params={"device_serial": "box-1"}, headers=alice.headers).json()
    assert datetime.fromisoformat(status["last_capture"]) == datetime.fromisoformat("2026-05-01T08:30:00+00:00")
    assert status["latest_capture"]["capture_id"] == "cap-1"


def test_an_unhandled_exception_is_a_json_500(cloud_app):
    """Expected: a JSON error body for a bug too. Happened: ``text/plain`` "Internal Server Error"."""

    def broken() -> None:
        raise RuntimeError("a bug")

    cloud_app.add_api_route("/api/test-broken", broken)
    with TestClient(cloud_app, raise_server_exceptions=False) as client:
        response = client.get("/api/test-broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "internal_error"
    assert "a bug" not in response.text


def test_text_with_nul_is_a_clear_422_on_every_database(api):
    """Expected: a NUL character in request text refused with a 422 (as the OpenAPI document states).
    Happened on PostgreSQL (text cannot hold NUL): a 500 from psycopg's DataError."""
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    requests = [
        api.patch("/api/users/me/", json={"name": "a\x00b"}, headers=alice.headers),
        api.post("/api/auth/token/", json={"email": "a\x00@example.com", "password": "x"}),
        api.post("/api/gateways/", json={"name": "home\x00"}, headers=alice.headers),
        api.get("/api/device/status/", params={"device_serial": "box\x00-1"}, headers=alice.headers),
        api.get("/api/devices/box%00-1/", headers=alice.headers),
    ]
    assert [r.status_code for r in requests] == [422] * len(requests)
    assert all(r.json()["error"] == "invalid_request" for r in requests)
