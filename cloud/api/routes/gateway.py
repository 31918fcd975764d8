"""The edge gateway's API: its devices, pending triggers (long-poll), delivery reports, and for Home
Assistant its devices' states (long-poll) and "take a photo now" on the owner's behalf.

Long-poll, not SSE or a fixed poll: the gateway asks with the ``version`` it
last saw and the request returns as soon as the set of open triggers changes
(or after ``wait`` seconds). A click reaches the mailbox's retained ``cmd``
topic within a fraction of a second, with one idle request per gateway,
through any proxy that passes plain HTTP. A waiting request costs no queries:
it is woken by ``cloud.services.trigger_watch`` (which also caps waiters per gateway).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from mcam import protocol
from starlette.concurrency import run_in_threadpool

from cloud.api import gateway_states, schemas
from cloud.api.deps import (
    AccountUser,
    CtxDep,
    CurrentUser,
    DeviceCaller,
    GatewayDep,
    GatewayDevice,
    OwnedGateway,
    SessionDep,
    TokenDep,
    device_caller,
    gateway_caller,
)
from cloud.api.routes.device_api import trigger_accepted
from cloud.context import AppContext
from cloud.models import FirmwareRelease, Gateway, User
from cloud.services import devices, firmware, gateways, triggers
from cloud.services.trigger_watch import TriggerWatch

router = APIRouter(prefix="/api", tags=["gateways"])
Snapshot = TypeVar("Snapshot", schemas.GatewayTriggers, schemas.GatewayStates)
_err = {"model": schemas.ErrorBody}
_owner_errors = {401: _err, 403: _err, 404: _err}


def _setup(request: Request, ctx: AppContext, token: str) -> schemas.GatewaySetup:
    # The address the gateway must use is the one the owner reaches us at (or the configured public one).
    cloud_url = ctx.settings.notify.public_url or str(request.base_url)
    made = gateways.setup(cloud_url, token)
    return schemas.GatewaySetup(command=made.command, env_file=made.env_file, systemd_unit=made.systemd_unit)


def _public(gateway: Gateway, ctx: AppContext) -> schemas.GatewayPublic:
    return schemas.GatewayPublic(
        gateway_id=gateway.id,
        name=gateway.name,
        created_at=gateway.created_at,
        last_seen_at=gateway.last_seen_at,
        state=gateways.state(gateway, ctx.clock.now(), ctx.settings.gateway_offline_after_s),
        reported_at=gateway.reported_at,
        backlog=gateway.backlog,
        backlog_oldest_s=gateway.backlog_oldest_s,
        held=gateway.held,
        dead_letters=gateway.dead_letters,
        broker_connected=gateway.broker_connected,
    )


@router.post("/gateways/", status_code=status.HTTP_201_CREATED, response_model=schemas.GatewayRegistered)
def register_gateway(
    body: schemas.GatewayCreate, request: Request, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.GatewayRegistered:
    """Register a gateway for my devices; its token (with the command to start it) is shown only here."""
    gateway, token = gateways.create_gateway(session, owner=user, name=body.name, now=ctx.clock.now())
    return schemas.GatewayRegistered(
        gateway_id=gateway.id, name=gateway.name, gateway_token=token, setup=_setup(request, ctx, token)
    )


@router.get("/gateways/", response_model=list[schemas.GatewayPublic])
def list_gateways(user: AccountUser, session: SessionDep, ctx: CtxDep) -> list[schemas.GatewayPublic]:
    """My gateways, with what each last reported (backlog, held items, dead letters)."""
    return [_public(g, ctx) for g in gateways.gateways_of(session, user)]


@router.post("/gateways/{gateway_id}/token/", response_model=schemas.GatewayToken, responses=_owner_errors)
def rotate_gateway_token(
    gateway: OwnedGateway, request: Request, session: SessionDep, ctx: CtxDep
) -> schemas.GatewayToken:
    """Give my gateway a new token; the old one stops working (shown once)."""
    token = gateways.rotate_gateway_token(session, gateway)
    return schemas.GatewayToken(gateway_id=gateway.id, gateway_token=token, setup=_setup(request, ctx, token))


@router.delete("/gateways/{gateway_id}/", status_code=status.HTTP_204_NO_CONTENT, responses=_owner_errors)
def revoke_gateway(gateway: OwnedGateway, session: SessionDep) -> None:
    """Revoke my gateway: its token stops working and it is forgotten."""
    session.delete(gateway)


@router.post("/gateway/status/", status_code=status.HTTP_204_NO_CONTENT, responses={401: _err, 403: _err})
def gateway_status(body: schemas.GatewayStatusReport, gateway: GatewayDep, ctx: CtxDep) -> None:
    """Report this gateway's spool: backlog, held items, dead letters, broker link (shown to its owner)."""
    for field, value in body.model_dump().items():
        setattr(gateway, field, value)
    gateway.reported_at = ctx.clock.now()


@router.get("/gateway/devices/", response_model=list[schemas.GatewayDevice])
def gateway_devices(gateway: GatewayDep, session: SessionDep) -> list[schemas.GatewayDevice]:
    """The devices this gateway serves, with their desired remote settings (published retained)."""
    rows = devices.managed_by(session, gateway.owner_id)
    offered = firmware.offers(session, [d.id for d in rows])
    return [
        schemas.GatewayDevice(serial=d.serial, wake_interval_s=d.wake_interval_s,
                              settings_version=d.settings_version, settings=d.settings_desired,
                              firmware=_offer(offered.get(d.id)))
        for d in rows
    ]


def _offer(release: FirmwareRelease | None) -> schemas.GatewayFirmwareOffer | None:
    if release is None:
        return None
    return schemas.GatewayFirmwareOffer(release_id=release.id, version=release.version, size=release.size,
                                        signature=release.signature)


