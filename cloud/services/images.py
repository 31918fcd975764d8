"""JPEG validation, thumbnails, and the lock that orders deletes of shared image files.

Where the files live (a folder or a bucket) is ``cloud.imagestore``. The original is stored
durably before the capture row is committed (and so before the 200); the same image uploaded
twice is stored once, and a retry after a crash between the store and the commit finds it there.

Shared files and deletion: one file may back several captures, and a delete must never
remove it while another capture uses it, including one being ingested at that moment. Both
sides take the file's lock row first (``hold_image``, an upsert: a row lock on PostgreSQL,
the one write lock on SQLite): the deleter removes the file only while holding it and seeing
no capture; the ingest, holding it, puts the file back if a delete got there first, then
commits its capture.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from cloud.db import upsert
from cloud.errors import ImageRejected
from cloud.models import ImageFile
from cloud.vision.prep import BadImage, analysis_decode


@dataclass(frozen=True)
class CheckedJpeg:
    sha256: str
    width: int
    height: int
    # The proof that it decodes, kept: the photo as its analysis reads it (``prep.analysis_decode``).
    decoded: Image.Image | None = field(default=None, compare=False, repr=False)


def check_jpeg(data: bytes, *, min_side: int, max_side: int) -> CheckedJpeg:
    """Prove ``data`` is a whole, decodable JPEG of sane size.

    Decoded as its analysis will read it (``prep.analysis_decode``: scaled down by libjpeg itself), so
    a truncated or corrupt file fails here, and the analysis takes this decode over instead of
    decoding again (most of a decode's CPU is reading the entropy-coded stream, at any scale).

    The thumbnail is not made here (off the request path): the image store makes it on its first
    read (``ImageStore.read(thumbnail=True)``)."""
    if not data.startswith(b"\xff\xd8"):
        raise ImageRejected("the image is not a JPEG (no SOI marker)")
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image is not a valid JPEG: {exc}") from exc
    if min(width, height) < min_side or max(width, height) > max_side:  # before any pixel is decoded
        raise ImageRejected(f"image is {width}x{height}; each side must be within {min_side}..{max_side} px")
    try:
        decoded = analysis_decode(data)
    except BadImage as exc:
        raise ImageRejected(f"the image is not a valid JPEG: {exc.__cause__ or exc}") from exc
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageRejected("the JPEG is truncated (no EOI marker)")
    return CheckedJpeg(hashlib.sha256(data).hexdigest(), width, height, decoded)


def make_thumbnail(data: bytes, side: int) -> bytes:
    """The thumbnail of a stored original (made on first read, or again after a crash tore it)."""
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        return _thumbnail(image, side)


def _thumbnail(image: Image.Image, side: int) -> bytes:
    width, height = image.size
    scale = min(1.0, side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Decode at a reduced scale (libjpeg's DCT scaling, down to 1/8) chosen for the thumbnail's own
    # size: a 640x480 original is decoded straight to 320x240 and needs no resize at all.
    image.draft("RGB", target)
    image.load()
    thumb = image.convert("RGB")
    if thumb.size != target:
        thumb = thumb.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


def looks_whole(jpeg: bytes) -> bool:
    """Our own thumbnails start with SOI and end with EOI; a torn or zero-filled file does not."""
    return jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")


def hold_image(session: Session, sha256: str, now: datetime) -> None:
    """Lock this image file's row until ``session`` ends (see the module docstring)."""
    dialect = session.get_bind().dialect.name
    stmt = _HOLD_IMAGE.get(dialect)
    if stmt is None:
        # Built once per dialect, values as parameters: the compiled statement is then cached, not
        # rebuilt and re-keyed on every capture (it runs while SQLite's write lock is held).
        table = ImageFile.__table__
        insert = upsert(session, table)
        # DO UPDATE, not DO NOTHING: only an update locks an existing row on PostgreSQL.
        stmt = _HOLD_IMAGE[dialect] = insert.on_conflict_do_update(
            index_elements=[table.c.sha256], set_={"sha256": insert.excluded.sha256}
        )
    session.connection().execute(stmt, {"sha256": sha256, "created_at": now})


_HOLD_IMAGE: dict[str, Any] = {}
