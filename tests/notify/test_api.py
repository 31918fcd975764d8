"""The HTTP API: preferences, push tokens, webhooks, the delivery log, integration API keys."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from cloud.models import ApiKey, User
from cloud.services import accounts
from tests.cloudkit import capture_body, new_account, new_device
from tests.notify.conftest import Owner, analysis_event, emit, fast_account


def test_preferences_default_then_update(api):
    alice = new_account(api, "alice@example.com", timezone="Europe/Paris")
    got = api.get("/api/notifications/preferences", headers=alice.headers).json()
    assert got["events"]["mail_arrived"] == ["console", "push", "webpush", "apprise", "webhook"]
    assert got["events"]["mailbox_empty"] == []
    assert got["email"] == "alice@example.com" and got["timezone"] == "Europe/Paris"
    assert got["available_channels"] == ["console", "webpush", "apprise", "webhook"]

    put = api.put("/api/notifications/preferences", headers=alice.headers, json={
        "events": {"mailbox_empty": ["console", "email"], "mail_arrived": ["sms", "sms"]},
        "phone": "+33612345678", "quiet_hours": {"start": "22:30", "end": "07:00"}, "min_confidence": 0.8,
    })
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["events"]["mailbox_empty"] == ["console", "email"]
    assert body["events"]["mail_arrived"] == ["sms"]
    # untouched kinds keep defaults
    assert body["events"]["package_arrived"] == ["console", "push", "webpush", "apprise", "webhook"]
    assert body["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    assert (body["phone"], body["min_confidence"]) == ("+33612345678", 0.8)
    again = api.put("/api/notifications/preferences", headers=alice.headers, json={"digest_hour": 7}).json()
    assert again["phone"] == "+33612345678" and again["digest_hour"] == 7


def test_bad_preferences_are_clear_422s(api, cloud_ctx):
    alice = fast_account(cloud_ctx, "alice@example.com")
    for body in ({"phone": "0612345678"}, {"phone": "+1 999"}, {"events": {"nope": ["push"]}},
                 {"events": {"mail_arrived": ["pigeon"]}}, {"quiet_hours": {"start": "25:00", "end": "07:00"}},
                 {"min_confidence": 2}, {"surprise": 1}):
        response = api.put("/api/notifications/preferences", headers=alice.headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "invalid_request"
    assert api.get("/api/notifications/preferences", headers=alice.headers).json()["phone"] is None


def test_push_tokens_register_list_delete(api, cloud_ctx):
    alice, bob = fast_account(cloud_ctx, "alice@example.com"), fast_account(cloud_ctx, "bob@example.com")
    made = api.post("/api/notifications/push-tokens/", headers=alice.headers,
                    json={"token": "fcm-token-abcdef", "platform": "android"})
    assert made.status_code == 201
    same = api.post("/api/notifications/push-tokens/", headers=alice.headers, json={"token": "fcm-token-abcdef"})
    assert same.json()["id"] == made.json()["id"]
    listed = api.get("/api/notifications/push-tokens/", headers=alice.headers).json()
    assert listed == [{"id": made.json()["id"], "platform": "android", "created_at": made.json()["created_at"]}]
    token_id = made.json()["id"]
    assert api.delete(f"/api/notifications/push-tokens/{token_id}", headers=bob.headers).status_code == 404
    assert api.delete(f"/api/notifications/push-tokens/{token_id}", headers=alice.headers).status_code == 204
    assert api.get("/api/notifications/push-tokens/", headers=alice.headers).json() == []


def test_webhooks_crud_and_secret_shown_once(api, cloud_ctx):
    alice, bob = fast_account(cloud_ctx, "alice@example.com"), fast_account(cloud_ctx, "bob@example.com")
    made = api.post("/api/notifications/webhooks/", headers=alice.headers,
                    json={"url": "http://homeassistant.local:8123/api/webhook/mailcam", "description": "HA"})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["active"]
    listed = api.get("/api/notifications/webhooks/", headers=alice.headers).json()
    assert "secret" not in listed[0] and listed[0]["id"] == hook["id"]
    assert api.get("/api/notifications/webhooks/", headers=bob.headers).json() == []
    assert api.patch(f"/api/notifications/webhooks/{hook['id']}", headers=bob.headers,
                     json={"active": False}).status_code == 404
    patched = api.patch(f"/api/notifications/webhooks/{hook['id']}", headers=alice.headers, json={"active": False})
    assert patched.json()["active"] is False
    rotated = api.post(f"/api/notifications/webhooks/{hook['id']}/rotate-secret", headers=alice.headers).json()
    assert rotated["secret"] != hook["secret"]
    bad = api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": "ftp://example.com/x"})
    assert bad.status_code == 422
    assert api.delete(f"/api/notifications/webhooks/{hook['id']}", headers=alice.headers).status_code == 204
    assert api.get("/api/notifications/webhooks/", headers=alice.headers).json() == []


def test_private_webhook_targets_are_refused_by_default(api, cloud_ctx):
    alice = fast_account(cloud_ctx, "alice@example.com")
    for url in ("http://127.0.0.1:8123/hook", "http://192.168.1.10/hook", "http://localhost/hook"):
        response = api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url})
        assert response.status_code == 422, url
    assert api.post("/api/notifications/webhooks/", headers=alice.headers,
                    json={"url": "https://hooks.example.com/x"}).status_code == 201


def _owner(api, cloud_ctx, email: str, serial: str):
    account = fast_account(cloud_ctx, email)
    device = new_device(api, account, serial)
    with cloud_ctx.sessions() as session:
        user = session.scalar(select(User).where(User.email == email))
        from cloud.models import Device

        device_id = session.scalar(select(Device.id).where(Device.serial == serial))
    return account, device, Owner(user.id, device_id, serial)


def test_delivery_log_lists_my_notifications_newest_first(api, cloud_ctx):
    alice, box, owner = _owner(api, cloud_ctx, "alice@example.com", "box-1")
    bob = fast_account(cloud_ctx, "bob@example.com")
    saved = api.post("/api/device/capture/", json=capture_body("box-1", capture_id="box-1-a"), headers=box.headers)
    assert saved.status_code == 200
    with cloud_ctx.sessions() as session:
        from cloud.models import Capture

        pk = session.scalar(select(Capture.id).where(Capture.capture_id == "box-1-a"))
    emit(cloud_ctx, analysis_event(owner, pk, "box-1-a"))
    emit(cloud_ctx, analysis_event(owner, pk, "box-1-a", key="again"))

    log = api.get("/api/notifications/", headers=alice.headers).json()
    [item] = log["items"]
    assert (item["kind"], item["channel"], item["status"]) == ("mail_arrived", "console", "pending")
    assert (item["capture_id"], item["device_serial"]) == ("box-1-a", "box-1")
    assert api.get("/api/notifications/", headers=bob.headers).json()["items"] == []
    from cloud.notify import outbox

    outbox.deliver_due(cloud_ctx)
    sent = api.get("/api/notifications/", params={"status": "sent"}, headers=alice.headers).json()["items"]
    assert [i["id"] for i in sent] == [item["id"]]
    assert api.get("/api/notifications/", params={"status": "bogus"}, headers=alice.headers).status_code == 422


def _key(api, account, scope: str = "read") -> str:
    made = api.post("/api/keys/", headers=account.headers, json={"name": "home assistant", "scope": scope})
    assert made.status_code == 201, made.text
    return made.json()["key"]


def test_api_key_scopes(api, cloud_ctx):
    alice, _box, _owner_ = _owner(api, cloud_ctx, "alice@example.com", "box-1")
    read = {"Authorization": f"Bearer {_key(api, alice, 'read')}"}
    trigger = {"Authorization": f"Bearer {_key(api, alice, 'trigger')}"}

    assert api.get("/api/devices/", headers=read).status_code == 200
    assert api.get("/api/device/status/", params={"device_serial": "box-1"}, headers=read).status_code == 200
    assert api.get("/api/notifications/", headers=read).status_code == 200
    denied = api.post("/api/device/trigger/", headers=read, json={"device_serial": "box-1"})
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    assert api.post("/api/device/trigger/", headers=trigger, json={"device_serial": "box-1"}).status_code in (200, 202)
    # Other writes stay closed to keys, whatever their scope.
    assert api.patch("/api/devices/box-1/", headers=trigger, json={"name": "x"}).status_code == 403
    # Account endpoints refuse keys even for reading.
    for path in ("/api/users/me/", "/api/keys/"):
        assert api.get(path, headers=read).status_code == 403
    assert api.post("/api/keys/", headers=trigger, json={"name": "escalate", "scope": "trigger"}).status_code == 403
    assert api.put("/api/notifications/preferences", headers=trigger, json={"digest_hour": 3}).status_code == 403


def test_api_keys_are_hashed_listed_without_the_key_and_revocable(api, cloud_ctx):
    alice = fast_account(cloud_ctx, "alice@example.com")
    key = _key(api, alice)
    assert key.startswith("mck_")
    with cloud_ctx.sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
    assert key not in (stored.key_hash, stored.prefix) and key.startswith(stored.prefix)
    listed = api.get("/api/keys/", headers=alice.headers).json()
    assert "key" not in listed[0] and listed[0]["scope"] == "read"
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/devices/", headers=headers).status_code == 200
    assert api.get("/api/keys/", headers=alice.headers).json()[0]["last_used_at"] is not None
    assert api.delete(f"/api/keys/{stored.id}", headers=alice.headers).status_code == 204
    assert api.get("/api/devices/", headers=headers).status_code == 401
    assert api.get("/api/devices/", headers={"Authorization": "Bearer mck_not-a-key"}).status_code == 401
    bob = fast_account(cloud_ctx, "bob@example.com")
    assert api.delete(f"/api/keys/{stored.id}", headers=bob.headers).status_code == 404


def test_api_keys_are_rate_limited_per_key_by_tier(api, cloud_ctx, clock):
    cloud_ctx.settings.notify.api_rate_free_per_min = 3
    cloud_ctx.settings.notify.api_rate_premium_per_min = 5
    clock.set(clock.now().replace(second=10))
    alice = fast_account(cloud_ctx, "alice@example.com")
    first, second = _key(api, alice), _key(api, alice)
    h1, h2 = ({"Authorization": f"Bearer {k}"} for k in (first, second))
    assert [api.get("/api/devices/", headers=h1).status_code for _ in range(3)] == [200] * 3
    limited = api.get("/api/devices/", headers=h1)
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert limited.headers["Retry-After"] == "50"
    assert api.get("/api/devices/", headers=h2).status_code == 200  # per key
    assert api.get("/api/devices/", headers=alice.headers).status_code == 200  # user logins are not limited
    clock.advance(timedelta(seconds=50))
    assert api.get("/api/devices/", headers=h1).status_code == 200

    with cloud_ctx.sessions() as session:
        user = session.scalar(select(User).where(User.email == "alice@example.com"))
        from cloud.models import Tier

        accounts.set_tier(session, user, Tier.PREMIUM, clock.now())
        session.commit()
    codes = [api.get("/api/devices/", headers=h1).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # 1 already used this minute, 5 allowed


def test_trigger_fulfilled_and_expired_with_refund_are_notified(api, cloud_ctx, clock):
    from cloud.scheduler import core_jobs, run_once_per_period

    alice, box, _owner_ = _owner(api, cloud_ctx, "alice@example.com", "box-1")
    first = api.post("/api/device/trigger/", headers=alice.headers, json={"device_serial": "box-1"}).json()
    body = capture_body("box-1", capture_id="box-1-m", trigger_type="manual", trigger_id=first["trigger_id"])
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
    api.post("/api/device/trigger/", headers=alice.headers, json={"device_serial": "box-1"})
    clock.advance(timedelta(seconds=cloud_ctx.settings.trigger_ttl_s + 1))
    expire = next(job for job in core_jobs(cloud_ctx) if job.name == "expire_triggers")
    assert run_once_per_period(cloud_ctx, expire)

    log = api.get("/api/notifications/", params={"status": "pending"}, headers=alice.headers).json()["items"]
    by_kind = {i["kind"]: i for i in log}
    assert by_kind["trigger_fulfilled"]["capture_id"] == "box-1-m"
    assert by_kind["trigger_expired"]["body"].endswith("Your click was refunded.")


# The delivery log's words for each queue state (cloud.jobs.JobState) and outcome of a row.
LOG_WORDS = [("pending", None, "pending"), ("pending", "held", "held"), ("running", None, "sending"),
             ("done", "sent", "sent"), ("done", "skipped", "skipped"), ("dead", "failed", "failed"),
             ("dead", "unknown", "unknown")]


def add_log_rows(ctx, user_id: int) -> None:
    """One outbox row of ``user_id`` in every state the delivery log tells apart."""
    from cloud.models import Notification

    now = ctx.clock.now()
    with ctx.sessions() as session:
        for n, (state, outcome, word) in enumerate(LOG_WORDS):
            session.add(Notification(
                user_id=user_id, kind="mail_arrived", event_key=f"mail_arrived:log-{n}", channel="console",
                recipient="console", title=f"Mail ({word})", body="Two letters", data={}, status=state,
                outcome=outcome, attempts=0, next_attempt_at=now, created_at=now,
                locked_by="a-worker" if state == "running" else None, locked_at=now if state == "running" else None))
        session.commit()


def test_delivery_log_keeps_its_words_for_every_state(api, cloud_ctx):
    """The log's status words (and its filter) stayed the same when the outbox took the job
    toolkit's queue states: held, sending, sent, skipped, failed and unknown still read as before."""
    alice = fast_account(cloud_ctx, "alice@example.com")
    with cloud_ctx.sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == "alice@example.com"))
    add_log_rows(cloud_ctx, user_id)

    log = api.get("/api/notifications/", headers=alice.headers).json()["items"]
    assert [(i["title"], i["status"]) for i in reversed(log)] == [(f"Mail ({w})", w) for _s, _o, w in LOG_WORDS]
    for _state, _outcome, word in LOG_WORDS:
        found = api.get("/api/notifications/", params={"status": word}, headers=alice.headers)
        assert found.status_code == 200, found.text
        assert [i["title"] for i in found.json()["items"]] == [f"Mail ({word})"]


def test_the_logs_status_field_names_every_delivery_word():
    """The API's ``status`` words are exactly the words the outbox's rows can be in."""
    from typing import get_args

    from cloud.models import DELIVERY_WORDS
    from cloud.notify.schemas import Status

    assert sorted(get_args(Status)) == sorted(DELIVERY_WORDS.values()) == sorted(w for _s, _o, w in LOG_WORDS)
