"""The "Other apps" channel: ntfy, Telegram, Pushover, Gotify, Discord, Matrix, Slack, … through Apprise.

One well-kept library instead of one module per service: the user gives Apprise URLs
(``ntfy://ntfy.sh/my-mailbox``, ``tgram://bot-token/chat-id``). Those URLs carry tokens and
passwords, so they are stored encrypted (Fernet, key derived from the server secret), told apart
by a keyed hash, shown only as a redacted label, and never logged: Apprise's own logger is kept
at WARNING, where it does not print URLs.

Address guard: Apprise sends through its own HTTP stack (requests), so ``cloud.netguard`` cannot
pin its connections. Before every send (and when a URL is saved) the URL's host, when it names a
network host, must resolve to allowed addresses only (public, or the operator's allow-list); a
host that does not resolve is a service's token (Telegram, Pushover send to their fixed public
APIs) and is left alone. What this does not cover: a name whose DNS answer changes between our
check and Apprise's own lookup, and redirects the target answers with.

Apprise reports only "sent or not": a failure is temporary (retried with backoff like the other
channels, then ``failed``); a URL Apprise cannot parse is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

import apprise
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cloud import netguard, sealed
from cloud.context import AppContext
from cloud.models import AppriseTarget, Notification
from cloud.notify.base import OutgoingMessage, PermanentFailure, SendResult, TemporaryFailure
from cloud.notify.config import NotifySettings
from cloud.notify.rich import alert_extras, with_context

CHANNEL = "apprise"
PREFIX = "apprise:"
logging.getLogger("apprise").setLevel(logging.WARNING)  # its DEBUG/INFO lines can carry URLs and payloads


class InvalidTarget(ValueError):
    """An Apprise URL we will not use; ``reason`` is fit to show the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- secrets at rest ------------------------------------------------------------------------


def encrypt(secret: str, url: str) -> str:
    return sealed.seal(secret, "apprise:url", url)


def decrypt(secret: str, token: str) -> str:
    """The URL; ValueError when it was encrypted under another server secret."""
    try:
        return sealed.unseal(secret, "apprise:url", token)
    except sealed.SealedUnderAnotherSecret as exc:
        raise ValueError("the Apprise URL was stored under another server secret") from exc


def fingerprint(secret: str, url: str) -> str:
    """A keyed hash: the same URL is recognised without being readable from the database."""
    return hmac.new(sealed.purpose_key(secret, "apprise:fingerprint"), url.encode(), hashlib.sha256).hexdigest()


# --- parsing and the address guard ------------------------------------------------------------


def _plugin(url: str) -> apprise.NotifyBase:
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise InvalidTarget("Apprise does not understand this URL (see the Apprise wiki for the services' formats)")
    return plugin


def label(url: str) -> str:
    """The URL with its secrets masked by Apprise, without its options and user name: safe to show."""
    redacted = _plugin(url).url(privacy=True).split("?", 1)[0]
    return re.sub(r"^([a-z0-9+.-]+://)[^@/]*@", r"\1…@", redacted)[:200]


def check_target(url: str, policy: netguard.Policy) -> None:
    """Refuse a URL whose network host is in a private range (``InvalidTarget``); see the module doc."""
    plugin = _plugin(url)
    host = (getattr(plugin, "host", None) or "").strip("[]")
    if not host:
        return  # the service's own public address (e.g. ntfy.sh)
    port = getattr(plugin, "port", None) or (443 if getattr(plugin, "secure", False) else 80)
    try:
        policy.resolve(host, int(port))
    except netguard.NameNotResolved:
        return  # not a network host: a token of a cloud service
    except netguard.TargetRefused as exc:
        raise InvalidTarget(f"the URL's host is not allowed: {exc.reason}") from exc


# --- the outbox's view of targets -----------------------------------------------------------


def recipients(session: Session, user_id: int) -> list[str]:
    return [f"{PREFIX}{i}" for i in session.scalars(_TARGETS, {"user_id": user_id})]


# Built once: an alert reads its owner's targets.
_TARGETS = (
    select(AppriseTarget.id)
    .where(AppriseTarget.user_id == bindparam("user_id"), AppriseTarget.active.is_(True))
    .order_by(AppriseTarget.id)
)


def resolve(session: Session, ctx: AppContext, row: Notification) -> tuple[str, dict[str, str]] | None:
    target = session.get(AppriseTarget, int(row.recipient.removeprefix(PREFIX)))
    if target is None or not target.active or target.user_id != row.user_id:
        return None
    try:
        url = decrypt(ctx.settings.secret_key, target.url_encrypted)
    except ValueError:
        return None
    extras = alert_extras(session, ctx, row)
    base = ctx.settings.notify.public_url
    image = f"{base.rstrip('/')}{extras['image']}" if base and "image" in extras else ""
    return url, {"image": image, "label": target.label, "device": extras.get("device", ""),
                 "when": extras.get("when", "")}


# --- sending --------------------------------------------------------------------------------


def text_of(message: OutgoingMessage) -> str:
    lines = [with_context(message)]
    if message.extras.get("image"):
        lines.append(f"Photo: {message.extras['image']}")
    return "\n".join(line for line in lines if line)


class AppriseChannel:
    name = CHANNEL

    def __init__(self, settings: NotifySettings, *, policy: netguard.Policy | None = None) -> None:
        self.policy = policy or netguard.Policy()
        self.timeout_s = settings.apprise_timeout_s

    def send(self, message: OutgoingMessage) -> SendResult:
        where = message.extras.get("label") or "the service"
        try:
            check_target(message.address, self.policy)
        except InvalidTarget as exc:
            raise PermanentFailure(f"{where}: {exc.reason}") from exc
        plugin = _plugin(message.address)
        plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout_s
        plugin.request_rate_per_sec = 0  # no throttling sleep inside a sender thread
        if not plugin.notify(body=text_of(message), title=message.title):
            raise TemporaryFailure(f"{where} did not accept the alert")
        return SendResult(provider_id=plugin.service_name[:200] if plugin.service_name else None)

    def close(self) -> None:
        return None
