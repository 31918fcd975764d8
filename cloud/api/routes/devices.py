"""Devices: registration by installers, claiming, listing, captures and triggers per device."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud.api import schemas
from cloud.api.deps import (
    AccountDevice,
    CtxDep,
    CurrentUser,
    InstallerUser,
    ManagedDevice,
    OwnedDevice,
    SessionDep,
    VisibleDevice,
)
from cloud.api.presenters import (
    capture_public,
    device_history_public,
    device_public,
    device_settings_public,
    reference_set,
    trigger_public,
)
from cloud.services import access, captures, device_history, device_settings, devices, retention, triggers
from cloud.services.access import Access
from cloud.vision import references

router = APIRouter(prefix="/api/devices", tags=["devices"])
_errors = {403: {"model": schemas.ErrorBody}, 404: {"model": schemas.ErrorBody}}
# Token management needs the owner's login, not an integration API key.
_owner_errors = {401: {"model": schemas.ErrorBody}, 403: {"model": schemas.ErrorBody}, **_errors}


@router.post(
    "/",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.DeviceRegistered,
    responses={403: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}},
)
def register_device(
    body: schemas.DeviceCreate, user: InstallerUser, session: SessionDep, ctx: CtxDep
) -> schemas.DeviceRegistered:
    """Register a new device (installers only); its token and claim code are shown only here."""
    device, token, claim_code = devices.register_device(
        session,
        serial=body.serial,
        installer=user,
        now=ctx.clock.now(),
        name=body.name,
        timezone=body.timezone,
        wake_interval_s=body.wake_interval_s or ctx.settings.default_wake_interval_s,
        reserved_serials=ctx.settings.reserved_serials,
    )
    return schemas.DeviceRegistered(serial=device.serial, device_token=token, claim_code=claim_code)


@router.post("/claim/", response_model=schemas.DeviceClaimed, responses=_errors)
def claim_device(
    body: schemas.DeviceClaim, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.DeviceClaimed:
    """Claim a device with the code its installer gave you; its token is replaced (the new one is shown once)."""
    device, token = devices.claim_device(
        session, code=body.claim_code, user=user, now=ctx.clock.now(), name=body.name
    )
    return schemas.DeviceClaimed(**device_public(device, ctx, user).model_dump(), device_token=token)


@router.post("/{serial}/token/", response_model=schemas.DeviceToken, responses=_owner_errors)
def rotate_device_token(device: AccountDevice, session: SessionDep) -> schemas.DeviceToken:
    """Give my device a new token; the old one stops working (shown once)."""
    token = devices.rotate_device_token(session, device)
    return schemas.DeviceToken(serial=device.serial, device_token=token)


@router.delete("/{serial}/token/", status_code=status.HTTP_204_NO_CONTENT, responses=_owner_errors)
def revoke_device_token(device: AccountDevice, session: SessionDep) -> None:
    """Revoke my device's token (its gateway may still post for it)."""
    devices.revoke_device_token(session, device)


@router.post(
    "/{serial}/reference",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ReferenceSet,
    responses={401: _errors[404], 404: _errors[404], 409: _errors[404], 422: _errors[404]},
)
def set_device_reference(
    device: ManagedDevice, body: schemas.ReferenceRequest, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.ReferenceSet:
    """Calibrate: a photo of this mailbox empty (the newest one, unless named) becomes its reference."""
    if body.capture_id is not None:
        capture = references.capture_of(session, device, body.capture_id)
    else:
        capture = references.newest_capture(session, device, body.taken_after)
    source = references.source_for(user.id, device)
    row = references.add_from_capture(session, ctx.images, device, capture, source, ctx.clock.now())
    return reference_set(session, row, capture, device)


@router.get("/{serial}/settings", response_model=schemas.DeviceSettings, responses=_errors)
def get_device_settings(device: VisibleDevice) -> schemas.DeviceSettings:
    """Remote settings of my device (owner, or its installer): desired vs what the device reports."""
    return device_settings_public(device)


@router.put("/{serial}/settings", response_model=schemas.DeviceSettings,
            responses={401: _errors[404], 404: _errors[404], 422: _errors[404]})
def put_device_settings(
    device: ManagedDevice, body: schemas.SettingsUpdate, session: SessionDep
) -> schemas.DeviceSettings:
    """Set my device's desired remote settings (checked with the device's rules); the gateway sends
    each new version to the device, which applies it from its next wake."""
    device_settings.set_desired(session, device, body.settings)
    return device_settings_public(device)


@router.get("/", response_model=list[schemas.DevicePublic])
def list_devices(user: CurrentUser, session: SessionDep, ctx: CtxDep) -> list[schemas.DevicePublic]:
    """List my devices (and, for an installer, those not claimed yet and those whose owner lets me look)."""
    return [device_public(d, ctx, user) for d in devices.visible_to(session, user)]


@router.get("/{serial}/", response_model=schemas.DevicePublic, responses=_errors)
def get_device(device: VisibleDevice, user: CurrentUser, ctx: CtxDep) -> schemas.DevicePublic:
    """One of my devices."""
    return device_public(device, ctx, user)


@router.patch("/{serial}/", response_model=schemas.DevicePublic, responses=_owner_errors)
def update_device(
    body: schemas.DeviceUpdate, device: ManagedDevice, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.DevicePublic:
    """Rename a device, change its timezone or wake interval, or (owner) allow its installer to look."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "installer_access" in changes:
        access.require(device, user, Access.OWNER, device_serial=device.serial)
    for field, value in changes.items():
        setattr(device, field, value)
    return device_public(device, ctx, user)


@router.delete("/{serial}/", status_code=status.HTTP_204_NO_CONTENT, responses=_owner_errors)
def delete_device(device: AccountDevice, session: SessionDep, ctx: CtxDep) -> None:
    """Delete my device with all its photos; its token stops working and my gateway forgets it."""
    retention.delete_device(session, ctx, device)


@router.get("/{serial}/captures/", response_model=schemas.CapturePage, responses=_errors)
def list_captures(
    device: VisibleDevice,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=schemas.CURSOR_PATTERN)] = None,
) -> schemas.CapturePage:
    """Page through a device's captures, newest first."""
    page, next_cursor = captures.page(session, device, limit, cursor)
    return schemas.CapturePage(items=[capture_public(c, device.serial) for c in page], next_cursor=next_cursor)


@router.get("/{serial}/history", response_model=schemas.DeviceHistory,
            responses={401: _errors[404], 404: _errors[404], 422: _errors[404]})
def get_device_history(
    device: OwnedDevice,
    user: CurrentUser,
    session: SessionDep,
    ctx: CtxDep,
    days: Annotated[int, Query(ge=1, le=device_history.MAX_DAYS, description="Days back, today included")] = 28,
) -> schemas.DeviceHistory:
    """My device's last days in the owner's time zone: battery (with a forecast), deliveries, wakes."""
    found = device_history.history(session, device, days=days, timezone=user.timezone, now=ctx.clock.now(),
                                   threshold_v=ctx.settings.notify.low_battery_v)
    return device_history_public(device.serial, days, found)


@router.get("/{serial}/triggers/", response_model=list[schemas.TriggerPublic], responses=_errors)
def list_triggers(
    device: VisibleDevice, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[schemas.TriggerPublic]:
    """My device's manual triggers, newest first."""
    return [trigger_public(session, t, device.serial) for t in triggers.latest_for_device(session, device, limit)]
