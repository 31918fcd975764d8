"""Vision: AI usage and cost, re-analysis, feedback on results, accuracy per provider."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Query, status

from cloud.api import schemas as core_schemas
from cloud.api.deps import CtxDep, CurrentUser, ManagedCapture, OwnedCapture, SessionDep
from cloud.vision import owner, schemas
from cloud.vision.config import VisionSettings
from cloud.vision.pipeline import month_of
from cloud.vision.pricing import allowed_models

router = APIRouter(tags=["vision"])
_err = {"model": core_schemas.ErrorBody}


@router.get("/api/usage", response_model=schemas.UsageOut, responses={401: _err, 422: _err})
def get_usage(
    user: CurrentUser,
    session: SessionDep,
    ctx: CtxDep,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM, default now")] = None,
) -> schemas.UsageOut:
    """My AI calls, tokens, cost, cache hits and skips per device for one month."""
    return owner.usage(session, ctx, user, month or month_of(ctx.clock.now()))


@router.post(
    "/api/captures/{capture_id}/reanalyse",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ReanalyseQueued,
    responses={403: _err, 404: _err, 409: _err, 422: _err, 429: _err},
)
def reanalyse(
    owned: OwnedCapture,
    session: SessionDep,
    ctx: CtxDep,
    body: Annotated[schemas.ReanalyseIn | None, Body()] = None,
) -> schemas.ReanalyseQueued:
    """Queue a new analysis of a capture, e.g. with a stronger model or detail=high."""
    capture, device = owned
    job = owner.request_reanalysis(session, ctx, capture, device, body or schemas.ReanalyseIn())
    return schemas.ReanalyseQueued(capture_id=capture.capture_id, job_id=job.id)


@router.post(
    "/api/captures/{capture_id}/feedback",
    response_model=schemas.FeedbackPublic,
    responses={403: _err, 404: _err, 409: _err, 422: _err},
)
def feedback(
    owned: ManagedCapture, body: schemas.FeedbackIn, user: CurrentUser, session: SessionDep, ctx: CtxDep
) -> schemas.FeedbackPublic:
    """Say whether an analysis was right, and what the truth was."""
    result = owner.record_feedback(session, ctx, user, owned[0], body)
    return result


@router.get("/api/vision/accuracy", response_model=schemas.AccuracyOut, responses={401: _err})
def get_accuracy(user: CurrentUser, session: SessionDep) -> schemas.AccuracyOut:
    """Accuracy of each vision provider according to my feedback."""
    return owner.accuracy(session, user)


def document_allowed_models(app: FastAPI, settings: VisionSettings) -> None:
    """State this cloud's model allow-list in its OpenAPI document (it comes from the settings)."""
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        schema = previous()
        body = schema.get("components", {}).get("schemas", {}).get("ReanalyseIn", {})
        if "model" in body.get("properties", {}):
            body["properties"]["model"]["anyOf"] = [
                {"type": "string", "enum": allowed_models(settings)}, {"type": "null"}
            ]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
