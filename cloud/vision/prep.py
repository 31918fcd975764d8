"""Image preparation before a model sees it: validate, downscale, strip metadata; perceptual hash."""

from __future__ import annotations

import io

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError

from cloud.vision.base import InvalidAnswer


class BadImage(InvalidAnswer):
    """The stored image cannot be decoded: no provider will do better, so the job fails."""


def open_jpeg(data: bytes, *, draft_to: tuple[int, int] | None = None) -> Image.Image:
    """Decode a JPEG; with ``draft_to`` the decoder itself scales down (1/2..1/8: cheap on big images)."""
    try:
        image = Image.open(io.BytesIO(data), formats=["JPEG"])
        if draft_to is not None:
            image.draft("RGB", draft_to)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImage(f"the image is not a decodable JPEG: {exc}") from exc
    return image


def prepare_jpeg(data: bytes, *, long_side: int, quality: int = 85) -> bytes:
    """A re-encoded JPEG, long side at most ``long_side``, with no EXIF or other metadata."""
    image = open_jpeg(data)
    image = ImageOps.exif_transpose(image)  # keep the orientation the EXIF asked for, then drop EXIF
    image = image.convert("RGB")
    if max(image.size) > long_side:
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh save writes no EXIF, ICC or comments unless asked to.
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def perceptual_hash(data: bytes) -> str:
    """64-bit pHash as 16 hex digits."""
    return str(imagehash.phash(open_jpeg(data).convert("L")))


def phash_distance(a: str, b: str) -> int:
    return imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b)


def grayscale(data: bytes, size: tuple[int, int]) -> Image.Image:
    return open_jpeg(data).convert("L").resize(size, Image.Resampling.BILINEAR)


def rgb(data: bytes, long_side: int) -> Image.Image:
    image = open_jpeg(data).convert("RGB")
    if max(image.size) > long_side:
        image.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return image
