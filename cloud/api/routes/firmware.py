"""Firmware updates: the release key, signed releases, rollouts, and a device's update state."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cloud.api import schemas
from cloud.api.deps import CtxDep, CurrentUser, ManagedDevice, SessionDep
from cloud.models import FirmwareRelease, Rollout, RolloutDevice
from cloud.services import firmware

router = APIRouter(prefix="/api", tags=["firmware"])
_err = {"model": schemas.ErrorBody}


def _release(r: FirmwareRelease) -> schemas.ReleasePublic:
    return schemas.ReleasePublic(
        release_id=r.id, version=r.version, size=r.size, files=r.files, sha256=r.sha256, created_at=r.created_at
    )


def _update(row: RolloutDevice, version: str) -> dict:
    return {
        "rollout_id": row.rollout_id,
        "version": version,
        "wave": row.wave,
        "state": row.state.value,
        "progress": row.progress,
        "reason": row.reason,
        "updated_at": row.updated_at,
    }


def _rollout(session: SessionDep, rollout: Rollout) -> schemas.RolloutPublic:
    release = session.get(FirmwareRelease, rollout.release_id)
    rows = firmware.rollout_devices(session, rollout)
    return schemas.RolloutPublic(
        rollout_id=rollout.id,
        version=release.version,
        status=rollout.status.value,
        halted_reason=rollout.halted_reason,
        first_wave=rollout.first_wave,
        max_failure_rate=rollout.max_failure_rate,
        created_at=rollout.created_at,
        devices=[schemas.RolloutDevicePublic(serial=d.serial, **_update(r, release.version)) for r, d in rows],
    )


@router.get("/firmware/key", response_model=schemas.FirmwareKey)
def release_key(user: CurrentUser, ctx: CtxDep) -> schemas.FirmwareKey:
    """This cloud's release public key: devices are provisioned with it (`ota.key`)."""
    return schemas.FirmwareKey(public_key=ctx.settings.firmware_public_key)


@router.post(
    "/firmware/releases",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ReleasePublic,
    responses={401: _err, 409: _err, 413: _err, 422: _err},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_release(
    request: Request, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.ReleasePublic:
    """Upload a release file from `mailcam release build` (refused unless signed with this cloud's key)."""
    data = await request.body()
    release = firmware.add_release(session, ctx.settings.firmware_public_key, data, user, ctx.clock.now())
    return _release(release)


@router.get("/firmware/releases", response_model=list[schemas.ReleasePublic])
def list_releases(user: CurrentUser, session: SessionDep) -> list[schemas.ReleasePublic]:
    """The releases this cloud holds, newest first."""
    return [_release(r) for r in firmware.releases(session)]


@router.post(
    "/firmware/rollouts",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.RolloutPublic,
    responses={401: _err, 404: _err, 422: _err},
)
def create_rollout(
    body: schemas.RolloutCreate, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.RolloutPublic:
    """Roll a release out to one of my devices, a list, or a percentage of them, first wave first."""
    release = firmware.release_by_version(session, body.version)
    targets = firmware.choose_targets(
        session, user, release, serials=getattr(body, "serials", None), percent=getattr(body, "percent", None)
    )
    rollout = firmware.start_rollout(
        session,
        user,
        release,
        targets,
        first_wave=body.first_wave,
        max_failure_rate=body.max_failure_rate,
        now=ctx.clock.now(),
    )
    return _rollout(session, rollout)


@router.get("/firmware/rollouts/{rollout_id}", response_model=schemas.RolloutPublic, responses={404: _err})
def get_rollout(rollout_id: schemas.RowId, user: CurrentUser, session: SessionDep) -> schemas.RolloutPublic:
    """One of my rollouts: its status and each device's update state."""
    return _rollout(session, firmware.rollout_of(session, user, rollout_id))


@router.post("/firmware/rollouts/{rollout_id}/cancel", response_model=schemas.RolloutPublic, responses={404: _err})
def cancel_rollout(rollout_id: schemas.RowId, user: CurrentUser, session: SessionDep) -> schemas.RolloutPublic:
    """Stop one of my rollouts: the release is offered to no device any more."""
    rollout = firmware.rollout_of(session, user, rollout_id)
    firmware.cancel(rollout)
    return _rollout(session, rollout)


@router.get("/devices/{serial}/firmware", response_model=schemas.DeviceFirmware, responses={404: _err})
def device_firmware(device: ManagedDevice, session: SessionDep) -> schemas.DeviceFirmware:
    """My device's firmware: the version it runs and its newest update (pending, downloading n%, installed,
    rolled back + why)."""
    found = firmware.device_update(session, device)
    update = None
    if found:
        row, _, release = found
        update = schemas.DeviceUpdatePublic(**_update(row, release.version))
    return schemas.DeviceFirmware(running=device.firmware_version, update=update)
