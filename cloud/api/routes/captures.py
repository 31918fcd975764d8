"""A capture of mine (or of a device I install or may look at): details, image, thumbnail, deletion."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import RedirectResponse

from cloud.api import schemas
from cloud.api.deps import CtxDep, CurrentUser, ManagedCapture, SessionDep, VisibleCapture
from cloud.api.presenters import capture_public, reference_set
from cloud.errors import NotFound
from cloud.models import Capture
from cloud.services import retention
from cloud.vision import references

router = APIRouter(prefix="/api/captures", tags=["captures"])
_errors = {403: {"model": schemas.ErrorBody}, 404: {"model": schemas.ErrorBody}}


@router.get("/{capture_id}", response_model=schemas.CapturePublic, responses=_errors)
def get_capture(owned: VisibleCapture) -> schemas.CapturePublic:
    """A capture with its analysis."""
    capture, device = owned
    return capture_public(capture, device.serial)


def _jpeg(ctx: CtxDep, capture: Capture, thumbnail: bool) -> Response:
    images = ctx.settings.images
    if images.serve == "presigned" and not thumbnail:
        # The owner check has passed: send the browser to the bucket for a short while. The redirect
        # itself is not cached (its URL expires), the image behind it is (immutable, content addressed).
        # Thumbnails (a few KB, made on their first read) are served here.
        url = ctx.images.shared_url(capture.image_sha256, thumbnail=False, ttl_s=images.presign_ttl_s)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    try:
        data = ctx.images.read(capture.image_sha256, thumbnail=thumbnail)
    except FileNotFoundError as exc:
        raise NotFound("the image file is gone", capture_id=capture.capture_id) from exc
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{capture.image_sha256}"'},
    )


_jpeg_response = {
    200: {"content": {"image/jpeg": {}}},
    307: {"description": "a presigned URL of the bucket"},
    **_errors,
}


@router.get("/{capture_id}/image", response_class=Response, responses=_jpeg_response)
def get_image(owned: VisibleCapture, ctx: CtxDep) -> Response:
    """The original JPEG."""
    return _jpeg(ctx, owned[0], thumbnail=False)


@router.get("/{capture_id}/thumbnail", response_class=Response, responses=_jpeg_response)
def get_thumbnail(owned: VisibleCapture, ctx: CtxDep) -> Response:
    """A small JPEG for lists."""
    return _jpeg(ctx, owned[0], thumbnail=True)


@router.post(
    "/{capture_id}/reference",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ReferenceSet,
    responses={**_errors, 422: {"model": schemas.ErrorBody}},
)
def set_reference(managed: ManagedCapture, session: SessionDep, ctx: CtxDep, user: CurrentUser) -> schemas.ReferenceSet:
    """Say "the mailbox is empty in this photo": it becomes the device's empty reference."""
    capture, device = managed
    source = references.source_for(user.id, device)
    row = references.add_from_capture(session, ctx.images, device, capture, source, ctx.clock.now())
    return reference_set(session, row, capture, device)


@router.delete("/{capture_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors)
def delete_capture(owned: ManagedCapture, session: SessionDep, ctx: CtxDep) -> None:
    """Delete a capture, its analysis and (if no other capture shares it) its image file."""
    capture, _ = owned
    retention.delete_captures(session, ctx, [capture.id])
