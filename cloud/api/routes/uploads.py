"""A gateway's uploads in one request: captures and telemetry reports, each answered as its own route would.

A wake is a capture and a telemetry report; sent as two requests, the report cost the cloud more in
HTTP, a worker-thread hop and the token lookup than in its own work (bench/gateway_requests.py). Here
a gateway sends what it has queued for a device (or several) at once:

    POST /api/gateway/uploads/   {"items": [{"kind": "capture", "body": <CaptureCreate>},
                                            {"kind": "telemetry", "body": <TelemetryCreate>}, …]}
    200                          {"results": [{"status": 200, "body": <CaptureSaved>},
                                              {"status": 404, "body": {"error": "not_found", …}}, …]}

Each item is validated, stored and committed on its own, in order, exactly as on
``/api/device/capture/`` or ``/api/device/telemetry/``: its result is the status and body that route
would have answered (a bad item is its own 422; the others are stored). After an item fails for now
(5xx, 429) the later items of the same device are not attempted (503 ``not_attempted``), so a
device's items never overtake each other. Only a gateway's token is accepted; the whole request's
answer is an error (401, 403, 413, 422) only when the request itself is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import APIRouter, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cloud.api import schemas
from cloud.api.deps import CtxDep, DeviceCaller, TokenDep, ingest_caller
from cloud.api.routes.device_api import capture_as, telemetry_as
from cloud.context import AppContext
from cloud.db import read_only_transaction
from cloud.errors import INTERNAL_ERROR_BODY, Forbidden, MailcamError, invalid_request_body
from cloud.models import Device

log = logging.getLogger("mailcam.uploads")
router = APIRouter(prefix="/api/gateway", tags=["gateways"])
_err = {"model": schemas.ErrorBody}

NOT_ATTEMPTED = {"error": "not_attempted",
                 "detail": "an earlier item of this device failed for now; send them again, in order"}


@router.post("/uploads/", response_model=schemas.UploadResults, responses={401: _err, 403: _err, 413: _err})
async def post_uploads(batch: schemas.UploadBatch, token: TokenDep, ctx: CtxDep) -> Response:
    """Store a gateway's captures and telemetry reports in order; one result per item (see the module)."""
    results = await run_in_threadpool(store_uploads, ctx, token, batch)
    return Response(results.model_dump_json(), media_type="application/json")


def store_uploads(ctx: AppContext, token: str, batch: schemas.UploadBatch) -> schemas.UploadResults:
    with ctx.sessions() as session:
        caller = ingest_caller(session, token)
        if caller.gateway is None:
            raise Forbidden("this endpoint is for gateways")
        session.commit()  # the caller's gateway stays loaded (not expired) for the items' sessions
    waiting: set[str | None] = set()  # serials with an item that failed for now: their later items wait
    batch_caller = _BatchCaller(gateway=caller.gateway)
    results = []
    for item in batch.items:  # each in a session of its own, as on its own route: nothing loaded goes stale
        with ctx.sessions() as session:
            results.append(_store_one(session, ctx, batch_caller, item, waiting))
    return schemas.UploadResults(results=results)


@dataclass(frozen=True)
class _BatchCaller(DeviceCaller):
    """The gateway, remembering the devices this request found: a wake's capture and report name the same
    one, and reading it again (the lookup, an entity) cost more CPU than the report's own rows. The later
    item's session gets the device as found (``merge`` without a read), as ingest's commit does."""

    found: dict[str, Device] = field(default_factory=dict)

    def device_for(self, session: Session, serial: str) -> Device:
        known = self.found.get(serial)
        if known is not None:
            return session.merge(known, load=False)
        device = self.found[serial] = super().device_for(session, serial)
        return device


def _store_one(session: Session, ctx: AppContext, caller: DeviceCaller, item: schemas.UploadItem,
               waiting: set[str | None]) -> schemas.UploadResult:
    serial = item.body.get("serial_number")
    serial = serial if isinstance(serial, str) else None  # a bad one is the item's 422, below
    if serial in waiting:
        return schemas.UploadResult(status=503, body=NOT_ATTEMPTED)
    try:
        if item.kind == "capture":
            read_only_transaction(session)  # the route's read (ingest commits it, then writes in a batch of its own)
            answer: BaseModel = capture_as(session, ctx, caller, schemas.CaptureCreate.model_validate(item.body))
        else:
            answer = telemetry_as(session, ctx, caller, schemas.TelemetryCreate.model_validate(item.body))
        return schemas.UploadResult(status=200, body=answer.model_dump(mode="json"))
    except ValidationError as exc:
        result = schemas.UploadResult(status=422, body=invalid_request_body(exc.errors()))
    except MailcamError as exc:
        result = schemas.UploadResult(status=exc.status_code, body=exc.body())
    except Exception:  # a bug: this item is a 500, as on its own route; the batch goes on
        log.exception("an upload of kind %s failed", item.kind)
        result = schemas.UploadResult(status=500, body=INTERNAL_ERROR_BODY)
    session.rollback()
    if result.status >= 500 or result.status == 429:
        waiting.add(serial)
    return result
