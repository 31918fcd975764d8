"""Email addresses and phone numbers get nothing until confirmed with a code sent there (real SMTP, Twilio SDK)."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from urllib.parse import parse_qs

from cloud.notify import outbox
from tests.brokers import free_port
from tests.notify.conftest import analysis_event, emit, notifications, store_capture
from tests.notify.fakes import FakeHttp
from tests.notify.test_api import _owner
from tests.notify.test_channels import Inbox, _smtp_server, _twilio, _use_smtp, _use_twilio


def _code_in(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)


def _mail_text(envelope) -> str:
    return email.message_from_bytes(envelope.content, policy=policy.default).get_body(("plain",)).get_content()


def test_an_email_address_gets_nothing_until_its_code_is_typed_back(api, nctx, tmp_path):
    """Expected: a typed-in address is mailed only after its owner proves it is theirs.
    Happened: any address put in the preferences got every alert at once (mail bombing a stranger)."""
    inbox = Inbox()
    port = free_port()
    server = _smtp_server(tmp_path, port, inbox)
    server.start()
    try:
        _use_smtp(nctx, tmp_path, port)
        alice, _box, owner = _owner(api, nctx, "alice@example.com", "box-1")
        prefs = api.put("/api/notifications/preferences", headers=alice.headers,
                        json={"events": {"mail_arrived": ["email"]}, "email": "me@example.org"}).json()
        assert prefs["email_confirmed"] is False

        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        assert notifications(nctx, channel="email") == []
        assert outbox.deliver_due(nctx) == 0 and inbox.envelopes == []

        sent = api.post("/api/notifications/recipients/email/code", headers=alice.headers)
        assert sent.status_code == 202, sent.text
        assert sent.json()["address"] == "me@example.org"
        [envelope] = inbox.envelopes
        assert envelope.rcpt_tos == ["me@example.org"]
        code = _code_in(_mail_text(envelope))
        # The code is not in the owner's delivery log: reading it there would prove nothing.
        log = api.get("/api/notifications/", headers=alice.headers).json()["items"]
        assert all(code not in item["body"] for item in log)

        wrong = "000000" if code != "000000" else "111111"
        refused = api.post("/api/notifications/recipients/email/confirm", json={"code": wrong}, headers=alice.headers)
        assert refused.status_code == 422 and refused.json()["attempts_left"] == 4
        confirmed = api.post("/api/notifications/recipients/email/confirm", json={"code": code},
                             headers=alice.headers)
        assert confirmed.status_code == 200 and confirmed.json()["address"] == "me@example.org"
        assert api.get("/api/notifications/preferences", headers=alice.headers).json()["email_confirmed"] is True

        pk = store_capture(nctx, owner, "cap-2", seed=2)
        emit(nctx, analysis_event(owner, pk, "cap-2"))
        assert outbox.deliver_due(nctx) == 1
    finally:
        server.stop()
    assert [e.rcpt_tos for e in inbox.envelopes] == [["me@example.org"], ["me@example.org"]]


def test_an_sms_code_expires_allows_few_attempts_and_is_not_resent_at_once(api, nctx, clock):
    """Expected: a code that expires, a few tries per code, no rapid resends (each SMS costs money).
    Happened: numbers were texted unconfirmed."""
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        alice, _box, owner = _owner(api, nctx, "alice@example.com", "box-1")
        api.put("/api/notifications/preferences", headers=alice.headers,
                json={"events": {"mail_arrived": ["sms"]}, "phone": "+447911123456"})
        url = "/api/notifications/recipients/sms"

        def last_code() -> str:
            form = {k: v[0] for k, v in parse_qs(twilio.requests()[-1].body.decode()).items()}
            assert form["To"] == "+447911123456"
            return _code_in(form["Body"])

        assert api.post(f"{url}/code", headers=alice.headers).status_code == 202
        first = last_code()
        again = api.post(f"{url}/code", headers=alice.headers)
        assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
        assert len(twilio.requests()) == 1

        clock.advance(timedelta(seconds=nctx.settings.notify.confirm_code_ttl_s + 1))
        expired = api.post(f"{url}/confirm", json={"code": first}, headers=alice.headers)
        assert expired.status_code == 422 and "expired" in expired.json()["detail"]

        assert api.post(f"{url}/code", headers=alice.headers).status_code == 202
        second = last_code()
        wrong = "000000" if second != "000000" else "111111"
        for _ in range(nctx.settings.notify.confirm_max_attempts):
            assert api.post(f"{url}/confirm", json={"code": wrong}, headers=alice.headers).status_code == 422
        used_up = api.post(f"{url}/confirm", json={"code": second}, headers=alice.headers)
        assert used_up.status_code == 429

        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        assert notifications(nctx, channel="sms") == []

        clock.advance(timedelta(seconds=nctx.settings.notify.confirm_resend_interval_s))
        assert api.post(f"{url}/code", headers=alice.headers).status_code == 202
        assert api.post(f"{url}/confirm", json={"code": last_code()}, headers=alice.headers).status_code == 200
        pk = store_capture(nctx, owner, "cap-2", seed=2)
        emit(nctx, analysis_event(owner, pk, "cap-2"))
        assert outbox.deliver_due(nctx) == 1
        assert parse_qs(twilio.requests()[-1].body.decode())["Body"][0].startswith("Mail in box-1")


def test_asking_for_a_code_without_an_address_or_channel_is_a_409(api, nctx):
    alice, _box, _owner_ = _owner(api, nctx, "alice@example.com", "box-1")
    no_phone = api.post("/api/notifications/recipients/sms/code", headers=alice.headers)
    assert no_phone.status_code == 409
    no_smtp = api.post("/api/notifications/recipients/email/code", headers=alice.headers)
    assert no_smtp.status_code == 409 and "not configured" in no_smtp.json()["detail"]
