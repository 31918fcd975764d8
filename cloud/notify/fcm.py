"""Push channel: Firebase Cloud Messaging through firebase-admin.

The app is initialised from a service-account JSON (``fcm_credentials_file``); its
``token_uri`` is where access tokens come from. The HTTP adapter on the messaging
session is ours: it does no retries of its own (the outbox retries with backoff) and can
send to another base URL (``fcm_base_url``: a proxy, or a local fake in tests).
A token FCM reports as unregistered raises ``RecipientGone``; the worker deletes it.
"""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit, urlunsplit

import firebase_admin
import requests
from firebase_admin import credentials, exceptions, messaging
from google.auth.exceptions import GoogleAuthError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cloud.notify.base import OutgoingMessage, PermanentFailure, RecipientGone, SendResult, TemporaryFailure, short
from cloud.notify.config import NotifySettings

FCM_ORIGIN = "https://fcm.googleapis.com"
_app_names = itertools.count(1)
TEMPORARY = (
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
    exceptions.UnknownError,
    exceptions.ResourceExhaustedError,
    exceptions.AbortedError,
    exceptions.UnauthenticatedError,
)


class _FcmAdapter(HTTPAdapter):
    """No hidden retries; optionally re-point requests for the FCM origin at ``base_url``."""

    def __init__(self, base_url: str | None) -> None:
        super().__init__(max_retries=Retry(total=0, connect=0, read=0, status=0, raise_on_status=False))
        self.base = urlsplit(base_url.rstrip("/")) if base_url else None

    def send(self, request: requests.PreparedRequest, *args, **kwargs) -> requests.Response:
        if self.base is not None and request.url:
            parts = urlsplit(request.url)
            request.url = urlunsplit(
                (self.base.scheme, self.base.netloc, self.base.path + parts.path, parts.query, parts.fragment)
            )
        return super().send(request, *args, **kwargs)


class LibraryChanged(RuntimeError):
    """firebase-admin no longer has the private parts ``messaging_session`` reads."""


def messaging_session(app: firebase_admin.App) -> requests.Session:
    """The requests session firebase-admin's messaging sends on: our one reach into its private parts.

    firebase-admin has no public hook for the transport (7.x: ``_get_messaging_service(app)
    ._client.session``). An upgrade that moves it raises ``LibraryChanged`` when the channel is
    built, rather than sending unnoticed with firebase-admin's own retrying adapter (or to Google
    from a test); tests/notify/test_channels.py checks the installed version.
    """
    try:
        session = messaging._get_messaging_service(app)._client.session
    except AttributeError as exc:
        raise LibraryChanged(f"firebase-admin {firebase_admin.__version__}: no messaging session ({exc})") from exc
    if not isinstance(session, requests.Session):
        raise LibraryChanged(f"firebase-admin {firebase_admin.__version__}: messaging session is a {type(session)}")
    return session


class FcmChannel:
    name = "push"

    def __init__(self, settings: NotifySettings) -> None:
        if not settings.fcm_credentials_file:
            raise ValueError("the push channel needs fcm_credentials_file")
        cred = credentials.Certificate(settings.fcm_credentials_file)
        self.app = firebase_admin.initialize_app(
            cred, options={"httpTimeout": settings.fcm_timeout_s}, name=f"mailcam-fcm-{next(_app_names)}"
        )
        messaging_session(self.app).mount(FCM_ORIGIN, _FcmAdapter(settings.fcm_base_url))

    def build(self, message: OutgoingMessage) -> messaging.Message:
        data = {"kind": message.kind, "notification_id": str(message.notification_id)}
        for key in ("capture_id", "device_serial", "trigger_id"):
            if message.data.get(key):
                data[key] = str(message.data[key])
        built = messaging.Message(
            notification=messaging.Notification(title=message.title, body=message.body),
            data=data,
            android=messaging.AndroidConfig(collapse_key=message.kind, priority="high"),
        )
        # Apps register FCM registration tokens. firebase-admin 7 warns on ``Message(token=…)`` in
        # favour of installation ids, yet still encodes ``token``; set it after construction so
        # no process-wide warning filter has to change (sends run in several threads).
        built.token = message.address
        return built

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            name = messaging.send(self.build(message), app=self.app)
        except (messaging.UnregisteredError, messaging.SenderIdMismatchError) as exc:
            raise RecipientGone(f"FCM: the token is no longer valid ({type(exc).__name__})") from exc
        except TEMPORARY as exc:
            raise TemporaryFailure(f"FCM {type(exc).__name__}: {short(exc, 200)}") from exc
        except exceptions.FirebaseError as exc:
            raise PermanentFailure(f"FCM {type(exc).__name__}: {short(exc, 200)}") from exc
        except (GoogleAuthError, requests.RequestException) as exc:
            raise TemporaryFailure(f"FCM unreachable: {type(exc).__name__}: {short(exc, 200)}") from exc
        return SendResult(provider_id=name)

    def close(self) -> None:
        firebase_admin.delete_app(self.app)
