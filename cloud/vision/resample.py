"""Pillow's LANCZOS resize of an 8-bit grey image, as two matrix products: the same pixels, bit for bit.

The perceptual hash shrinks every photo's 320×240 grey frame to 32×32 (``imagehash.phash``). Pillow
does it pixel by pixel with a 61-tap kernel per output pixel, 0.4 ms of a vision job's CPU. Its
resampling is separable and linear up to its rounding: each pass sums the input times integer weights
(the kernel's weights scaled by 2**22 and rounded, ``libImaging/Resample.c``), adds half and shifts,
and clips to 0..255. As matrices of those same integer weights, both passes are one product each; in
float64 every sum is an exact integer (at most 2**31 in size), so the rounding is Pillow's. Columns
first, then rows, as Pillow does. ``tests/vision/test_resample.py`` holds it to ``Image.resize``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_PRECISION_BITS = 32 - 8 - 2  # Pillow's for 8-bit images
_HALF = float(1 << (_PRECISION_BITS - 1))
_ONE = float(1 << _PRECISION_BITS)
_SUPPORT = 3.0  # Lanczos-3


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


@lru_cache(maxsize=8)
def _weights(in_size: int, out_size: int) -> np.ndarray:
    """(in_size, out_size): Pillow's integer weights of every input pixel for every output pixel
    (``precompute_coeffs`` and ``normalize_coeffs_8bpc``, step for step in double precision)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ss = 1.0 / filterscale  # multiplied by, not divided by: the last bit can differ
    weights = np.zeros((in_size, out_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(0, int(center - support + 0.5))
        count = min(in_size, int(center + support + 0.5)) - first
        kernel = [_lanczos((x + first - center + 0.5) * ss) for x in range(count)]
        total = 0.0
        for w in kernel:  # summed in order, as in C
            total += w
        for x, w in enumerate(kernel):
            k = w / total if total != 0.0 else w
            weights[first + x, out] = int(k * _ONE - 0.5) if k < 0 else int(k * _ONE + 0.5)  # int() truncates, as C
    weights.flags.writeable = False
    return weights


def _round_and_clip(sums: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8``: (sum + half) >> bits, then 0..255 (the sums are exact integers in float64)."""
    sums += _HALF
    sums /= _ONE  # by a power of two: exact
    np.floor(sums, out=sums)
    return np.clip(sums, 0.0, 255.0, out=sums)


_BAND_BYTES = 96 * 1024  # float64 rows converted at a time: under malloc's mmap threshold (128 KB), so the
# temporaries come from the heap, not from fresh pages faulted in each time (a whole frame's cost 0.2 ms)


def lanczos_resize(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS)`` of an (H, W) uint8 array, as uint8."""
    height, width = grey.shape
    across = _weights(width, size[0])
    columns = np.empty((height, size[0]))
    band = max(1, _BAND_BYTES // (8 * width))
    for top in range(0, height, band):
        np.matmul(grey[top:top + band].astype(np.float64), across, out=columns[top:top + band])
    rows = _round_and_clip(_weights(height, size[1]).T @ _round_and_clip(columns))
    return rows.astype(np.uint8)
