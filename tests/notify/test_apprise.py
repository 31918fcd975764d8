"""The "Other apps" channel: the real Apprise against local ntfy and JSON receivers."""

from __future__ import annotations

import base64
import logging
from datetime import timedelta

import pytest

from cloud.models import AppriseTarget
from cloud.notify import outbox
from tests.notify.conftest import analysis_event, emit, notifications, store_capture
from tests.notify.fakes import FakeHttp, Reply
from tests.notify.test_webpush import headers_for

pytestmark = pytest.mark.db
NTFY_PASSWORD = "ntfy-pass-7f3a9c"
JSON_PASSWORD = "json-pass-c41e07"


@pytest.fixture
def ntfy():
    with FakeHttp(lambda seen: Reply(200, {"id": "abc", "event": "message"})) as server:
        yield server


@pytest.fixture
def receiver():
    with FakeHttp(lambda seen: Reply(200, {})) as server:
        yield server


def add(api, headers, url: str) -> dict:
    response = api.post("/api/notifications/apprise/targets/", headers=headers, json={"url": url})
    assert response.status_code == 201, response.text
    return response.json()


def test_alerts_reach_ntfy_and_a_json_endpoint_and_the_urls_stay_secret(api, nctx, owner, ntfy, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    nctx.settings.notify.public_url = "https://mailcam.example"
    headers = headers_for(nctx, owner.user_id)
    ntfy_url = f"ntfy://alice:{NTFY_PASSWORD}@127.0.0.1:{ntfy.server.server_address[1]}/mailbox"
    json_url = f"json://bob:{JSON_PASSWORD}@127.0.0.1:{receiver.server.server_address[1]}/hook"
    made = [add(api, headers, ntfy_url), add(api, headers, json_url)]
    listed = api.get("/api/notifications/apprise/targets/", headers=headers)
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)

    assert {r.delivery for r in notifications(nctx, channel="apprise")} == {"sent"}
    [to_ntfy] = ntfy.requests()
    assert to_ntfy.headers["authorization"] == "Basic " + base64.b64encode(f"alice:{NTFY_PASSWORD}".encode()).decode()
    sent = to_ntfy.json()
    assert sent["topic"] == "mailbox" and sent["title"] == "Mail in Front gate"
    assert sent["message"].startswith("2 letters, 1 magazine — Two letters and a magazine\nFront gate · ")
    assert "Photo: https://mailcam.example/api/alert-links/thumbnails/" in sent["message"]
    [to_json] = receiver.requests("/hook")
    assert to_json.json()["title"] == "Mail in Front gate"

    everything_shown = str(made) + listed.text + caplog.text + str([n.last_error for n in notifications(nctx)])
    for secret in (NTFY_PASSWORD, JSON_PASSWORD):
        assert secret not in everything_shown
    assert [t["label"] for t in listed.json()][0].startswith("ntfy://…@127.0.0.1")
    with nctx.sessions() as session:
        stored = " ".join(t.url_encrypted + t.url_sha256 + t.label for t in session.query(AppriseTarget))
    assert NTFY_PASSWORD not in stored and JSON_PASSWORD not in stored  # encrypted at rest


def test_a_failing_target_is_retried_like_the_other_channels(api, nctx, owner, clock):
    answers = iter([503, 200])
    with FakeHttp(lambda seen: Reply(next(answers), {})) as flaky:
        add(api, headers_for(nctx, owner.user_id), f"json://127.0.0.1:{flaky.server.server_address[1]}/hook")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        outbox.deliver_due(nctx)
        [row] = notifications(nctx, channel="apprise")
        assert row.delivery == "pending" and "did not accept" in row.last_error
        clock.advance(timedelta(hours=1))
        outbox.deliver_due(nctx)
        assert [r.delivery for r in notifications(nctx, channel="apprise")] == ["sent"]
        assert len(flaky.requests("/hook")) == 2


def test_test_button_sends_now(api, nctx, owner, receiver):
    headers = headers_for(nctx, owner.user_id)
    target = add(api, headers, f"json://127.0.0.1:{receiver.server.server_address[1]}/hook")
    result = api.post(f"/api/notifications/apprise/targets/{target['id']}/test", headers=headers)
    assert result.status_code == 200 and result.json()["sent"] is True
    assert receiver.requests("/hook")[0].json()["title"] == "mailcam test"
    answers = [api.post(f"/api/notifications/apprise/targets/{target['id']}/test", headers=headers).status_code
               for _ in range(10)]
    assert answers == [200] * 9 + [429]  # ten an hour: the button cannot hammer an endpoint


def test_bad_private_duplicate_and_foreign_targets_are_refused(api, nctx, owner, receiver):
    from tests.notify.conftest import make_owner

    alice = headers_for(nctx, owner.user_id)
    bob = headers_for(nctx, make_owner(nctx, "bob@example.com", serial="box-2").user_id)
    url = f"json://127.0.0.1:{receiver.server.server_address[1]}/hook"
    mine = add(api, alice, url)
    assert api.post("/api/notifications/apprise/targets/", headers=alice, json={"url": url}).status_code == 409
    bad = api.post("/api/notifications/apprise/targets/", headers=alice, json={"url": "nosuchservice://x/y"})
    assert bad.status_code == 422 and "Apprise does not understand" in bad.json()["detail"]
    assert api.delete(f"/api/notifications/apprise/targets/{mine['id']}", headers=bob).status_code == 404
    assert api.post(f"/api/notifications/apprise/targets/{mine['id']}/test", headers=bob).status_code == 404

    nctx.settings.notify.outbound_allow = []  # as in production: the server's own networks are off limits
    for private in ("json://127.0.0.1:8080/x", "ntfy://10.0.0.5/topic", "gotify://169.254.169.254/token123"):
        refused = api.post("/api/notifications/apprise/targets/", headers=alice, json={"url": private})
        assert refused.status_code == 422 and "not allowed" in refused.json()["detail"], private
    # Saved while allowed, then the allow-list changed: the send-time check refuses it too.
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="apprise")
    assert row.delivery == "failed" and "not allowed" in row.last_error
    assert receiver.requests("/hook") == []
