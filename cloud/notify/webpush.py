"""Web Push channel: alerts on the owner's phones and laptops through the browser, no app needed.

The dashboard is a PWA; "Notify me on this device" subscribes the browser with our VAPID
public key and stores the subscription (``WebPushSubscription``: the push service's endpoint
and the browser's keys). A send encrypts the payload to the browser (RFC 8291, aes128gcm)
and signs a VAPID JWT (RFC 8292), both by ``pywebpush``; the service worker
(``cloud/web/static/sw.js``) shows the notification.

The VAPID key pair is the deployment's (``cloud.notify.vapid``: the settings', else one stored
in the database, so every replica signs with the key the browsers subscribed with).

The endpoint is a URL the browser gave us, so it goes through ``cloud.netguard`` like a
webhook: pywebpush posts through our guarded httpx client (its ``requests_session`` hook).
404/410 from the push service means the subscription has expired: ``RecipientGone``
(the worker deletes it).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import httpx
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from cloud import netguard
from cloud.context import AppContext
from cloud.models import Notification, WebPushSubscription
from cloud.notify import rich
from cloud.notify.base import OutgoingMessage, PermanentFailure, RecipientGone, SendResult, TemporaryFailure
from cloud.notify.config import NotifySettings

CHANNEL = "webpush"
PREFIX = "webpush:"
TAKE_PHOTO_ACTION = "take-photo"


# --- naming a browser -----------------------------------------------------------------------

_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("SamsungBrowser/", "Samsung Internet"), ("Firefox/", "Firefox"),
             ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"),
            ("Macintosh", "Mac"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def device_name(user_agent: str | None) -> str:
    """'Chrome on Android' from a user agent; 'This browser' when it says nothing we know."""
    ua = user_agent or ""
    browser = next((name for token, name in _BROWSERS if token in ua), None)
    system = next((name for token, name in _SYSTEMS if token in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "This browser"


def is_ios_safari(user_agent: str) -> bool:
    return bool(re.search(r"iPhone|iPad|iPod", user_agent)) and "CriOS" not in user_agent and "FxiOS" not in user_agent


# --- the outbox's view of subscriptions -----------------------------------------------------


def recipients(session: Session, user_id: int) -> list[str]:
    return [f"{PREFIX}{i}" for i in session.scalars(_SUBSCRIPTIONS, {"user_id": user_id})]


# Built once: an alert reads its owner's subscriptions.
_SUBSCRIPTIONS = (
    select(WebPushSubscription.id)
    .where(WebPushSubscription.user_id == bindparam("user_id"))
    .order_by(WebPushSubscription.id)
)


def resolve(session: Session, ctx: AppContext, row: Notification) -> tuple[str, dict[str, str]] | None:
    """The endpoint, the browser's keys and the alert's extras (a signed thumbnail link, whether a
    photo can be asked for), or None when the subscription is gone (or not the owner's)."""
    sub = session.get(WebPushSubscription, int(row.recipient.removeprefix(PREFIX)))
    if sub is None or sub.user_id != row.user_id:
        return None
    return sub.endpoint, {"p256dh": sub.p256dh, "auth": sub.auth, **rich.alert_extras(session, ctx, row)}


def mark_sent(session: Session, recipient: str, now: datetime) -> None:
    """The browser got an alert: the devices list shows when it last did."""
    session.execute(update(WebPushSubscription)
                    .where(WebPushSubscription.id == int(recipient.removeprefix(PREFIX)))
                    .values(last_sent_at=now))


def forget(session: Session, recipient: str) -> None:
    """The push service says the subscription has expired: delete it (the outbox skips what waits for it)."""
    session.execute(delete(WebPushSubscription).where(WebPushSubscription.id == int(recipient.removeprefix(PREFIX))))


# --- sending --------------------------------------------------------------------------------


def payload(message: OutgoingMessage) -> dict[str, Any]:
    """What the service worker gets: enough to show the notification and open the capture."""
    data = message.data
    serial, capture = data.get("device_serial"), data.get("capture_id")
    url = "/#/notifications"
    if serial and capture:
        url = f"/#/mailbox/{serial}/capture/{capture}"
    elif serial:
        url = f"/#/mailbox/{serial}"
    body: dict[str, Any] = {"title": message.title, "body": rich.with_context(message), "kind": message.kind,
                            "tag": message.event_key, "url": url}
    if message.extras.get("image"):
        body["image"] = message.extras["image"]
    if message.extras.get("take_photo") and serial:
        body["actions"] = [{"action": TAKE_PHOTO_ACTION, "title": "Take a photo now"}]
        body["take_photo_url"] = f"/#/mailbox/{serial}/take-photo"
    return body


class _Answer:
    """The little of a response pywebpush reads (status, reason, text, headers)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.reason = response.reason_phrase
        self.headers = dict(response.headers)
        self.text = ""  # the push service's body is never downloaded


class _GuardedSession:
    """pywebpush's ``requests_session``: its POST goes through the netguard-pinned httpx client."""

    def __init__(self, policy: netguard.Policy, timeout_s: float) -> None:
        self.client, self.transport = netguard.guarded_client(policy, timeout_s=timeout_s)
        self.deadline_s = timeout_s * 1.5

    def post(self, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float | None = None) -> _Answer:
        with self.transport.deadline(self.deadline_s), \
                self.client.stream("POST", url, content=data or b"", headers=dict(headers or {})) as response:
            return _Answer(response)


class WebPushChannel:
    name = CHANNEL

    def __init__(self, settings: NotifySettings, vapid: Vapid02, *, policy: netguard.Policy | None = None) -> None:
        self.vapid = vapid
        self.subject = settings.vapid_subject
        self.ttl_s = settings.webpush_ttl_s
        self.session = _GuardedSession(policy or netguard.Policy(), settings.webpush_timeout_s)

    def send(self, message: OutgoingMessage) -> SendResult:
        subscription = {"endpoint": message.address,
                        "keys": {"p256dh": message.extras["p256dh"], "auth": message.extras["auth"]}}
        try:
            response = webpush(
                subscription, json.dumps(payload(message)), vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject}, ttl=self.ttl_s, headers={"Urgency": "high"},
                requests_session=self.session,  # type: ignore[arg-type]
            )
        except WebPushException as exc:
            raise _failure(exc.response.status_code if exc.response is not None else None) from exc
        except netguard.TargetRefused as exc:
            raise PermanentFailure(f"the push service's host is not allowed: {exc.reason}") from exc
        except netguard.NameNotResolved as exc:
            raise TemporaryFailure("the push service's host name could not be resolved") from exc
        except httpx.TimeoutException as exc:
            raise TemporaryFailure("the push service did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise TemporaryFailure("could not reach the push service") from exc
        except (ValueError, TypeError) as exc:  # keys the browser sent that are not valid P-256 / base64
            raise PermanentFailure("the browser's subscription keys are not valid") from exc
        return SendResult(provider_id=f"http-{response.status_code}")

    def close(self) -> None:
        self.session.client.close()


def _failure(status: int | None) -> Exception:
    if status in (404, 410):
        return RecipientGone(f"the push service answered {status}: the subscription has expired")
    if status is None or status in (408, 425, 429) or status >= 500:
        return TemporaryFailure(f"the push service answered {status}")
    return PermanentFailure(f"the push service answered {status}")
