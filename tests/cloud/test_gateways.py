"""Gateways from the owner's side: adding one (token and setup shown once), its reported status, revoking it."""

from __future__ import annotations

from datetime import timedelta

from tests.cloudkit import new_account

REPORT = {"backlog": 3, "backlog_oldest_s": 42.5, "held": 1, "dead_letters": 2, "broker_connected": True}


def test_a_new_gateway_comes_with_its_command_and_systemd_unit_shown_once(api):
    alice = new_account(api, "alice@example.com")
    created = api.post("/api/gateways/", json={"name": "garage pi"}, headers=alice.headers)
    assert created.status_code == 201
    token, setup = created.json()["gateway_token"], created.json()["setup"]
    assert setup["command"] == (
        f"MAILCAM_GATEWAY_CLOUD_URL=http://testserver MAILCAM_GATEWAY_TOKEN={token} mailcam gateway"
    )
    assert f"MAILCAM_GATEWAY_TOKEN={token}\n" in setup["env_file"]
    assert "EnvironmentFile=/etc/mailcam/gateway.env" in setup["systemd_unit"]
    assert token not in setup["systemd_unit"]  # unit files are world-readable; the env file is chmod 600
    (listed,) = api.get("/api/gateways/", headers=alice.headers).json()
    assert token not in str(listed)
    assert listed["state"] == "never_seen" and listed["backlog"] is None


def test_the_setup_names_the_configured_public_address(api, cloud_ctx):
    cloud_ctx.settings.notify.public_url = "https://mail.example.org/"
    alice = new_account(api, "alice@example.com")
    setup = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()["setup"]
    assert setup["command"].startswith("MAILCAM_GATEWAY_CLOUD_URL=https://mail.example.org MAILCAM_GATEWAY_TOKEN=")


def test_the_owner_sees_what_the_gateway_reports_and_when_it_goes_quiet(api, clock):
    alice = new_account(api, "alice@example.com")
    token = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()["gateway_token"]
    gateway = {"Authorization": f"Bearer {token}"}
    assert api.post("/api/gateway/status/", json=REPORT, headers=gateway).status_code == 204
    (row,) = api.get("/api/gateways/", headers=alice.headers).json()
    assert {k: row[k] for k in REPORT} == REPORT
    assert row["state"] == "online" and row["reported_at"] is not None
    clock.advance(timedelta(minutes=5))
    assert api.get("/api/gateways/", headers=alice.headers).json()[0]["state"] == "offline"


def test_status_reports_are_checked_and_only_gateways_send_them(api):
    alice = new_account(api, "alice@example.com")
    token = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()["gateway_token"]
    gateway = {"Authorization": f"Bearer {token}"}
    bad = api.post("/api/gateway/status/", json={**REPORT, "backlog": -1}, headers=gateway)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"
    assert api.post("/api/gateway/status/", json=REPORT, headers=alice.headers).status_code == 401
    newer = api.post("/api/gateway/status/", json={**REPORT, "cpu_temp_c": 51}, headers=gateway)
    assert newer.status_code == 204  # a newer gateway's extra figures do not break its report


def test_a_revoked_gateway_is_refused_at_once(api):
    alice = new_account(api, "alice@example.com")
    created = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()
    gateway = {"Authorization": f"Bearer {created['gateway_token']}"}
    assert api.get("/api/gateway/devices/", headers=gateway).status_code == 200
    assert api.delete(f"/api/gateways/{created['gateway_id']}/", headers=alice.headers).status_code == 204
    assert api.get("/api/gateway/devices/", headers=gateway).status_code == 401
    assert api.post("/api/gateway/status/", json=REPORT, headers=gateway).status_code == 401
    assert api.get("/api/gateways/", headers=alice.headers).json() == []
