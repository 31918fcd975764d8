"""JPEG validation and the content-addressed image folder.

Files live at ``<root>/<sha[:2]>/<sha>.jpg`` and ``….thumb.jpg``: the same
image uploaded twice is stored once, and a retry after a crash between the
file write and the database commit simply finds the file already there.

Durability: the original is written to a temporary name, fsynced, then renamed
into place, all before the capture row is committed (and so before the 200). The
thumbnail is derived data: it is written the same atomic way but not fsynced (one
fsync less per capture). After a power loss it may be missing or torn; ``read``
checks it and rebuilds it from the original, which is what a lost cache costs.
The directory is fsynced after the original's rename, so the new name itself survives a
power loss (a rename is durable only once its directory is).

Shared files and deletion: one file may back several captures, and a delete must never
remove it while another capture uses it, including one being ingested at that moment. Both
sides take the file's lock row first (``hold_image``, an upsert: a row lock on PostgreSQL,
the one write lock on SQLite): the deleter unlinks only while holding it and seeing no
capture; the ingest, holding it, puts the file back if a delete got there first, then
commits its capture.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from cloud.db import upsert
from cloud.errors import ImageRejected
from cloud.models import ImageFile


@dataclass(frozen=True)
class CheckedJpeg:
    sha256: str
    width: int
    height: int
    thumbnail: bytes


def check_jpeg(data: bytes, *, min_side: int, max_side: int, thumbnail_side: int) -> CheckedJpeg:
    """Prove ``data`` is a whole, decodable JPEG of sane size; make its thumbnail on the way."""
    if not data.startswith(b"\xff\xd8"):
        raise ImageRejected("the image is not a JPEG (no SOI marker)")
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            width, height = image.size
            if min(width, height) < min_side or max(width, height) > max_side:
                raise ImageRejected(
                    f"image is {width}x{height}; each side must be within {min_side}..{max_side} px"
                )
            thumbnail = _thumbnail(image, thumbnail_side)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image is not a valid JPEG: {exc}") from exc
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageRejected("the JPEG is truncated (no EOI marker)")
    return CheckedJpeg(hashlib.sha256(data).hexdigest(), width, height, thumbnail)


def make_thumbnail(data: bytes, side: int) -> bytes:
    """The thumbnail of a stored original (to rebuild one lost in a crash)."""
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        return _thumbnail(image, side)


def _thumbnail(image: Image.Image, side: int) -> bytes:
    width, height = image.size
    scale = min(1.0, side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Decode at a reduced scale (libjpeg's DCT scaling, down to 1/8) chosen for the thumbnail's own
    # size: a 640x480 original is decoded straight to 320x240 and needs no resize at all. It is cheap,
    # yet it reads the whole entropy-coded stream, so a truncated or corrupt file fails here.
    image.draft("RGB", target)
    image.load()
    thumb = image.convert("RGB")
    if thumb.size != target:
        thumb = thumb.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


def _looks_whole(jpeg: bytes) -> bool:
    """Our own thumbnails start with SOI and end with EOI; a torn or zero-filled file does not."""
    return jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")


_tmp_names = itertools.count()


class ImageStore:
    def __init__(self, root: Path, *, thumbnail_side: int = 320) -> None:
        self.root = Path(root)
        self.thumbnail_side = thumbnail_side

    def path(self, sha256: str, *, thumbnail: bool = False) -> Path:
        name = f"{sha256}.thumb.jpg" if thumbnail else f"{sha256}.jpg"
        return self.root / sha256[:2] / name

    def put(self, sha256: str, data: bytes, thumbnail: bytes) -> None:
        """Store an original durably (fsynced before this returns) and its thumbnail (not fsynced)."""
        self._write_once(self.path(sha256), data, durable=True)
        self._write_once(self.path(sha256, thumbnail=True), thumbnail, durable=False)

    def read(self, sha256: str, *, thumbnail: bool = False) -> bytes:
        if not thumbnail:
            return self.path(sha256).read_bytes()
        path = self.path(sha256, thumbnail=True)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        if _looks_whole(data):
            return data
        # Lost or torn in a crash (it is written without fsync): rebuild it from the original.
        data = make_thumbnail(self.path(sha256).read_bytes(), self.thumbnail_side)
        path.unlink(missing_ok=True)
        self._write_once(path, data, durable=False)
        return data

    def delete(self, sha256: str) -> None:
        for thumb in (False, True):
            self.path(sha256, thumbnail=thumb).unlink(missing_ok=True)

    def _write_once(self, path: Path, data: bytes, *, durable: bool) -> None:
        if path.exists():
            return
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            if durable:
                _fsync_dir(self.root)  # the new shard folder's own name
        tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{next(_tmp_names)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hold_image(session: Session, sha256: str, now: datetime) -> None:
    """Lock this image file's row until ``session`` ends (see the module docstring)."""
    stmt = upsert(session, ImageFile).values(sha256=sha256, created_at=now)
    # DO UPDATE, not DO NOTHING: only an update locks an existing row on PostgreSQL.
    session.execute(stmt.on_conflict_do_update(index_elements=[ImageFile.sha256], set_={"sha256": sha256}))
