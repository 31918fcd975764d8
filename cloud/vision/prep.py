"""Image preparation before a model sees it: validate, downscale, strip metadata; perceptual hash.

Every reader decodes at a reduced scale when it needs fewer pixels than the file holds
(``Image.draft``: libjpeg's DCT scaling by 1/2, 1/4 or 1/8, chosen so the result is still at
least the size asked for). An 8192x8192 JPEG is then decoded as 1024x1024 for a 640 px
analysis: 3 MB of pixels instead of 192 MB, and a fraction of the CPU.
"""

from __future__ import annotations

import io

import imagehash
import numpy as np
import scipy.fftpack
from PIL import Image, ImageOps, UnidentifiedImageError

from cloud.vision.base import InvalidAnswer
from cloud.vision.resample import lanczos_resize


class BadImage(InvalidAnswer):
    """The stored image cannot be decoded: no provider will do better, so the job fails."""


# The analyser's grey frame (``working_images``): its sharpness is measured on it, and the perceptual
# hash (32x32 pixels) is taken of it, so one decode serves both.
GREY_SIZE = (320, 240)


def _open(data: bytes, *, mode: str | None = None, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``data``; with ``at_least``, at the smallest DCT scale still covering that size."""
    try:
        image = Image.open(io.BytesIO(data), formats=["JPEG"])
        if at_least is not None:
            image.draft(mode, at_least)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImage(f"the image is not a decodable JPEG: {exc}") from exc
    return image


def open_jpeg(data: bytes, *, draft_to: tuple[int, int] | None = None) -> Image.Image:
    """Decode a JPEG; with ``draft_to`` the decoder itself scales down to about that size (cheap)."""
    return _open(data, mode="RGB", at_least=draft_to)


def _fit(data: bytes, long_side: int) -> tuple[int, int] | None:
    """The size of ``data`` scaled so its long side is ``long_side`` (header only), or None if smaller."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # _open reports it
    scale = long_side / max(width, height)
    return (max(1, int(width * scale)), max(1, int(height * scale))) if scale < 1 else None


def prepare_jpeg(data: bytes, *, long_side: int, quality: int = 85) -> bytes:
    """A re-encoded JPEG, long side at most ``long_side``, with no EXIF or other metadata."""
    image = _open(data, mode="RGB", at_least=_fit(data, long_side))
    image = ImageOps.exif_transpose(image)  # keep the orientation the EXIF asked for, then drop EXIF
    image = image.convert("RGB")
    if max(image.size) > long_side:
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh save writes no EXIF, ICC or comments unless asked to.
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def analysis_decode(data: bytes) -> Image.Image:
    """``data`` decoded as the analysis reads it: at the smallest DCT scale still covering ``GREY_SIZE``.

    Ingest proves every upload decodable with this very decode and hands it to the photo's analysis
    (``AppContext.decoded``): the entropy-coded stream, most of a decode's CPU, is then read once."""
    return open_jpeg(data, draft_to=GREY_SIZE)


def working_images(data: bytes, decoded: Image.Image | None = None) -> tuple[Image.Image, Image.Image]:
    """The photo as the analysis sees it: RGB, decoded at the smallest DCT scale still covering
    ``GREY_SIZE``, and its grey frame at exactly ``GREY_SIZE``. ``decoded``: ``analysis_decode(data)``
    made earlier (ingest's), to use instead of decoding again."""
    image = (decoded if decoded is not None else analysis_decode(data)).convert("RGB")
    return image, image.convert("L").resize(GREY_SIZE, Image.Resampling.BILINEAR)


def phash_of(grey: Image.Image) -> str:
    """64-bit pHash of a grey frame (``working_images``) as 16 hex digits: ``imagehash.phash``'s, with
    its 32×32 LANCZOS shrink as two matrix products (``resample``: the same pixels for about a third of
    Pillow's CPU)."""
    if grey.mode != "L":
        return str(imagehash.phash(grey))
    small = lanczos_resize(np.asarray(grey), (32, 32))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)  # imagehash's steps from here on
    low = dct[:8, :8]
    return str(imagehash.ImageHash(low > np.median(low)))


def perceptual_hash(data: bytes) -> str:
    """64-bit pHash of a photo as 16 hex digits (``change.picture_and_hash`` gives the same with its frame).

    Taken of the analyser's grey frame rather than a full decode: the frame is decoded for the
    analysis anyway, and a separate full-size decode for the hash cost more than the rest of the
    frame's preparation. ``bench/phash_agreement.py`` (1000 held-out generated photos, 480x360 to
    2000x1500, JPEG quality 60-92): one photo's two hashes are a median distance 0 apart (p95 4),
    they agree on "unchanged" for 786 of 800 consecutive pairs, and neither calls any of the 400
    pairs whose contents changed unchanged."""
    return phash_of(working_images(data)[1])


def phash_distance(a: str, b: str) -> int:
    return imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b)


def grayscale(data: bytes, size: tuple[int, int]) -> Image.Image:
    return _open(data, mode="L", at_least=size).convert("L").resize(size, Image.Resampling.BILINEAR)


def rgb(data: bytes, long_side: int) -> Image.Image:
    image = _open(data, mode="RGB", at_least=_fit(data, long_side)).convert("RGB")
    if max(image.size) > long_side:
        image.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return image
