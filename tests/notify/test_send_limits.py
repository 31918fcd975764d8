"""Send limits: email/SMS alerts per user and per recipient, confirmation codes per user and per address."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.notify import outbox
from tests.notify.conftest import analysis_event, emit, make_owner, notifications, set_prefs, store_capture
from tests.notify.fakes import FakeHttp
from tests.notify.test_api import _owner
from tests.notify.test_channels import _twilio, _use_twilio

pytestmark = pytest.mark.db
PHONE = "+447911123456"


def test_sms_alerts_over_the_hourly_allowance_wait_for_the_next_hour(nctx, owner, clock):
    """Expected: a burst of alerts cannot run up an SMS bill; what is over the allowance is sent
    later, not lost. Happened: every alert was texted at once, without limit."""
    nctx.settings.notify.sms_per_user_per_hour = 2
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        set_prefs(nctx, owner, events={"mail_arrived": ["sms"]}, phone=PHONE)
        for n in range(3):
            pk = store_capture(nctx, owner, f"cap-{n}", seed=n)
            emit(nctx, analysis_event(owner, pk, f"cap-{n}"))
        assert outbox.deliver_due(nctx) == 2
        waiting = [r for r in notifications(nctx, channel="sms") if r.delivery == "pending"]
        assert len(waiting) == 1 and "hourly sms limit" in waiting[0].last_error
        assert waiting[0].attempts == 0  # waiting is not a failed attempt
        assert len(twilio.requests()) == 2
        clock.advance(timedelta(hours=1))
        assert outbox.deliver_due(nctx) == 1
        assert len(twilio.requests()) == 3


def test_one_recipient_is_limited_whoever_sends(nctx, clock):
    """Expected: many accounts naming one phone cannot flood it. Happened: no per-recipient limit."""
    nctx.settings.notify.sends_per_recipient_per_hour = 2
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        for n in range(3):
            owner = make_owner(nctx, f"user{n}@example.com", serial=f"box-{n}")
            set_prefs(nctx, owner, events={"mail_arrived": ["sms"]}, phone=PHONE)
            pk = store_capture(nctx, owner, f"cap-{n}", seed=n)
            emit(nctx, analysis_event(owner, pk, f"cap-{n}"))
        assert outbox.deliver_due(nctx) == 2
        assert sorted(r.delivery for r in notifications(nctx, channel="sms")) == ["pending", "sent", "sent"]


def test_confirmation_codes_are_limited_per_user_and_per_address(api, nctx, clock):
    """Expected: a user cannot text codes to one stranger after another, nor many accounts to one
    number. Happened: only a 60 s pause per address held them back."""
    s = nctx.settings.notify
    s.confirm_codes_per_user_per_hour, s.confirm_codes_per_address_per_day = 2, 3
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        alice, _box, _ = _owner(api, nctx, "alice@example.com", "box-1")
        codes = []
        for number in ("+447911000001", "+447911000002", "+447911000003"):
            api.put("/api/notifications/preferences", headers=alice.headers, json={"phone": number})
            codes.append(api.post("/api/notifications/recipients/sms/code", headers=alice.headers))
        assert [c.status_code for c in codes] == [202, 202, 429]
        assert int(codes[2].headers["Retry-After"]) > 0 and len(twilio.requests()) == 2

        victim = "+447911999999"
        answers = []
        for n in range(4):
            account, _box, _ = _owner(api, nctx, f"user{n}@example.com", f"box-x{n}")
            api.put("/api/notifications/preferences", headers=account.headers, json={"phone": victim})
            answers.append(api.post("/api/notifications/recipients/sms/code", headers=account.headers).status_code)
        assert answers == [202, 202, 202, 429]
