"""The edge gateway's API: its devices, pending triggers (long-poll) and delivery reports.

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
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool

from cloud.api import schemas
from cloud.api.deps import (
    AccountUser,
    CtxDep,
    CurrentUser,
    DeviceCaller,
    GatewayDep,
    OwnedGateway,
    SessionDep,
    TokenDep,
    device_caller,
    gateway_caller,
)
from cloud.context import AppContext
from cloud.models import Gateway
from cloud.services import devices, triggers
from cloud.services.trigger_watch import TriggerWatch

router = APIRouter(prefix="/api", tags=["gateways"])
_err = {"model": schemas.ErrorBody}
_owner_errors = {401: _err, 403: _err, 404: _err}


@router.post("/gateways/", status_code=status.HTTP_201_CREATED, response_model=schemas.GatewayRegistered)
def register_gateway(
    body: schemas.GatewayCreate, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.GatewayRegistered:
    """Register a gateway for my devices; its token is shown only here."""
    gateway, token = devices.create_gateway(session, owner=user, name=body.name, now=ctx.clock.now())
    return schemas.GatewayRegistered(gateway_id=gateway.id, name=gateway.name, gateway_token=token)


@router.get("/gateways/", response_model=list[schemas.GatewayPublic])
def list_gateways(user: AccountUser, session: SessionDep) -> list[schemas.GatewayPublic]:
    """My gateways."""
    rows = devices.gateways_of(session, user)
    return [
        schemas.GatewayPublic(gateway_id=g.id, name=g.name, created_at=g.created_at, last_seen_at=g.last_seen_at)
        for g in rows
    ]


@router.post("/gateways/{gateway_id}/token/", response_model=schemas.GatewayToken, responses=_owner_errors)
def rotate_gateway_token(gateway: OwnedGateway, session: SessionDep) -> schemas.GatewayToken:
    """Give my gateway a new token; the old one stops working (shown once)."""
    token = devices.rotate_gateway_token(session, gateway)
    return schemas.GatewayToken(gateway_id=gateway.id, gateway_token=token)


@router.delete("/gateways/{gateway_id}/", status_code=status.HTTP_204_NO_CONTENT, responses=_owner_errors)
def revoke_gateway(gateway: OwnedGateway, session: SessionDep) -> None:
    """Revoke my gateway: its token stops working and it is forgotten."""
    session.delete(gateway)


@router.get("/gateway/devices/", response_model=list[schemas.GatewayDevice])
def gateway_devices(gateway: GatewayDep, session: SessionDep) -> list[schemas.GatewayDevice]:
    """The devices this gateway serves, with their desired remote settings (published retained)."""
    rows = devices.devices_of(session, gateway.owner_id)
    return [
        schemas.GatewayDevice(serial=d.serial, wake_interval_s=d.wake_interval_s,
                              settings_version=d.settings_version, settings=d.settings_desired)
        for d in rows
    ]


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


@router.get("/gateway/triggers/", response_model=schemas.GatewayTriggers)
async def gateway_triggers(
    request: Request,
    ctx: CtxDep,
    token: TokenDep,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a change")] = 0,
    version: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{1,64}$", description="The version last seen")
    ] = None,
) -> schemas.GatewayTriggers:
    """Open manual triggers for my devices; long-polls while nothing changed since `version`."""
    # No request-long session here: on SQLite an open transaction holds the write lock.
    gateway_id = await run_in_threadpool(_authenticate_gateway, ctx, token)
    if wait <= 0 or version is None:  # nothing to wait for: answer at once, take no waiter's place
        return await run_in_threadpool(_snapshot, ctx, gateway_id)
    watch: TriggerWatch = request.app.state.trigger_watch
    settings = ctx.settings
    deadline = time.monotonic() + wait
    with watch.waiting(gateway_id, limit=settings.gateway_long_polls_per_gateway) as waiter:
        while True:
            waiter.clear()  # before the snapshot: a change committed during it wakes the next wait
            snapshot = await run_in_threadpool(_snapshot, ctx, gateway_id)
            remaining = deadline - time.monotonic()
            if snapshot.version != version or remaining <= 0 or waiter.released:
                return snapshot
            await waiter.wait(min(remaining, settings.gateway_long_poll_safety_s))


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
