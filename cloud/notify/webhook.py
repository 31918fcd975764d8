"""Webhook channel: a signed JSON POST (Home Assistant and the like).

Each request carries::

    Content-Type: application/json
    X-Mailcam-Event: mail_arrived
    X-Mailcam-Delivery: 42                 (the notification id; the same on every retry)
    X-Mailcam-Timestamp: 1763767200        (Unix seconds when sent)
    X-Mailcam-Signature: sha256=<hex>      HMAC-SHA256(secret, f"{timestamp}.{body}")

A receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares
in constant time, and rejects timestamps more than five minutes old (replays).

The URL is the user's: requests go through ``cloud.netguard`` (no private targets unless
allow-listed, connections pinned to the checked address), and the delivery log records a
reason in words, never the transport's own error text (it would read like a port scan).
A send ends within ``deadline_s`` whatever the receiver does, and only the status line and
headers of the answer are read: its body is never downloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime

import httpx

from cloud import netguard
from cloud.notify.base import OutgoingMessage, PermanentFailure, RecipientGone, SendResult, TemporaryFailure

SIGNATURE_HEADER = "X-Mailcam-Signature"
TIMESTAMP_HEADER = "X-Mailcam-Timestamp"
TOLERANCE_S = 300


def new_salt() -> str:
    return secrets.token_hex(16)


def webhook_secret(server_secret: str, salt: str) -> str:
    """The signing secret of a webhook: derived, so the database never holds it."""
    digest = hmac.new(server_secret.encode(), f"mailcam-webhook:{salt}".encode(), hashlib.sha256).hexdigest()
    return f"whsec_{digest}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(message: OutgoingMessage) -> bytes:
    return json.dumps(
        {
            "id": message.notification_id,
            "event": message.kind,
            "event_key": message.event_key,
            "created_at": message.created_at.isoformat(),
            "title": message.title,
            "body": message.body,
            "data": message.data,
        },
        separators=(",", ":"),
        default=str,
    ).encode()


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        policy: netguard.Policy | None = None,
        timeout_s: float = 10.0,
        deadline_s: float = 15.0,
    ) -> None:
        self._now = now
        self._deadline_s = deadline_s
        self._client, self._transport = netguard.guarded_client(policy or netguard.Policy(), timeout_s=timeout_s)

    def send(self, message: OutgoingMessage) -> SendResult:
        body = payload(message)
        timestamp = str(int(self._now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mailcam-webhook/1",
            "X-Mailcam-Event": message.kind,
            "X-Mailcam-Delivery": str(message.notification_id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(message.extras["secret"], timestamp, body),
        }
        try:
            with self._transport.deadline(self._deadline_s), \
                    self._client.stream("POST", message.address, content=body, headers=headers) as response:
                status = response.status_code  # leaving the block closes the answer unread
        except netguard.TargetRefused as exc:
            raise PermanentFailure(f"the webhook's host is not allowed: {exc.reason}") from exc
        except netguard.NameNotResolved as exc:
            raise TemporaryFailure("the webhook's host name could not be resolved") from exc
        except httpx.TimeoutException as exc:
            raise TemporaryFailure("the webhook did not answer in time") from exc
        except httpx.ConnectError as exc:
            raise TemporaryFailure("could not connect to the webhook") from exc
        except httpx.NetworkError as exc:
            raise TemporaryFailure("the connection to the webhook was lost") from exc
        except httpx.HTTPError as exc:
            raise TemporaryFailure("the webhook's answer was not valid HTTP") from exc
        if 200 <= status < 300:
            return SendResult(provider_id=f"http-{status}")
        if status == 410:
            raise RecipientGone("the webhook answered 410 Gone; it is switched off")
        if status in (408, 425, 429) or status >= 500:
            raise TemporaryFailure(f"webhook answered {status}")
        raise PermanentFailure(f"webhook answered {status}")

    def close(self) -> None:
        self._client.close()
