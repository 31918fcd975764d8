"""Who may see or change a device: the one rule, used by every ownership dependency (``cloud.api.deps``)
and by the device list.

    OWNER   the account that claimed it: everything (tokens, the installer's access, triggers, deletion)
    MANAGE  the installer who registered it, until it is claimed: what installing needs (photos,
            calibration, settings, a test trigger, renaming, deleting test photos)
    READ    that installer after the claim, only while the owner allows it (``Device.installer_access``):
            the device, its photos and settings, nothing it could change
    NONE    anyone else: the device does not exist for them (404, never a hint that it does)

A device's photos follow the device: those sent before the claim are the owner's once it is claimed.
"""

from __future__ import annotations

import enum

from sqlalchemy import ColumnElement, and_, or_

from cloud.errors import Forbidden, NotFound
from cloud.models import Device, User


class Access(enum.IntEnum):
    NONE = 0
    READ = 1
    MANAGE = 2
    OWNER = 3


def access_of(device: Device | None, user: User) -> Access:
    if device is None:
        return Access.NONE
    if device.owner_id is not None:
        if device.owner_id == user.id:
            return Access.OWNER
        if device.installer_id == user.id and device.installer_access:
            return Access.READ
        return Access.NONE
    return Access.MANAGE if device.installer_id == user.id else Access.NONE


def require(device: Device | None, user: User, need: Access, what: str = "device", **context: object) -> Device:
    """The device if ``user`` has at least ``need``; 404 (no such ``what``) if they cannot see it, 403
    if they only may look."""
    level = access_of(device, user)
    if level == Access.NONE:
        raise NotFound(f"no such {what}", **context)
    if level < need:
        raise Forbidden(_refusal(level, need), **context)
    assert device is not None
    return device


def _refusal(level: Access, need: Access) -> str:
    if level == Access.READ:
        return "the owner lets you see this device, not change it"
    return "only the owner may do this (the installer's access ends with the claim)"


def visible_to(user: User) -> ColumnElement[bool]:
    """SQL: the devices ``user`` may at least see (the same rule as ``access_of``)."""
    return or_(
        Device.owner_id == user.id,
        and_(Device.installer_id == user.id, or_(Device.owner_id.is_(None), Device.installer_access.is_(True))),
    )


def managed_by(user_id: int | ColumnElement[int]) -> ColumnElement[bool]:
    """SQL: the devices ``user_id`` manages (their own; their installs not claimed yet). A gateway acts for these.
    ``user_id`` may be a bind parameter, for a statement built once."""
    return or_(Device.owner_id == user_id, and_(Device.owner_id.is_(None), Device.installer_id == user_id))


def label(level: Access) -> str:
    """How the dashboard and API name the caller's access."""
    return {Access.OWNER: "owner", Access.MANAGE: "installer", Access.READ: "read_only"}.get(level, "none")
