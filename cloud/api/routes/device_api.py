"""The seed's device contract: capture ingest, manual trigger, status, plus telemetry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cloud.api import schemas
from cloud.api.deps import (
    CtxDep,
    CurrentUser,
    DeviceCaller,
    SessionDep,
    TokenDep,
    device_caller_for,
    ingest_caller,
    managed_device,
    visible_device,
)
from cloud.api.presenters import capture_public, trigger_public
from cloud.context import AppContext
from cloud.errors import Forbidden
from cloud.models import Device, TriggerType
from cloud.services import accounts, captures, clicks, devices, gateways, ingest, telemetry, triggers

router = APIRouter(prefix="/api/device", tags=["device"])
# The seed's wording, which its clients show as is.
TRIGGERED_MESSAGE = "Trigger sent to device"
QUEUED_MESSAGE = "Device is offline; the photo will be taken at its next wake"


@router.post(
    "/capture/",
    response_model=schemas.CaptureSaved,
    responses={
        401: {"model": schemas.ErrorBody},
        403: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
    },
)
async def post_capture(body: schemas.CaptureCreate, token: TokenDep, ctx: CtxDep) -> Response:
    """Store a capture (device or gateway token); idempotent on capture_id."""
    # async, with all the blocking work in one worker-thread call. As sync dependencies and a sync
    # handler, the session (in and out), the caller, the handler and the response's serialisation
    # took five thread hops per capture, ~14% of the server's Python time under load, with FastAPI's
    # dependency solving another ~10% (bench/cloud_ingest.py --py-spy). The body is still parsed
    # and validated by FastAPI, so bad input gets the same 422 as on every other route.
    saved = await run_in_threadpool(store_capture, ctx, token, body)
    return Response(saved.model_dump_json(), media_type="application/json")


def store_capture(ctx: AppContext, token: str, body: schemas.CaptureCreate) -> schemas.CaptureSaved:
    """Authenticate the caller and ingest the capture, in a session of its own (ingest commits it)."""
    with ctx.sessions() as session:
        return capture_as(session, ctx, ingest_caller(session, token), body)


def capture_as(session: Session, ctx: AppContext, caller: DeviceCaller, body: schemas.CaptureCreate
               ) -> schemas.CaptureSaved:
    """Ingest a capture for an authenticated caller; ``session`` has written nothing (ingest commits it)."""
    device = caller.device_for(session, body.serial_number)
    result = ingest.ingest_capture(
        session,
        ctx,
        device,
        ingest.CaptureIn(
            image_b64=body.image,
            trigger_type=TriggerType(body.trigger_type),
            battery_voltage=body.battery_voltage,
            taken_at=body.timestamp,
            capture_id=body.capture_id,
            trigger_id=body.trigger_id,
            time_uncertain=body.time_uncertain,
            wake_reason=body.wake_reason,
        ),
        via_gateway=caller.gateway,
    )
    return schemas.CaptureSaved(capture_id=result.capture_id, analysis_queued=result.analysis_queued)


@router.post(
    "/telemetry/",
    response_model=schemas.TelemetryAccepted,
    responses={401: {"model": schemas.ErrorBody}, 404: {"model": schemas.ErrorBody}},
)
async def post_telemetry(body: schemas.TelemetryCreate, token: TokenDep, ctx: CtxDep) -> Response:
    """Record a device's battery, signal and wake report (device or gateway token)."""
    # As post_capture: async, with the blocking work in one worker-thread call. A gateway sends one
    # report per wake, beside its capture; as sync dependencies and handler it took four thread hops.
    accepted = await run_in_threadpool(store_telemetry, ctx, token, body)
    return Response(accepted.model_dump_json(), media_type="application/json")


def store_telemetry(ctx: AppContext, token: str, body: schemas.TelemetryCreate) -> schemas.TelemetryAccepted:
    """Authenticate the caller and record the report in one transaction, committed before the answer."""
    with ctx.sessions() as session:
        return telemetry_as(session, ctx, device_caller_for(session, token), body)


