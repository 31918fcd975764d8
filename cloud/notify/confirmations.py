"""Confirming an email address or phone number before it gets any notification.

Anyone can type any address into their preferences; without this, mailcam would mail or text
a stranger (and SMS costs money). So an address gets nothing until its owner proves it is
theirs: a 6-digit code is sent there and typed back.

    set address ──request──► code sent (HMAC stored, expires) ──confirm(code)──► confirmed
                                 │  wrong code: attempts += 1; at the limit the code is void
                                 └─ a new request replaces the code (not within the resend interval)

The code is sent at once through the channel itself, not through the outbox: the outbox is
the owner's readable delivery log, and a code the owner can read there proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.errors import Conflict, RateLimited, ServiceUnavailable, ValidationFailed
from cloud.models import RecipientConfirmation, User
from cloud.notify import kinds, preferences, send_limits
from cloud.notify.base import ChannelError, OutgoingMessage
from cloud.notify.registry import ChannelRegistry, available

CHANNELS = (kinds.EMAIL, kinds.SMS)


@dataclass(frozen=True)
class CodeSent:
    channel: str
    address: str
    expires_at: datetime


def address_for(session: Session, ctx: AppContext, user: User, channel: str) -> str:
    """The address notifications on ``channel`` would go to now; Conflict when there is none."""
    prefs = preferences.load(session, user, ctx.settings.notify)
    address = prefs.email_address if channel == kinds.EMAIL else prefs.phone
    if not address:
        raise Conflict(f"no {channel} address is set in the notification preferences", channel=channel)
    return address


def is_confirmed(session: Session, user_id: int, channel: str, address: str) -> bool:
    return session.scalar(
        select(RecipientConfirmation.id).where(
            RecipientConfirmation.user_id == user_id,
            RecipientConfirmation.channel == channel,
            RecipientConfirmation.address == address,
            RecipientConfirmation.confirmed_at.is_not(None),
        )
    ) is not None


def send_code(
    session: Session, ctx: AppContext, user: User, channel: str, *, registry: ChannelRegistry | None = None
) -> CodeSent:
    """Send a new code to the user's current ``channel`` address; commits before sending (no
    transaction, so no SQLite write lock, is held over the SMTP or Twilio call)."""
    s = ctx.settings.notify
    now = ctx.clock.now()
    if channel not in available(s):
        raise Conflict(f"this cloud cannot send {channel} (the channel is not configured)", channel=channel)
    address = address_for(session, ctx, user, channel)
    row = _row(session, user.id, channel, address)
    if row.confirmed_at is not None:
        raise Conflict(f"this {channel} address is already confirmed", channel=channel)
    if row.sent_at is not None and now < row.sent_at + timedelta(seconds=s.confirm_resend_interval_s):
        wait = int((row.sent_at + timedelta(seconds=s.confirm_resend_interval_s) - now).total_seconds()) + 1
        raise RateLimited("a code was sent moments ago; wait before asking again", retry_after=wait)
    until = send_limits.take_code(session, s, user_id=user.id, channel=channel, address=address, now=now)
    if until is not None:
        raise RateLimited("too many codes were sent; try again later",
                          retry_after=int((until - now).total_seconds()) + 1)
    code = f"{secrets.randbelow(1_000_000):06d}"
    row.code_hash = _code_hash(ctx, row, code)
    row.sent_at, row.expires_at, row.attempts = now, now + timedelta(seconds=s.confirm_code_ttl_s), 0
    session.commit()
    sent = CodeSent(channel, address, row.expires_at)
    try:
        _deliver(ctx, channel, address, code, registry)
    except ChannelError as exc:
        row.code_hash = row.sent_at = row.expires_at = None  # not sent: the next request may try at once
        session.commit()
        raise ServiceUnavailable(f"the code could not be sent by {channel}; try again later",
                                 channel=channel) from exc
    return sent


def confirm(session: Session, ctx: AppContext, user: User, channel: str, code: str) -> str:
    """Check a code typed back; returns the confirmed address."""
    s = ctx.settings.notify
    now = ctx.clock.now()
    address = address_for(session, ctx, user, channel)
    row = _row(session, user.id, channel, address)
    if row.confirmed_at is not None:
        return address
    if row.code_hash is None or row.expires_at is None:
        raise Conflict("no code was sent to this address; ask for one first", channel=channel)
    if row.attempts >= s.confirm_max_attempts:
        raise RateLimited("too many wrong codes; ask for a new one", channel=channel, retry_after=0)
    if now >= row.expires_at:
        raise ValidationFailed("the code has expired; ask for a new one", channel=channel)
    if not hmac.compare_digest(row.code_hash, _code_hash(ctx, row, code)):
        row.attempts += 1
        session.flush()
        raise ValidationFailed("wrong code", channel=channel, attempts_left=s.confirm_max_attempts - row.attempts)
    row.confirmed_at, row.code_hash = now, None
    session.flush()
    return address


def _row(session: Session, user_id: int, channel: str, address: str) -> RecipientConfirmation:
    row = session.scalar(
        select(RecipientConfirmation).where(
            RecipientConfirmation.user_id == user_id,
            RecipientConfirmation.channel == channel,
            RecipientConfirmation.address == address,
        )
    )
    if row is None:
        row = RecipientConfirmation(user_id=user_id, channel=channel, address=address, attempts=0)
        session.add(row)
        session.flush()
    return row


def _code_hash(ctx: AppContext, row: RecipientConfirmation, code: str) -> str:
    # Keyed: a million codes are quickly hashed, so a plain SHA-256 in a leaked table would give them away.
    message = f"{row.user_id}|{row.channel}|{row.address}|{code.strip()}".encode()
    return hmac.new(ctx.settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def _deliver(ctx: AppContext, channel: str, address: str, code: str, registry: ChannelRegistry | None) -> None:
    own = registry is None
    registry = registry or ChannelRegistry.for_context(ctx)
    try:
        sender = registry.get(channel)
        assert sender is not None  # checked with available() before the code was made
        minutes = ctx.settings.notify.confirm_code_ttl_s // 60
        sender.send(OutgoingMessage(
            notification_id=0,
            kind="recipient_confirmation",
            event_key=f"confirm:{channel}:{secrets.token_hex(8)}",
            title="mailcam",
            body=f"Your confirmation code is {code}. It expires in {minutes} minutes. "
                 "If you did not ask for it, ignore this message.",
            data={},
            created_at=ctx.clock.now(),
            address=address,
        ))
    finally:
        if own:
            registry.close()