@router.get("/gateway/firmware/{release_id}", response_class=Response, responses={404: _err})
def gateway_firmware(
    release_id: schemas.RowId, gateway: GatewayDep, session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=protocol.MAX_BUNDLE_BYTES)] = 0,
    length: Annotated[int | None, Query(ge=1, le=protocol.MAX_BUNDLE_BYTES)] = None,
) -> Response:
    """A firmware release's bundle (or `length` bytes of it from `offset`), for the devices this gateway serves."""
    data = firmware.bundle_range(session, release_id, offset, length)
    return Response(data, media_type="application/octet-stream")


def _authenticate_gateway(ctx: AppContext, token: str) -> int:
    with ctx.sessions() as session:
        gateway = gateway_caller(device_caller(session, ctx, token))
        session.commit()
        return gateway.id


def _snapshot(ctx: AppContext, gateway_id: int) -> schemas.GatewayTriggers:
    with ctx.sessions() as session:
        gateway = session.get(Gateway, gateway_id)
        device_ids = DeviceCaller(gateway=gateway).device_ids(session)
        serials = devices.serials(session, device_ids)
        rows = triggers.open_for_devices(session, device_ids, ctx.clock.now())
        items = [
            schemas.GatewayTrigger(
                trigger_id=t.trigger_id,
                device_serial=serials[t.device_id],
                status=t.status.value,
                expires_at=t.expires_at,
            )
            for t in rows
        ]
    digest = hashlib.sha256("|".join(f"{t.trigger_id}:{t.status}" for t in items).encode()).hexdigest()[:16]
    return schemas.GatewayTriggers(version=digest, triggers=items)


async def _long_poll(
    watch: TriggerWatch, ctx: AppContext, token: str, wait: float, version: str | None,
    snapshot: Callable[[AppContext, int], Snapshot],
) -> Snapshot:
    """Answer with ``snapshot`` once its version differs from ``version`` (or after ``wait`` s)."""
    # No request-long session here: on SQLite an open transaction holds the write lock.
    gateway_id = await run_in_threadpool(_authenticate_gateway, ctx, token)
    if wait <= 0 or version is None:  # nothing to wait for: answer at once, take no waiter's place
        return await run_in_threadpool(snapshot, ctx, gateway_id)
    settings = ctx.settings
    deadline = time.monotonic() + wait
    with watch.waiting(gateway_id, limit=settings.gateway_long_polls_per_gateway) as waiter:
        while True:
            waiter.clear()  # before the snapshot: a change committed during it wakes the next wait
            answer = await run_in_threadpool(snapshot, ctx, gateway_id)
            remaining = deadline - time.monotonic()
            if answer.version != version or remaining <= 0 or waiter.released:
                return answer
            await waiter.wait(min(remaining, settings.gateway_long_poll_safety_s))


Wait = Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")]
Version = Annotated[str | None, Query(pattern=r"^[0-9a-f]{1,64}$", description="The version last seen")]


@router.get("/gateway/triggers/", response_model=schemas.GatewayTriggers)
async def gateway_triggers(
    request: Request, ctx: CtxDep, token: TokenDep, wait: Wait = 0, version: Version = None
) -> schemas.GatewayTriggers:
    """Open manual triggers for my devices; long-polls while nothing changed since `version`."""
    return await _long_poll(request.app.state.trigger_watch, ctx, token, wait, version, _snapshot)


def _states(ctx: AppContext, gateway_id: int) -> schemas.GatewayStates:
    with ctx.sessions() as session:
        gateway = session.get(Gateway, gateway_id)
        return gateway_states.snapshot(session, ctx, gateway.owner_id)


@router.get("/gateway/states/", response_model=schemas.GatewayStates)
async def gateway_device_states(
    request: Request, ctx: CtxDep, token: TokenDep, wait: Wait = 0, version: Version = None
) -> schemas.GatewayStates:
    """My devices as the cloud sees them (mail, latest photo, presence, battery: what Home Assistant
    shows); long-polls while nothing changed since `version`."""
    return await _long_poll(request.app.state.state_watch, ctx, token, wait, version, _states)


@router.post(
    "/gateway/devices/{serial}/trigger/",
    response_model=schemas.TriggerAccepted,
    responses={
        202: {"model": schemas.TriggerAccepted, "description": "Queued: the device is offline"},
        404: {"model": schemas.ErrorBody},
        429: {"model": schemas.ClickLimitBody},
    },
)
def gateway_trigger(device: GatewayDevice, gateway: GatewayDep, session: SessionDep, ctx: CtxDep) -> JSONResponse:
    """Ask one of my devices for a photo now, for my owner (the same click limit as the owner's own click)."""
    owner = session.get(User, gateway.owner_id)
    return trigger_accepted(triggers.request_trigger(session, ctx, owner, device), device)


@router.post(
    "/gateway/triggers/{trigger_id}/delivered/",
    response_model=schemas.GatewayTrigger,
    responses={404: {"model": schemas.ErrorBody}},
)
def trigger_delivered(
    trigger_id: schemas.IdPath, gateway: GatewayDep, session: SessionDep, ctx: CtxDep
) -> schemas.GatewayTrigger:
    """Report that the device has picked up a trigger."""
    device_ids = DeviceCaller(gateway=gateway).device_ids(session)
    trigger = triggers.mark_delivered(session, ctx, device_ids, trigger_id)
    serial = devices.serials(session, [trigger.device_id])[trigger.device_id]
    status_value = trigger.status.value if trigger.status.is_open else "delivered"
    return schemas.GatewayTrigger(
        trigger_id=trigger.trigger_id, device_serial=serial, status=status_value, expires_at=trigger.expires_at
    )
