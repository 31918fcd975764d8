"""SMS channel: Twilio's REST API through the official client; numbers in E.164."""

from __future__ import annotations

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from cloud.errors import ValidationFailed
from cloud.notify.base import OutgoingMessage, PermanentFailure, SendResult, TemporaryFailure, short
from cloud.notify.config import NotifySettings
from cloud.notify.preferences import e164

TWILIO_API = "https://api.twilio.com"
MAX_BODY = 320  # two SMS segments


class RebasedTwilioHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, sending to another base URL (a regional proxy, or a local fake)."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args, **kwargs):  # noqa: ANN201
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


class SmsChannel:
    name = "sms"

    def __init__(self, settings: NotifySettings) -> None:
        if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number):
            raise ValueError("the SMS channel needs twilio_account_sid, twilio_auth_token and twilio_from_number")
        self.from_number = e164(settings.twilio_from_number)
        http_client = (
            RebasedTwilioHttpClient(settings.twilio_base_url, timeout=settings.twilio_timeout_s)
            if settings.twilio_base_url
            else TwilioHttpClient(timeout=settings.twilio_timeout_s)
        )
        self.client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http_client)

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            to = e164(message.address)
        except ValidationFailed as exc:
            raise PermanentFailure(f"not an E.164 number: {exc.detail}") from exc
        text = f"{message.title}: {message.body}"
        if len(text) > MAX_BODY:
            text = text[: MAX_BODY - 1] + "…"
        try:
            sent = self.client.messages.create(to=to, from_=self.from_number, body=text)
        except TwilioRestException as exc:
            failure = TemporaryFailure if exc.status == 429 or exc.status >= 500 else PermanentFailure
            raise failure(f"Twilio {exc.status} (code {exc.code}): {short(exc.msg, 200)}") from exc
        except (requests.RequestException, TwilioException) as exc:
            raise TemporaryFailure(f"Twilio unreachable: {type(exc).__name__}: {short(exc, 200)}") from exc
        return SendResult(provider_id=sent.sid)

    def close(self) -> None:
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            session.close()
