"""Device registration, claiming, ownership and presence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cloud.errors import Conflict, NotFound
from cloud.models import Device, User
from cloud.security import hash_token, new_claim_code, new_token, normalise_claim_code
from cloud.services import access
from cloud.settings import Settings


def register_device(
    session: Session,
    *,
    serial: str,
    installer: User,
    now: datetime,
    name: str | None,
    timezone: str,
    wake_interval_s: int,
    reserved_serials: Sequence[str] = (),
) -> tuple[Device, str, str]:
    """Create a device; returns it with its one-time device token and claim code (shown once)."""
    if is_reserved_serial(serial, reserved_serials):
        # 409 like a taken serial: the name is taken, by one of our own broker logins.
        raise Conflict("this serial is reserved (a broker login of mailcam's own)", serial=serial)
    # Unique per cloud, whatever the case: "MB-1" and "mb-1" would be two broker logins for one label.
    if session.scalar(select(Device.id).where(func.lower(Device.serial) == serial.lower())) is not None:
        raise Conflict("a device with this serial is already registered", serial=serial)
    token, claim_code = new_token("mcd"), new_claim_code()
    device = Device(
        serial=serial,
        name=name or serial,
        installer_id=installer.id,
        timezone=timezone,
        token_hash=hash_token(token),
        claim_code_hash=hash_token(normalise_claim_code(claim_code)),
        wake_interval_s=wake_interval_s,
        created_at=now,
    )
    try:
        with session.begin_nested():  # two installers racing for one serial: the loser gets 409, not 500
            session.add(device)
            session.flush()
    except IntegrityError as exc:
        raise Conflict("a device with this serial is already registered", serial=serial) from exc
    return device, token, claim_code


def is_reserved_serial(serial: str, reserved: Sequence[str]) -> bool:
    """A serial is a broker username too: one naming the gateway's login (or any ``mailcam…`` name)
    would get the gateway's broker rights from a careless ``mosquitto-user``."""
    folded = serial.casefold()
    return folded.startswith("mailcam") or folded in {name.casefold() for name in reserved}


def claim_device(
    session: Session, *, code: str, user: User, now: datetime, name: str | None
) -> tuple[Device, str]:
    """Give the device to ``user``; returns it with its new device token (shown once).

    Claiming rotates the token: the installer saw the old one and must not keep the power to
    post as the homeowner's mailbox. Where the new token goes: a device behind a gateway (the
    normal case) never uses its own token (the gateway posts with its ``mcg_`` token), so
    nothing needs to reach the mailbox; a device posting over HTTP by itself is given the new
    token by its owner, who alone sees it, in the claim response (or from a later rotation).
    """
    device = session.scalar(
        select(Device).where(Device.claim_code_hash == hash_token(normalise_claim_code(code))).with_for_update()
    )
    if device is None:
        raise NotFound("no device has this claim code (it may already have been used)")
    device.owner_id = user.id
    device.claim_code_hash = None  # one-time
    device.claimed_at = now
    if name:
        device.name = name
    token = rotate_device_token(session, device)
    return device, token


def rotate_device_token(session: Session, device: Device) -> str:
    """A new device token; the old one stops working at commit."""
    token = new_token("mcd")
    device.token_hash = hash_token(token)
    session.flush()
    return token


def revoke_device_token(session: Session, device: Device) -> None:
    """No token works for this device any more (its gateway still may act for it)."""
    device.token_hash = hash_token(new_token("revoked"))  # never shown: nobody holds it
    session.flush()


def by_serial(session: Session, serial: str) -> Device | None:
    return session.scalar(select(Device).where(Device.serial == serial))


def visible_to(session: Session, user: User) -> list[Device]:
    """The devices ``user`` may see (``cloud.services.access``), by serial."""
    return list(session.scalars(select(Device).where(access.visible_to(user)).order_by(Device.serial)))


def managed_by(session: Session, user_id: int) -> list[Device]:
    """The devices ``user_id`` manages (their own, their installs not claimed yet): what their gateways serve."""
    return list(session.scalars(select(Device).where(access.managed_by(user_id)).order_by(Device.serial)))


def owned_by(session: Session, owner_id: int) -> list[Device]:
    """The devices ``owner_id`` has claimed, by serial (what their Home Assistant shows)."""
    return list(session.scalars(select(Device).where(Device.owner_id == owner_id).order_by(Device.serial)))