def telemetry_as(session: Session, ctx: AppContext, caller: DeviceCaller, body: schemas.TelemetryCreate
                 ) -> schemas.TelemetryAccepted:
    """Record a report for an authenticated caller and commit it: a gateway's ``last_seen_at`` is set by
    one UPDATE once the device is known (``gateways.mark_seen``), not by the ORM's flush."""
    device = caller.device_for(session, body.serial_number)
    if caller.gateway is not None:
        gateways.mark_seen(session, caller.gateway, ctx.clock.now())
    fields = body.model_dump(exclude={"serial_number", "timestamp"})
    telemetry.record(session, ctx, device, telemetry.TelemetryIn(reported_at=body.timestamp, **fields))
    session.commit()
    return schemas.TelemetryAccepted()


@router.post(
    "/trigger/",
    response_model=schemas.TriggerAccepted,
    responses={
        202: {"model": schemas.TriggerAccepted, "description": "Queued: the device is offline"},
        403: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        429: {"model": schemas.ClickLimitBody},
    },
)
def post_trigger(body: schemas.TriggerCreate, user: CurrentUser, session: SessionDep, ctx: CtxDep) -> JSONResponse:
    """Ask a device for a photo now (one click on the free tier)."""
    # The seed's body names the user; it is a claim to check, never an identity to act as. A
    # mismatch is a 403 (not a 404): it says nothing about the device, only that the caller is not that user.
    if body.user_id is not None and body.user_id != user.id:
        raise Forbidden("user_id is not the caller's", user_id=body.user_id)
    device = managed_device(session, user, body.device_serial)
    return trigger_accepted(triggers.request_trigger(session, ctx, user, device), device)


def trigger_accepted(outcome: triggers.TriggerOutcome, device: Device) -> JSONResponse:
    """The seed's answer to a trigger: 200 triggered (device online) or 202 queued (offline)."""
    accepted = schemas.TriggerAccepted(
        status="triggered" if outcome.device_online else "queued",
        message=TRIGGERED_MESSAGE if outcome.device_online else QUEUED_MESSAGE,
        trigger_id=outcome.trigger.trigger_id,
        device_serial=device.serial,
        expires_at=outcome.trigger.expires_at,
        clicks_used=outcome.window.used,
        clicks_limit=outcome.window.limit,
        reset_at=outcome.window.reset_at.isoformat(),
    )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=200 if outcome.device_online else 202)


@router.post(
    "/trigger/{trigger_id}/cancel/", response_model=schemas.TriggerPublic, responses={404: {"model": schemas.ErrorBody}}
)
def cancel_trigger(
    trigger_id: schemas.IdPath, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.TriggerPublic:
    """Cancel a trigger; its click is given back only if the device has not picked it up yet."""
    trigger = triggers.cancel(session, ctx, user, trigger_id)
    return trigger_public(session, trigger, session.get(Device, trigger.device_id).serial)


@router.get("/status/", response_model=schemas.DeviceStatus, responses={404: {"model": schemas.ErrorBody}})
def get_status(
    device_serial: Annotated[str, Query(pattern=schemas.SERIAL_PATTERN)],
    user: CurrentUser,
    session: SessionDep,
    ctx: CtxDep,
) -> schemas.DeviceStatus:
    """A device's status, last capture and my clicks today."""
    device = visible_device(session, user, device_serial)
    now = ctx.clock.now()
    last = captures.latest(session, device)
    tier = accounts.effective_tier(user, now)
    window = clicks.window(session, user, tier, now, ctx.settings.free_clicks_per_day)
    return schemas.DeviceStatus(
        device_serial=device.serial,
        status="online" if devices.is_online(device, now, ctx.settings) else "offline",
        last_capture=last.taken_at if last else None,
        latest_capture=capture_public(last, device.serial) if last else None,
        battery_voltage=device.last_battery_voltage,
        user_tier=tier.value,
        clicks_used_today=window.used,
        clicks_limit=window.limit,
        clicks_reset_at=window.reset_at.isoformat(),
    )
