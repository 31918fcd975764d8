"""A device's empty-mailbox references: set by people, refined from the analyser's surest frames.

A device with no reference is *uncalibrated*: the offline analyser says so instead of guessing,
and no mail alert is raised on its word. A reference comes from

    owner / installer   "the mailbox is empty in this photo" (POST /api/captures/{id}/reference)
    feedback            "wrong — it was empty" on an analysis (never "wrong — there was mail")
    learned             a frame the analyser was very sure was empty, taken in a light none of the
                        references has (night flash, winter sun), or replacing a learned one that
                        is over a week old: the reference follows the box slowly, never a delivery

Each kind keeps its newest few; a frame is compared with the references closest to it in
brightness and the best match wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from cloud.errors import Conflict, ImageRejected, NotFound
from cloud.imagestore import ImageStore
from cloud.models import Capture, Device, MailboxReference
from cloud.vision import delivery
from cloud.vision.change import Picture, picture, picture_from_png
from cloud.vision.frames import Frames, reference_key
from cloud.vision.prep import BadImage, prepare_jpeg

PEOPLE = ("owner", "installer", "feedback")
KEEP_PER_KIND = {"people": 4, "learned": 4}
NEW_LIGHT_RATIO = 1.35  # a frame this much brighter or darker than every reference is a new lighting
LEARNED_MAX_AGE = timedelta(days=7)
MODEL_IMAGE_LONG_SIDE = 512


@dataclass(frozen=True)
class Reference:
    id: int
    source: str
    picture: Picture
    image_jpeg: bytes
    created_at: datetime
    key: str | None = None  # identity by content (cloud.vision.frames); None: not stored


_stored = MailboxReference.__table__.c
# Built once, a plain read of the columns a Reference keeps: every vision job reads its box's references
# (as entities they cost more CPU than the read).
_OF_DEVICE = (
    select(_stored.id, _stored.source, _stored.picture_png, _stored.image_jpeg, _stored.created_at, _stored.mean,
           _stored.sharpness)
    .where(_stored.device_id == bindparam("device_id"))
    .order_by(_stored.id)
)


def load(session: Session, device_id: int, frames: Frames | None = None) -> list[Reference]:
    """The device's references; with ``frames``, their pictures decoded once per process, not per job."""
    rows = session.connection().execute(_OF_DEVICE, {"device_id": device_id})
    loaded = []
    for row in rows:
        key = reference_key(row.picture_png)
        picture = (frames.reference(key, row.picture_png, row.mean, row.sharpness) if frames is not None
                   else picture_from_png(row.picture_png, row.mean, row.sharpness))
        loaded.append(Reference(row.id, row.source, picture, row.image_jpeg, row.created_at, key))
    return loaded


def count(session: Session, device_id: int) -> int:
    """How many references the device has (without decoding their pictures)."""
    return session.scalar(select(func.count()).where(MailboxReference.device_id == device_id)) or 0


def closest(references: list[Reference], frame: Picture, limit: int = 2) -> list[Reference]:
    """The references whose brightness is nearest the frame's (a night frame meets the night reference)."""
    def distance(ref: Reference) -> float:
        return abs(math.log(max(frame.mean, 1.0) / max(ref.picture.mean, 1.0)))

    return sorted(references, key=distance)[:limit]


def add(session: Session, device: Device, image: bytes, source: str, now: datetime,
        capture: Capture | None = None) -> MailboxReference:
    """Store ``image`` as an empty-mailbox reference of ``device`` (422 if it is not a usable JPEG)."""
    try:
        frame = picture(image)
        model_image = prepare_jpeg(image, long_side=MODEL_IMAGE_LONG_SIDE)
    except BadImage as exc:
        raise ImageRejected("the photo cannot be decoded as a JPEG", device_serial=device.serial) from exc
    row = MailboxReference(
        device_id=device.id, capture_pk=capture.id if capture else None, source=source,
        picture_png=frame.to_png(), image_jpeg=model_image, mean=frame.mean, sharpness=frame.sharpness,
        created_at=now,
    )
    session.add(row)
    session.flush()
    _prune(session, device.id)
    if source in PEOPLE:
        state = delivery.ensure_state(session, device.id, now)
        state.calibrated_at = state.calibrated_at or now
        if capture is not None:
            delivery.mark_empty(session, device.id, capture.id, capture.taken_at, now)
    return row


def add_from_capture(session: Session, images: ImageStore, device: Device, capture: Capture, source: str,
                     now: datetime) -> MailboxReference:
    """"The mailbox is empty in this photo": the capture's image becomes a reference (404 if it is gone)."""
    try:
        image = images.read(capture.image_sha256)
    except FileNotFoundError as exc:
        raise NotFound("the image file is gone", capture_id=capture.capture_id) from exc
    return add(session, device, image, source, now, capture=capture)


def capture_of(session: Session, device: Device, capture_id: str) -> Capture:
    capture = session.scalar(select(Capture).where(Capture.capture_id == capture_id, Capture.device_id == device.id))
    if capture is None:
        raise NotFound("no such capture of this device", capture_id=capture_id)
    return capture


def source_for(user_id: int, device: Device) -> str:
    """Who says the box is empty: its owner, or (at install, before the claim) its installer."""
    return "owner" if user_id == device.owner_id else "installer"


def newest_capture(session: Session, device: Device, taken_after: datetime | None = None) -> Capture:
    """The device's newest photo (taken after ``taken_after``), or 409 when there is none yet."""
    query = select(Capture).where(Capture.device_id == device.id)
    if taken_after is not None:
        query = query.where(Capture.taken_at > taken_after)
    capture = session.scalar(query.order_by(Capture.taken_at.desc(), Capture.id.desc()).limit(1))
    if capture is None:
        raise Conflict("no photo from this mailbox yet: wake it (reset or open the door) and try again",
                       device_serial=device.serial)
    return capture


def _prune(session: Session, device_id: int) -> None:
    rows = list(session.scalars(
        select(MailboxReference).where(MailboxReference.device_id == device_id).order_by(MailboxReference.id.desc())
    ))
    people = [r for r in rows if r.source in PEOPLE]
    learned = [r for r in rows if r.source not in PEOPLE]
    for row in people[KEEP_PER_KIND["people"]:] + learned[KEEP_PER_KIND["learned"]:]:
        session.delete(row)
    session.flush()


def forget_capture(session: Session, capture: Capture) -> int:
    """Owner says this frame had mail: a reference learned from it must go (people's stay theirs)."""
    result = session.execute(
        delete(MailboxReference).where(MailboxReference.capture_pk == capture.id, MailboxReference.source == "learned")
    )
    return result.rowcount or 0


def worth_learning(references: list[Reference], frame: Picture, now: datetime) -> bool:
    """Learn a sure-empty frame when its light is new to the references, or the learned one is stale."""
    if not references:
        return False
    ratios = [max(frame.mean, 1.0) / max(ref.picture.mean, 1.0) for ref in references]
    if all(r > NEW_LIGHT_RATIO or r < 1 / NEW_LIGHT_RATIO for r in ratios):
        return True
    nearest = closest(references, frame, limit=1)[0]
    return nearest.source == "learned" and now - nearest.created_at > LEARNED_MAX_AGE
