"""Fixtures for notification tests: a context with the notification sink, owners and devices."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cloud.context import AppContext
from cloud.models import Device, Subscription, Tier, User
from cloud.notify import outbox
from cloud.services import devices

_PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$not-a-usable-hash"


@pytest.fixture
def nctx(cloud_ctx: AppContext) -> AppContext:
    """The test's context with the notification sink installed (as create_app does).

    The local fakes of remote services listen on 127.0.0.1: allow-listed, as an operator
    would allow a LAN Home Assistant (tests of the refusal itself clear the list)."""
    cloud_ctx.settings.notify.outbound_allow = ["127.0.0.0/8"]
    outbox.install(cloud_ctx)
    return cloud_ctx


@dataclass
class Owner:
    user_id: int
    device_id: int
    serial: str


def make_owner(ctx: AppContext, email: str = "owner@example.com", serial: str = "box-1",
               timezone: str = "UTC", wake_interval_s: int = 600) -> Owner:
    now = ctx.clock.now()
    with ctx.sessions() as session:
        # Not accounts.create_user: argon2 costs ~0.5 s on a busy CI box and these owners never log in.
        user = User(email=email, password_hash=_PASSWORD_HASH, timezone=timezone, created_at=now)
        user.subscription = Subscription(tier=Tier.FREE, active=True, started_at=now)
        session.add(user)
        session.flush()
        device, _token, code = devices.register_device(
            session, serial=serial, installer=user, now=now, name="Front gate", timezone=timezone,
            wake_interval_s=wake_interval_s,
        )
        devices.claim_device(session, code=code, user=user, now=now, name=None)
        session.commit()
        return Owner(user.id, device.id, serial)


@pytest.fixture
def owner(nctx: AppContext) -> Owner:
    return make_owner(nctx)


def user_of(ctx: AppContext, owner: Owner) -> User:
    with ctx.sessions() as session:
        return session.get(User, owner.user_id)


def device_of(ctx: AppContext, owner: Owner) -> Device:
    with ctx.sessions() as session:
        return session.get(Device, owner.device_id)


def add_webhook(ctx: AppContext, owner: Owner, url: str) -> str:
    """A webhook of ``owner``; returns its signing secret."""
    from cloud.models import Webhook
    from cloud.notify.webhook import new_salt, webhook_secret

    salt = new_salt()
    with ctx.sessions() as session:
        session.add(Webhook(user_id=owner.user_id, url=url, secret_salt=salt, active=True,
                            created_at=ctx.clock.now()))
        session.commit()
    return webhook_secret(ctx.settings.secret_key, salt)


def set_prefs(ctx: AppContext, owner: Owner, *, confirmed: bool = True, **changes) -> None:
    """Save preferences; with ``confirmed`` the email address and phone number count as confirmed
    (tests of the confirmation itself pass ``confirmed=False`` and go through the code)."""
    from cloud.notify import preferences

    with ctx.sessions() as session:
        user = session.get(User, owner.user_id)
        row = preferences.save(session, user, changes, ctx.clock.now())
        if confirmed:
            confirm_address(session, ctx, user.id, "email", row.email or user.email)
            if row.phone:
                confirm_address(session, ctx, user.id, "sms", row.phone)
        session.commit()


def confirm_address(session, ctx: AppContext, user_id: int, channel: str, address: str) -> None:
    """Record an address as confirmed (test setup; the code round trip is tested in test_confirmations)."""
    from sqlalchemy import select

    from cloud.models import RecipientConfirmation

    known = select(RecipientConfirmation.id).filter_by(user_id=user_id, channel=channel, address=address)
    if session.scalar(known) is not None:
        return
    session.add(RecipientConfirmation(user_id=user_id, channel=channel, address=address, attempts=0,
                                      confirmed_at=ctx.clock.now()))
    session.flush()


def store_capture(ctx: AppContext, owner: Owner, capture_id: str, *, seed: int = 0,
                  battery_voltage: float | None = 3.9) -> int:
    """Ingest a real JPEG for ``owner``'s device; returns the capture's primary key."""
    from datetime import UTC, datetime

    from cloud.models import Capture, TriggerType
    from cloud.services import ingest
    from tests.cloudkit import b64, jpeg_bytes

    with ctx.sessions() as session:
        device = session.get(Device, owner.device_id)
        ingest.ingest_capture(session, ctx, device, ingest.CaptureIn(
            image_b64=b64(jpeg_bytes(seed=seed)), trigger_type=TriggerType.AUTOMATIC,
            battery_voltage=battery_voltage, taken_at=datetime.now(UTC), capture_id=capture_id))
        session.commit()
        return session.query(Capture).filter_by(capture_id=capture_id).one().id


def analysis_event(owner: Owner, capture_pk: int, capture_id: str, **data):
    from cloud.events import DomainEvent, Event

    values = {"mail_detected": True, "confidence": 0.9, "description": "Two letters and a magazine",
              "categories": {"letter": 2, "magazine": 1}, "items": [], "package_present": False,
              "package_damage": None, "package_damage_confidence": None, "image_quality": "ok",
              "device_serial": owner.serial, "capture_id": capture_id}
    values.update(data)
    # Mail alerts come from the delivery state: a frame with mail on a good photo arrives as the
    # "arrived" transition the vision pipeline emits; anything else as the analysis itself.
    delivered = values.get("mail_detected") and values.get("image_quality") == "ok"
    if delivered:
        values.setdefault("transition", "arrived")
    kind = DomainEvent.MAIL_DELIVERY if delivered else DomainEvent.ANALYSIS_COMPLETED
    return Event(kind, user_id=owner.user_id, device_id=owner.device_id,
                 capture_pk=capture_pk, key=f"analysis:{capture_id}", data=values)


def emit(ctx: AppContext, event) -> None:
    with ctx.sessions() as session:
        ctx.events.emit(session, event)
        session.commit()


def notifications(ctx: AppContext, **filters) -> list:
    from sqlalchemy import select

    from cloud.models import Notification

    with ctx.sessions() as session:
        query = select(Notification).filter_by(**filters).order_by(Notification.id)
        return list(session.scalars(query))


def fast_account(ctx: AppContext, email: str, timezone: str = "UTC"):
    """A user with a bearer token, written straight to the database (no argon2: ~1 s per hash on busy CI)."""
    from datetime import timedelta

    from cloud.models import AuthToken
    from cloud.security import hash_token, new_token
    from tests.cloudkit import Account

    now = ctx.clock.now()
    token = new_token("mcu")
    with ctx.sessions() as session:
        user = User(email=email, password_hash=_PASSWORD_HASH, timezone=timezone, created_at=now)
        user.subscription = Subscription(tier=Tier.FREE, active=True, started_at=now)
        session.add(user)
        session.flush()
        session.add(AuthToken(user_id=user.id, token_hash=hash_token(token), created_at=now,
                              expires_at=now + timedelta(days=30)))
        session.commit()
    return Account(email, token)
