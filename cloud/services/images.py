"""JPEG validation and the content-addressed image folder.

Files live at ``<root>/<sha[:2]>/<sha>.jpg`` and ``….thumb.jpg``: the same
image uploaded twice is stored once, and a retry after a crash between the
file write and the database commit simply finds the file already there.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cloud.errors import ImageRejected


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
            # Decode at a reduced scale: cheap, yet it reads the whole entropy-coded stream,
            # so a truncated or corrupt file fails here.
            image.draft("RGB", (thumbnail_side, thumbnail_side))
            image.load()
            thumb = image.convert("RGB")
            thumb.thumbnail((thumbnail_side, thumbnail_side))
            out = io.BytesIO()
            thumb.save(out, "JPEG", quality=80)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image is not a valid JPEG: {exc}") from exc
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageRejected("the JPEG is truncated (no EOI marker)")
    return CheckedJpeg(hashlib.sha256(data).hexdigest(), width, height, out.getvalue())


class ImageStore:
    def __init__(self, root: Path, *, thumbnail_side: int = 320) -> None:
        self.root = Path(root)
        self.thumbnail_side = thumbnail_side

    def path(self, sha256: str, *, thumbnail: bool = False) -> Path:
        name = f"{sha256}.thumb.jpg" if thumbnail else f"{sha256}.jpg"
        return self.root / sha256[:2] / name

    def put(self, sha256: str, data: bytes, thumbnail: bytes) -> None:
        self._write_once(self.path(sha256), data)
        self._write_once(self.path(sha256, thumbnail=True), thumbnail)

    def read(self, sha256: str, *, thumbnail: bool = False) -> bytes:
        return self.path(sha256, thumbnail=thumbnail).read_bytes()

    def delete(self, sha256: str) -> None:
        for thumb in (False, True):
            self.path(sha256, thumbnail=thumb).unlink(missing_ok=True)

    @staticmethod
    def _write_once(path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
