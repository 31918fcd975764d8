"""Web Push end to end without the internet: the real pywebpush → a local push service that checks the
VAPID JWT and decrypts the payload with the browser's keys."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from cloud.models import AuthToken, Capture, User
from cloud.notify import outbox, webpush
from cloud.security import hash_token, new_token
from tests.notify.conftest import analysis_event, emit, notifications, store_capture
from tests.notify.push_service import PushService

pytestmark = pytest.mark.db
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Mobile Safari/537.36")


def headers_for(ctx, user_id: int, user_agent: str = ANDROID) -> dict[str, str]:
    token = new_token("mcu")
    now = ctx.clock.now()
    with ctx.sessions() as session:
        session.add(AuthToken(user_id=user_id, token_hash=hash_token(token), created_at=now,
                              expires_at=now + timedelta(days=1)))
        session.commit()
    return {"Authorization": f"Bearer {token}", "User-Agent": user_agent}


@pytest.fixture
def push(api):
    key = api.get("/api/notifications/webpush/key").json()["public_key"]
    with PushService(key) as service:
        yield service


def subscribe(api, headers, push: PushService, path: str) -> dict:
    response = api.post("/api/notifications/webpush/subscriptions/", headers=headers,
                        json=push.browser(path).subscription(push.url))
    assert response.status_code == 201, response.text
    return response.json()


def test_mail_alert_reaches_each_browser_encrypted_and_signed(api, nctx, owner, push):
    phone = headers_for(nctx, owner.user_id, IPHONE)
    made = subscribe(api, phone, push, "/push/phone")
    assert made["name"] == "Safari on iPhone"
    subscribe(api, headers_for(nctx, owner.user_id, ANDROID), push, "/push/pixel")
    with nctx.sessions() as session:
        session.get(User, owner.user_id).timezone = "Pacific/Auckland"
        session.commit()
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)

    assert push.errors == []
    [alert] = push.delivered["/push/phone"]
    assert alert["title"] == "Mail in Front gate"
    text, context = alert["body"].split("\n")
    assert text == "2 letters, 1 magazine — Two letters and a magazine"
    with nctx.sessions() as session:  # which mailbox, and when in the owner's zone (not the server's)
        taken = session.get(Capture, pk).taken_at.astimezone(ZoneInfo("Pacific/Auckland"))
    assert context == f"Front gate · {taken:%H:%M, %a %d %b}"
    assert alert["url"] == f"/#/mailbox/{owner.serial}/capture/cap-1"
    assert alert["actions"] == [{"action": "take-photo", "title": "Take a photo now"}]  # 3 free clicks left
    assert len(push.delivered["/push/pixel"]) == 1
    assert {r.delivery for r in notifications(nctx, channel="webpush")} == {"sent"}
    listed = api.get("/api/notifications/webpush/subscriptions/", headers=phone).json()
    assert all(s["last_sent_at"] is not None for s in listed)

    # The thumbnail comes through a signed link, never the bearer token; it expires.
    image = api.get(alert["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"
    assert "Bearer" not in str(alert) and "mcu_" not in str(alert)
    tampered = alert["image"].replace(f"/{pk}?", f"/{pk + 1}?")
    assert api.get(tampered).status_code == 404
    nctx.clock.advance(timedelta(seconds=nctx.settings.notify.alert_link_ttl_s + 1))
    assert api.get(alert["image"]).status_code == 404


def test_expired_subscription_is_removed(api, nctx, owner, push):
    headers = headers_for(nctx, owner.user_id)
    subscribe(api, headers, push, "/push/live")
    gone = subscribe(api, headers, push, "/push/gone")
    push.status_by_path["/push/gone"] = 410
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)

    listed = api.get("/api/notifications/webpush/subscriptions/", headers=headers).json()
    assert gone["id"] not in [s["id"] for s in listed] and len(listed) == 1
    statuses = sorted(r.delivery for r in notifications(nctx, channel="webpush"))
    assert statuses == ["failed", "sent"]


def test_an_expired_subscription_skips_the_alerts_still_waiting_for_it(api, nctx, owner, push):
    """The push service's 410 for one alert: the browser's next alert is not tried. It is done
    with the outcome skipped (the log's 'skipped'), not failed and not retried."""
    from cloud.jobs import JobState
    from cloud.models import Outcome

    nctx.settings.notify.batch_size = 1  # one send at a time: the second alert still waits
    subscribe(api, headers_for(nctx, owner.user_id), push, "/push/gone")
    push.status_by_path["/push/gone"] = 410
    for n in (1, 2):
        pk = store_capture(nctx, owner, f"cap-{n}", seed=n)
        emit(nctx, analysis_event(owner, pk, f"cap-{n}"))
    assert len(notifications(nctx, channel="webpush")) == 2
    outbox.deliver_due(nctx)
    rows = notifications(nctx, channel="webpush")
    assert [(r.status, r.outcome, r.delivery) for r in rows] == [
        (JobState.DEAD, Outcome.FAILED, "failed"), (JobState.DONE, Outcome.SKIPPED, "skipped")]
    assert "expired" in rows[1].last_error
    assert len(push.claims) == 1


def test_push_service_outage_is_retried(api, nctx, owner, push, clock):
    subscribe(api, headers_for(nctx, owner.user_id), push, "/push/phone")
    push.status_by_path["/push/phone"] = 503
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="webpush")
    assert row.delivery == "pending" and "503" in row.last_error
    del push.status_by_path["/push/phone"]
    clock.advance(timedelta(hours=1))
    outbox.deliver_due(nctx)
    assert [r.delivery for r in notifications(nctx, channel="webpush")] == ["sent"]
    assert len(push.delivered["/push/phone"]) == 1


