"""Deleting captures with their image files: one place for the owner's delete and for retention.

Rows go first (analysis, jobs and notifications' references follow by ON DELETE rules);
files are removed only after that commit, each while holding its lock row and seeing no
capture that shares it (``images.hold_image``: an ingest of the same image waits, or puts
the file back). A crash between the two leaves an orphan file, never a row pointing at a
missing file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.models import Capture, Device, ImageFile
from cloud.services.images import hold_image


def delete_captures(session: Session, ctx: AppContext, capture_pks: list[int]) -> int:
    """Delete these captures and their no-longer-shared files; commits. Returns rows deleted."""
    if not capture_pks:
        return 0
    shas = set(session.scalars(select(Capture.image_sha256).where(Capture.id.in_(capture_pks))))
    deleted = session.execute(
        delete(Capture).where(Capture.id.in_(capture_pks)).execution_options(synchronize_session="fetch")
    ).rowcount
    session.commit()
    now = ctx.clock.now()
    for sha in sorted(shas):  # one order for every deleter: no lock cycles
        hold_image(session, sha, now)
    still_used = set(
        session.scalars(select(Capture.image_sha256).where(Capture.image_sha256.in_(shas)).distinct())
    )
    unused = shas - still_used
    for sha in unused:
        ctx.images.delete(sha)  # under the lock: no ingest can be about to reference it
    if unused:
        session.execute(delete(ImageFile).where(ImageFile.sha256.in_(unused)))
    session.commit()
    return deleted or 0


def delete_device(session: Session, ctx: AppContext, device: Device, *, batch: int = 500) -> None:
    """Delete a device with its captures and their no-longer-shared files (commits per batch of captures;
    the device row goes in the caller's transaction, its other rows follow by ON DELETE CASCADE)."""
    device_id = device.id
    while pks := list(session.scalars(select(Capture.id).where(Capture.device_id == device_id).limit(batch))):
        delete_captures(session, ctx, pks)
    session.delete(session.get(Device, device_id))
    session.flush()


def purge_older_than(session: Session, ctx: AppContext, cutoff: datetime, *, batch: int = 500) -> int:
    """Delete every capture received before ``cutoff``, in batches; returns how many."""
    total = 0
    while True:
        pks = list(
            session.scalars(select(Capture.id).where(Capture.received_at < cutoff).order_by(Capture.id).limit(batch))
        )
        if not pks:
            return total
        total += delete_captures(session, ctx, pks)
