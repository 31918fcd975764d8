"""Token lifecycle: rotation on claim, revoke/rotate for devices and gateways, password change, logout everywhere."""

from datetime import timedelta

from sqlalchemy import func, select

from cloud.models import AuthToken
from cloud.scheduler import core_jobs, run_once_per_period
from tests.cloudkit import Account, capture_body, grant_installer, new_account, new_device


def _post_capture(api, token: str, serial: str, capture_id: str) -> int:
    body = capture_body(serial, capture_id=capture_id)
    return api.post("/api/device/capture/", json=body, headers={"Authorization": f"Bearer {token}"}).status_code


def test_claiming_revokes_the_token_the_installer_saw(api):
    """Expected: after the homeowner claims, the installer's copy of the device token is dead.
    Happened: the installer could still post captures as the homeowner's mailbox."""
    installer = new_account(api, "installer@example.com")
    grant_installer(api, installer)
    owner = new_account(api, "owner@example.com")
    reg = api.post("/api/devices/", json={"serial": "MB-0001"}, headers=installer.headers).json()
    claim = api.post("/api/devices/claim/", json={"claim_code": reg["claim_code"]}, headers=owner.headers)
    assert claim.status_code == 200

    assert _post_capture(api, reg["device_token"], "MB-0001", "from-installer") == 401
    new_token = claim.json()["device_token"]
    assert new_token.startswith("mcd_") and new_token != reg["device_token"]
    assert _post_capture(api, new_token, "MB-0001", "from-device") == 200


def test_owner_rotates_and_revokes_a_device_token(api):
    """Expected: owner-only rotate and revoke. Happened: there was no way to replace a leaked device token."""
    alice, mallory = new_account(api, "alice@example.com"), new_account(api, "mallory@example.com")
    box = new_device(api, alice, "box-1")
    assert api.post("/api/devices/box-1/token/", headers=mallory.headers).status_code == 404

    rotated = api.post("/api/devices/box-1/token/", headers=alice.headers)
    assert rotated.status_code == 200
    assert _post_capture(api, box.device_token, "box-1", "old-token") == 401
    fresh = rotated.json()["device_token"]
    assert _post_capture(api, fresh, "box-1", "new-token") == 200

    assert api.delete("/api/devices/box-1/token/", headers=alice.headers).status_code == 204
    assert _post_capture(api, fresh, "box-1", "after-revoke") == 401


def test_owner_rotates_and_revokes_a_gateway(api):
    """Expected: a gateway token can be replaced and a gateway revoked. Happened: neither existed."""
    alice, mallory = new_account(api, "alice@example.com"), new_account(api, "mallory@example.com")
    new_device(api, alice, "box-1")
    created = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()
    gid, old = created["gateway_id"], created["gateway_token"]
    assert [g["gateway_id"] for g in api.get("/api/gateways/", headers=alice.headers).json()] == [gid]
    assert api.get("/api/gateways/", headers=mallory.headers).json() == []
    assert api.post(f"/api/gateways/{gid}/token/", headers=mallory.headers).status_code == 404

    new = api.post(f"/api/gateways/{gid}/token/", headers=alice.headers).json()["gateway_token"]
    assert _post_capture(api, old, "box-1", "gw-old") == 401
    assert _post_capture(api, new, "box-1", "gw-new") == 200

    assert api.delete(f"/api/gateways/{gid}/", headers=mallory.headers).status_code == 404
    assert api.delete(f"/api/gateways/{gid}/", headers=alice.headers).status_code == 204
    assert api.get("/api/gateway/devices/", headers={"Authorization": f"Bearer {new}"}).status_code == 401


def test_change_password_logs_out_every_other_session(api):
    """Expected: a new password ends the sessions of whoever knew the old one. Happened: no way to change it."""
    alice = new_account(api, "alice@example.com", password="old password 1")
    second_login = api.post("/api/auth/token/", json={"email": alice.email, "password": "old password 1"})
    phone = Account(alice.email, second_login.json()["access_token"])
    wrong = api.post("/api/users/me/password/",
                     json={"current_password": "nope nope", "new_password": "new password 2"}, headers=alice.headers)
    assert wrong.status_code == 403

    changed = api.post("/api/users/me/password/",
                       json={"current_password": "old password 1", "new_password": "new password 2"},
                       headers=alice.headers)
    assert changed.status_code == 200
    assert api.get("/api/users/me/", headers=phone.headers).status_code == 401
    assert api.get("/api/users/me/", headers=alice.headers).status_code == 401
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert api.get("/api/users/me/", headers=fresh).status_code == 200
    assert api.post("/api/auth/token/", json={"email": alice.email, "password": "old password 1"}).status_code == 401
    assert api.post("/api/auth/token/", json={"email": alice.email, "password": "new password 2"}).status_code == 200


def test_log_out_everywhere_revokes_every_login_token(api):
    """Expected: one call ends every session. Happened: only the token in use could be revoked."""
    alice = new_account(api, "alice@example.com")
    other = api.post("/api/auth/token/", json={"email": alice.email, "password": "correct horse battery"})
    other_headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    bob = new_account(api, "bob@example.com")
    assert api.delete("/api/auth/tokens/", headers=alice.headers).status_code == 204
    assert api.get("/api/users/me/", headers=alice.headers).status_code == 401
    assert api.get("/api/users/me/", headers=other_headers).status_code == 401
    assert api.get("/api/users/me/", headers=bob.headers).status_code == 200


def test_expired_login_tokens_are_purged_by_a_scheduled_job(api, cloud_ctx, clock):
    """Expected: expired login tokens deleted periodically. Happened: they stayed in the table forever."""
    new_account(api, "alice@example.com")
    clock.advance(timedelta(seconds=cloud_ctx.settings.user_token_ttl_s - 60))
    fresh = new_account(api, "bob@example.com")
    clock.advance(timedelta(seconds=120))  # alice's token has expired, bob's has not

    job = next(j for j in core_jobs(cloud_ctx) if j.name == "purge_expired_tokens")
    assert run_once_per_period(cloud_ctx, job)
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuthToken)) == 1
    assert api.get("/api/users/me/", headers=fresh.headers).status_code == 200


def test_reserved_serials_cannot_be_registered(api):
    """Expected: the gateway's broker username is not a device serial. Happened: ``mailcam-gateway`` registered
    (and its broker login would then get the gateway's rights from the ACL)."""
    alice = new_account(api, "alice@example.com")
    grant_installer(api, alice)
    for serial in ("mailcam-gateway", "MAILCAM-GATEWAY", "mailcam_bridge", "admin"):
        response = api.post("/api/devices/", json={"serial": serial}, headers=alice.headers)
        assert response.status_code == 409, serial
        assert "reserved" in response.json()["detail"]
    assert api.post("/api/devices/", json={"serial": "box-mailcam"}, headers=alice.headers).status_code == 201
