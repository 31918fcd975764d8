"""Each channel through its real client: SMTP (aiosmtpd), Twilio's SDK, firebase-admin, against local fakes."""

from __future__ import annotations

import base64
import email
import json
import ssl
from datetime import timedelta
from email import policy
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from google.auth import jwt as google_jwt

from cloud.models import PushToken
from cloud.notify import outbox
from tests.brokers import free_port
from tests.notify.conftest import (
    analysis_event,
    confirm_address,
    emit,
    notifications,
    set_prefs,
    store_capture,
)
from tests.notify.fakes import FakeHttp, Reply
from tests.notify.tls import private_pem, public_pem, rsa_key, self_signed_localhost

# --- email --------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def _smtp_server(tmp_path, port: int, inbox: Inbox) -> Controller:
    cert, key = self_signed_localhost(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"mailcam", b"s3cret"))

    return Controller(inbox, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                      authenticator=authenticate, auth_required=True)


def _use_smtp(ctx, tmp_path, port: int) -> None:
    s = ctx.settings.notify
    s.smtp_host, s.smtp_port, s.smtp_starttls = "127.0.0.1", port, True
    s.smtp_ca_file = str(tmp_path / "smtp.crt")
    s.smtp_username, s.smtp_password = "mailcam", "s3cret"


def test_email_over_starttls_with_login_carries_the_thumbnail(nctx, owner, tmp_path):
    inbox = Inbox()
    port = free_port()
    server = _smtp_server(tmp_path, port, inbox)
    server.start()
    try:
        _use_smtp(nctx, tmp_path, port)
        set_prefs(nctx, owner, events={"mail_arrived": ["email"]}, email="me@example.org")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        assert outbox.deliver_due(nctx) == 1
    finally:
        server.stop()
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["me@example.org"]
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    assert message["Subject"] == "Mail in Front gate"
    text = message.get_body(("plain",)).get_content()
    assert "2 letters, 1 magazine" in text and "Front gate · " in text  # which mailbox, and when
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "image/jpeg"
    with nctx.sessions() as session:
        from cloud.models import Capture

        sha = session.get(Capture, pk).image_sha256
    assert attachment.get_content() == nctx.images.read(sha, thumbnail=True)


def test_email_outage_is_retried_until_the_server_is_back(nctx, owner, tmp_path, clock):
    inbox = Inbox()
    port = free_port()
    _use_smtp(nctx, tmp_path, port)
    server = _smtp_server(tmp_path, port, inbox)  # writes the certificate; not started yet
    set_prefs(nctx, owner, events={"mail_arrived": ["email"]})
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    assert outbox.deliver_due(nctx) == 0
    [row] = notifications(nctx, channel="email")
    assert row.delivery == "pending" and "SMTP unavailable" in row.last_error
    server.start()
    try:
        clock.advance(timedelta(minutes=1))
        assert outbox.deliver_due(nctx) == 1
    finally:
        server.stop()
    assert [e.rcpt_tos for e in inbox.envelopes] == [["owner@example.com"]]


# --- SMS (Twilio) -----------------------------------------------------------------------

SID, AUTH = "AC" + "0" * 32, "twilio-auth-token"


def _twilio(seen) -> Reply:
    expected_auth = "Basic " + base64.b64encode(f"{SID}:{AUTH}".encode()).decode()
    if seen.headers.get("authorization") != expected_auth:
        return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
    if seen.method != "POST" or seen.path != f"/2010-04-01/Accounts/{SID}/Messages.json":
        return Reply(404, {"code": 20404, "message": "not found", "status": 404})
    form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
    if form.get("To") == "+14155550000":
        return Reply(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    return Reply(201, {"sid": "SM" + "1" * 32, "status": "queued", "to": form["To"], "from": form["From"],
                       "body": form["Body"], "account_sid": SID})


def _use_twilio(ctx, url: str) -> None:
    s = ctx.settings.notify
    s.twilio_account_sid, s.twilio_auth_token, s.twilio_from_number = SID, AUTH, "+14155552671"
    s.twilio_base_url = url


def test_sms_goes_through_the_twilio_client(nctx, owner):
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        set_prefs(nctx, owner, events={"package_arrived": ["sms"]}, phone="+447911123456")
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1", package_present=True, description="A brown box"))
        assert outbox.deliver_due(nctx) == 1
        [hit] = twilio.requests()
    form = {k: v[0] for k, v in parse_qs(hit.body.decode()).items()}
    assert form == {"To": "+447911123456", "From": "+14155552671", "Body": "Package in Front gate: A brown box"}
    [row] = notifications(nctx, channel="sms")
    assert (row.delivery, row.provider_id) == ("sent", "SM" + "1" * 32)


def test_sms_refused_number_is_a_permanent_failure(nctx, owner, clock):
    with FakeHttp(_twilio) as twilio:
        _use_twilio(nctx, twilio.url)
        set_prefs(nctx, owner, events={"mail_arrived": ["sms"]}, phone="+14155552671")
        with nctx.sessions() as session:  # bypass the API's validation: a number Twilio refuses
            from cloud.models import NotificationPreference

            session.get(NotificationPreference, owner.user_id).phone = "+14155550000"
            confirm_address(session, nctx, owner.user_id, "sms", "+14155550000")
            session.commit()
        pk = store_capture(nctx, owner, "cap-1")
        emit(nctx, analysis_event(owner, pk, "cap-1"))
        outbox.deliver_due(nctx)
        clock.advance(timedelta(hours=1))
        outbox.deliver_due(nctx)
        assert len(twilio.requests()) == 1
    [row] = notifications(nctx, channel="sms")
    assert row.delivery == "failed" and "21211" in row.last_error


# The E.164 shape, as the OpenAPI document states it; whether a number exists is what its
# confirmation code proves (test_confirmations).
@pytest.mark.parametrize("number", ["4155552671", "+1 415 555", "+99912", "not a number", "+0447911123456",
                                    "+1415555267100000"])
def test_phone_numbers_must_be_e164(number):
    from cloud.errors import ValidationFailed
    from cloud.notify.preferences import e164

    with pytest.raises(ValidationFailed):
        e164(number)
    assert e164("+447911123456") == "+447911123456"


# --- push (firebase-admin) ---------------------------------------------------------------

PROJECT = "mailcam-test"


class FakeFcm:
    """Google's token endpoint and FCM v1 ``messages:send``, checking what firebase-admin sends."""

    def __init__(self) -> None:
        self.key = rsa_key()
        self.unregistered: set[str] = set()
        self.down = False
        self.messages: list[dict] = []
        self.http = FakeHttp(self.handle)

    def handle(self, seen) -> Reply:
        if seen.path == "/token":
            form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            claims = google_jwt.decode(form["assertion"], certs=public_pem(self.key), audience="https://oauth2.googleapis.com/token")
            assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
            return Reply(200, {"access_token": "ya29.fake", "expires_in": 3600, "token_type": "Bearer"})
        assert seen.path == f"/v1/projects/{PROJECT}/messages:send", seen.path
        assert seen.headers["authorization"] == "Bearer ya29.fake"
        if self.down:
            return Reply(503, {"error": {"code": 503, "message": "unavailable", "status": "UNAVAILABLE"}})
        message = seen.json()["message"]
        if message["token"] in self.unregistered:
            return Reply(404, {"error": {"code": 404, "message": "Requested entity was not found.",
                                         "status": "NOT_FOUND", "details": [
                                             {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                              "errorCode": "UNREGISTERED"}]}})
        self.messages.append(message)
        return Reply(200, {"name": f"projects/{PROJECT}/messages/{len(self.messages)}"})

    def credentials_file(self, tmp_path) -> str:
        path = tmp_path / "fcm-service-account.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
            "private_key": private_pem(self.key), "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{self.http.url}/token",
        }))
        return str(path)