def serials(session: Session, device_ids: list[int]) -> dict[int, str]:
    """Serial by device id."""
    return dict(session.execute(select(Device.id, Device.serial).where(Device.id.in_(device_ids))).all())


def device_for_token(session: Session, token: str) -> Device | None:
    return session.scalar(_BY_TOKEN, {"token_hash": hash_token(token)})


# Built once: building and keying the clauses cost more than running them (a call per device request).
_BY_TOKEN = select(Device).where(Device.token_hash == bindparam("token_hash"))








def is_online(device: Device, now: datetime, settings: Settings) -> bool:
    """Heard from within its expected wake interval (with grace for a slow Wi-Fi join)."""
    if device.last_seen_at is None:
        return False
    allowed = timedelta(seconds=device.wake_interval_s * settings.online_grace_factor + settings.online_slack_s)
    return now - device.last_seen_at <= allowed


def mark_seen(session: Session, device: Device, now: datetime, battery_voltage: float | None = None) -> None:
    """The device was heard from at ``now``: its last-seen time moves forward only, its battery reading
    is kept when it sent one.

    One guarded UPDATE, decided by the database against the row as committed (another upload of
    the same device may have moved it on since ``device`` was loaded), rather than the ORM's unit
    of work: on ingest the flush of that one changed row cost more than all its other statements
    (bench/cloud_ingest.py --py-spy). ``device`` is brought in line without being marked changed."""
    # Through the session, not its connection: a write to devices is what wakes the gateways' state
    # feeds (cloud.services.trigger_watch hooks the session's statements) when a capture arrives.
    session.execute(_MARK_SEEN, {"device_id": device.id, "now": now, "voltage": battery_voltage})
    if device.last_seen_at is None or device.last_seen_at < now:
        set_committed_value(device, "last_seen_at", now)
    if battery_voltage is not None:
        set_committed_value(device, "last_battery_voltage", battery_voltage)


def mark_reported(
    session: Session,
    device: Device,
    now: datetime,
    *,
    battery_voltage: float | None,
    rssi: int | None,
    wake_reason: str | None,
    firmware_version: str | None,
) -> None:
    """The device's telemetry: ``mark_seen``, and its latest signal, wake reason and firmware version, each
    kept when the report has none (an empty wake reason or version counts as none). One UPDATE, as
    ``mark_seen`` (a gateway sends a report per wake); ``device`` is brought in line, not marked changed."""
    latest = {"rssi": rssi, "wake_reason": wake_reason or None, "firmware_version": firmware_version or None}
    # Through the session, as mark_seen: this write to devices wakes the gateways' state feeds.
    session.execute(_MARK_REPORTED, {"device_id": device.id, "now": now, "voltage": battery_voltage, **latest})
    if device.last_seen_at is None or device.last_seen_at < now:
        set_committed_value(device, "last_seen_at", now)
    if battery_voltage is not None:
        set_committed_value(device, "last_battery_voltage", battery_voltage)
    for (attribute, _), value in zip(_LATEST, latest.values(), strict=True):
        if value is not None:
            set_committed_value(device, attribute, value)


_devices = Device.__table__.c
_SEEN = {
    "last_seen_at": case(
        (or_(_devices.last_seen_at.is_(None), _devices.last_seen_at < bindparam("now")),
         bindparam("now", type_=_devices.last_seen_at.type)),
        else_=_devices.last_seen_at,
    ),
    "last_battery_voltage": func.coalesce(
        bindparam("voltage", type_=_devices.last_battery_voltage.type), _devices.last_battery_voltage
    ),
}
_MARK_SEEN = update(Device.__table__).where(_devices.id == bindparam("device_id")).values(**_SEEN)
# (device attribute, bind parameter) of the report's latest values.
_LATEST = (("last_rssi", "rssi"), ("last_wake_reason", "wake_reason"), ("firmware_version", "firmware_version"))
_MARK_REPORTED = (
    update(Device.__table__)
    .where(_devices.id == bindparam("device_id"))
    .values(**_SEEN, **{
        attribute: func.coalesce(bindparam(param, type_=_devices[attribute].type), _devices[attribute])
        for attribute, param in _LATEST
    })
)