def test_subscriptions_are_per_user_and_checked(api, nctx, owner, push):
    from tests.notify.conftest import make_owner

    alice = headers_for(nctx, owner.user_id)
    bob = headers_for(nctx, make_owner(nctx, "bob@example.com", serial="box-2").user_id)
    mine = subscribe(api, alice, push, "/push/a")
    assert api.get("/api/notifications/webpush/subscriptions/", headers=bob).json() == []
    assert api.delete(f"/api/notifications/webpush/subscriptions/{mine['id']}", headers=bob).status_code == 404

    bad = push.browser("/push/b").subscription(push.url)
    bad["keys"]["p256dh"] = bad["keys"]["p256dh"][:-4]
    assert api.post("/api/notifications/webpush/subscriptions/", headers=alice, json=bad).status_code == 422
    nctx.settings.notify.outbound_allow = []  # as in production: a browser's endpoint may not be on our network
    private = push.browser("/push/c").subscription(push.url)
    refused = api.post("/api/notifications/webpush/subscriptions/", headers=alice, json=private)
    assert refused.status_code == 422 and "not allowed" in refused.json()["detail"]
    assert api.delete(f"/api/notifications/webpush/subscriptions/{mine['id']}", headers=alice).status_code == 204
    assert api.get("/api/notifications/webpush/subscriptions/", headers=alice).json() == []


@pytest.mark.parametrize(("agent", "name"), [(IPHONE, "Safari on iPhone"), (ANDROID, "Chrome on Android"),
                                             ("curl/8.0", "This browser"), (None, "This browser")])
def test_browsers_are_named_by_user_agent(agent, name):
    assert webpush.device_name(agent) == name


def test_take_a_photo_is_offered_only_while_clicks_are_left(api, nctx, owner, push):
    nctx.settings.free_clicks_per_day = 0  # none left today
    subscribe(api, headers_for(nctx, owner.user_id), push, "/push/phone")
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    [alert] = push.delivered["/push/phone"]
    assert alert["title"] == "Mail in Front gate" and "actions" not in alert