@pytest.fixture
def fcm(nctx, tmp_path):
    fake = FakeFcm()
    with fake.http:
        nctx.settings.notify.fcm_credentials_file = fake.credentials_file(tmp_path)
        nctx.settings.notify.fcm_base_url = fake.http.url
        yield fake


def _add_tokens(ctx, owner, *tokens: str) -> None:
    import hashlib

    with ctx.sessions() as session:
        for token in tokens:
            session.add(PushToken(user_id=owner.user_id, token=token, platform="android",
                                  token_sha256=hashlib.sha256(token.encode()).hexdigest(), created_at=ctx.clock.now()))
        session.commit()


def test_push_reaches_every_app_and_unregistered_tokens_are_removed(nctx, owner, fcm, clock):
    _add_tokens(nctx, owner, "phone-token", "old-tablet-token")
    fcm.unregistered.add("old-tablet-token")
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    assert outbox.deliver_due(nctx) == 2  # console + the phone

    [message] = fcm.messages
    assert message["token"] == "phone-token"
    assert message["notification"] == {"title": "Mail in Front gate",
                                       "body": "2 letters, 1 magazine — Two letters and a magazine"}
    assert message["data"]["kind"] == "mail_arrived" and message["data"]["capture_id"] == "cap-1"
    assert message["android"]["collapse_key"] == "mail_arrived"
    with nctx.sessions() as session:
        assert [t.token for t in session.query(PushToken)] == ["phone-token"]
    statuses = {r.recipient: r.delivery for r in notifications(nctx, channel="push")}
    assert sorted(statuses.values()) == ["failed", "sent"]

    pk2 = store_capture(nctx, owner, "cap-2", seed=2)
    emit(nctx, analysis_event(owner, pk2, "cap-2"))
    clock.advance(timedelta(minutes=1))
    outbox.deliver_due(nctx)
    assert [m["token"] for m in fcm.messages] == ["phone-token", "phone-token"]


def test_push_outage_is_retried(nctx, owner, fcm, clock):
    _add_tokens(nctx, owner, "phone-token")
    fcm.down = True
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="push")
    assert row.delivery == "pending" and "Unavailable" in row.last_error
    fcm.down = False
    clock.advance(timedelta(minutes=1))
    outbox.deliver_due(nctx)
    assert [r.delivery for r in notifications(nctx, channel="push")] == ["sent"]
    assert len(fcm.messages) == 1


def test_the_installed_firebase_admin_still_has_the_transport_hook(nctx, fcm):
    """Fails loudly when a firebase-admin upgrade moves the private messaging session our adapter is
    mounted on (``cloud.notify.fcm.messaging_session``): pushes would bypass our transport."""
    from cloud.notify.fcm import FCM_ORIGIN, FcmChannel, _FcmAdapter, messaging_session

    channel = FcmChannel(nctx.settings.notify)
    try:
        adapter = messaging_session(channel.app).get_adapter(f"{FCM_ORIGIN}/v1/projects/{PROJECT}/messages:send")
        assert isinstance(adapter, _FcmAdapter)
    finally:
        channel.close()


def test_a_channel_that_cannot_start_is_retried_not_lost(nctx, owner, tmp_path, clock):
    """Regression guard: an unreadable FCM credentials file must not strand rows running (the log's 'sending')."""
    nctx.settings.notify.fcm_credentials_file = str(tmp_path / "missing.json")
    _add_tokens(nctx, owner, "phone-token")
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="push")
    assert row.delivery == "pending" and "cannot start" in row.last_error
