"""What changed in a mailbox since a reference photo: the offline analyser's eyes.

A mailbox camera is no tripod and its light is no studio: between two photos of the same empty
box the exposure, the white balance and the flash fall-off change, the lid shifts the camera by a
few pixels, the sensor adds noise and JPEG adds blocks. None of that is mail. ``compare`` removes
each in turn and keeps what is left:

    1. both frames at 160×120, in log intensity per channel (light multiplies, so it subtracts here)
    2. camera shift: the integer translation that best matches the two gradient images (±6 px),
       then a 3×3 neighbourhood tolerance for the rest (roll, scale, sub-pixel)
    3. light: a smooth field per channel (a cubic surface in x, y), fitted robustly so the mail
       itself is left out of the fit: exposure, white balance, flash hot spot and vignetting
    4. noise: residuals are measured against this pair's own noise level (robust MAD)
    5. regions: connected changed areas; one that is only a change of light (a sunlight patch,
       a shadow through the slot) keeps its texture and changes by one even gain in every channel,
       so it is set aside; what remains is an object
    6. categories from the objects' colours, sizes and shapes: cardboard brown with a label on it, or one
       big rectangular block → package, paper-bright and plain → letters, saturated and varied → magazine
       or flyer

``Picture`` is the prepared frame (cheap to keep for the reference), ``Change`` the result.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage, spatial

from cloud.vision.base import empty_counts
from cloud.vision.prep import phash_of, working_images

WORK = (160, 120)  # width, height of the working frame
MAX_SHIFT = 6  # pixels at WORK size (about 4 % of the width)
_LOG_FLOOR = 6.0  # added before the log, so dark noise does not explode
_ABS_CHANGE = 0.16  # log units (~17 %) below which no pixel counts as changed, however clean the pair
_NOISE_K = 3.5  # ... nor below this many noise sigmas
_NOISE_CAP = 0.06  # a pair noisier than this is misaligned texture, not noise: do not let it hide mail
_MIN_REGION = 0.003  # share of the frame below which a changed blob is grit, not mail
_MIN_THICKNESS = 2.5  # pixels from a region's inside to its outline: mail is thicker than an edge


@dataclass
class Picture:
    rgb: np.ndarray  # (H, W, 3) float32, 0..255
    log: np.ndarray  # (H, W, 3) log(rgb + floor)
    luma: np.ndarray  # (H, W) log luma
    mean: float  # mean grey level 0..255 (full frame)
    sharpness: float  # Laplacian variance of the grey frame at 320×240, divided by mean² (exposure-free)

    # What ``compare`` derives from one side of a pair, worked out once per frame: a reference meets
    # every frame of its box, and a frame meets each of its references (and the next frame).
    @cached_property
    def shift_gradients(self) -> np.ndarray:
        """Coarse gradients, blurred first (``estimate_shift``)."""
        return _gradients(_blur(self.luma, 2.0))

    @cached_property
    def shift_block_sums(self) -> np.ndarray:
        """Block sums of the coarse gradients at every position (``estimate_shift``'s bounds)."""
        return _block_sums(self.shift_gradients)

    @cached_property
    def edges(self) -> np.ndarray:
        """Gradients of the lightly blurred frame: its edges, not its sensor noise."""
        return _gradients(_blur(self.luma, 0.6))

    @cached_property
    def soft_log(self) -> np.ndarray:
        """The log frame lightly blurred against noise and JPEG blocks."""
        return _blur(self.log, 1.0)

    def to_png(self) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.clip(np.rint(self.rgb), 0, 255).astype(np.uint8)).save(out, "PNG")
        return out.getvalue()


def picture(jpeg: bytes) -> Picture:
    """Decode (scaled by the JPEG decoder itself) and prepare a frame."""
    return _decoded(jpeg)[0]


def picture_and_hash(jpeg: bytes, decoded: Image.Image | None = None) -> tuple[Picture, str]:
    """The frame and the photo's perceptual hash (``prep.perceptual_hash``), from one decode (``decoded``:
    ``prep.analysis_decode(jpeg)``, if it was made already)."""
    frame, grey = _decoded(jpeg, decoded)
    return frame, phash_of(grey)


def _decoded(jpeg: bytes, decoded: Image.Image | None = None) -> tuple[Picture, Image.Image]:
    image, grey = working_images(jpeg, decoded)
    small = np.asarray(work_size(image), dtype=np.float32)
    return _from_arrays(small, np.asarray(grey, dtype=np.float32)), grey


def work_size(image: Image.Image) -> Image.Image:
    """``image.resize(WORK, Image.Resampling.BOX)``.

    At exactly twice ``WORK`` (a 640×480 photo decoded at half scale: the camera's own size), that
    resize averages each pair of columns and rounds, then each pair of rows and rounds: two
    ``reduce`` steps of Pillow's make the same pixels for half the CPU."""
    if image.size == (2 * WORK[0], 2 * WORK[1]):
        return image.reduce((2, 1)).reduce((1, 2))
    return image.resize(WORK, Image.Resampling.BOX)


def picture_from_png(data: bytes, mean: float, sharpness: float) -> Picture:
    """A stored reference back (its full-frame statistics are stored beside it)."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    return picture_from_arrays(rgb, mean, sharpness)


def picture_from_arrays(rgb: np.ndarray, mean: float, sharpness: float) -> Picture:
    """A working frame from its (H, W, 3) pixels and its full-frame statistics, kept from an earlier decode."""
    pic = _from_arrays(rgb, None)
    pic.mean, pic.sharpness = mean, sharpness
    return pic


def _from_arrays(rgb: np.ndarray, grey: np.ndarray | None) -> Picture:
    # In place where a temporary would do: the same operations in the same order, fewer allocations.
    log = rgb + _LOG_FLOOR
    np.log(log, out=log)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    luma += _LOG_FLOOR
    np.log(luma, out=luma)
    mean, sharpness = 0.0, 0.0
    if grey is not None:
        lap = grey[1:-1, 1:-1] * 4  # 4·centre − up − down − left − right, left to right
        lap -= grey[:-2, 1:-1]
        lap -= grey[2:, 1:-1]
        lap -= grey[1:-1, :-2]
        lap -= grey[1:-1, 2:]
        mean = float(grey.mean())
        sharpness = float(lap.var()) / max(mean, 1.0) ** 2
    return Picture(rgb=rgb, log=log, luma=luma, mean=mean, sharpness=sharpness)


@dataclass
class Region:
    share: float  # of the frame
    kind: str  # a MailCategory (letter, package, magazine, flyer), or "light"
    bbox: tuple[int, int, int, int]


@dataclass
class Change:
    share: float  # share of the frame covered by objects (light changes excluded)
    regions: list[Region] = field(default_factory=list)
    mask: np.ndarray | None = None  # (H, W) bool: object pixels
    shift: tuple[int, int] = (0, 0)
    noise: float = 0.0
    light_share: float = 0.0  # share explained away as light (sun, shadow)
    # The box's own strongest edges now, as a share of their strength in the reference: a blurred
    # or fogged photo softens them; sensor noise (which a plain Laplacian mistakes for detail) does not.
    edge_ratio: float = 1.0

    @property
    def objects(self) -> list[Region]:
        return [r for r in self.regions if r.kind != "light"]


# --- blur ---------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``gaussian_filter1d``'s kernel: a sampled Gaussian out to ``truncate`` sigmas, summing to 1."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter(a, sigma)`` over the first two axes (rows, columns; not the channels).

    The same two ``correlate1d`` passes, without working the kernel out again on every call (a third
    of the cost at this size; tests/vision/test_change_exact.py checks the numbers)."""
    weights = _gaussian_weights(sigma)[::-1]  # correlate, not convolve (symmetric anyway)
    out = np.empty_like(a)
    ndimage.correlate1d(a, weights, 0, out, "reflect")
    ndimage.correlate1d(out, weights, 1, out, "reflect")
    return out


# --- 2. camera shift ----------------------------------------------------------------------------


def _gradients(luma: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, 1:-1] = luma[:, 2:] - luma[:, :-2]
    gy[1:-1, :] = luma[2:, :] - luma[:-2, :]
    return np.hypot(gx, gy)


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx), edges repeated (no wrap-around): a new array.

    = ``a[clip(arange(h) - dy)][:, clip(arange(w) - dx)]``, as the part still in view padded with its
    edge (two plain copies instead of two gathers)."""
    h, w = a.shape[:2]
    dy, dx = max(-h + 1, min(h - 1, dy)), max(-w + 1, min(w - 1, dx))
    kept = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    pad = [(max(0, dy), max(0, -dy)), (max(0, dx), max(0, -dx))] + [(0, 0)] * (a.ndim - 2)
    return np.pad(kept, pad, mode="edge")


_SHIFTS = [(dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1) for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)]
# A small prior for small shifts: a lid moves the camera a pixel or two, and a periodic texture
# (a mat's dots) must not pull the estimate to a distant period.
_PRIOR = np.array([1 + 0.01 * (dy * dy + dx * dx) for dy, dx in _SHIFTS])
_BLOCK = 4  # pixels per side of the blocks whose sums bound a candidate's cost from below
_BOUND_SLACK = 1e-4  # relative: the float32 cost's rounding is ~1e-6, so a bound this much above it is sure


def _block_sums(a: np.ndarray, b: int = _BLOCK) -> np.ndarray:
    """``[y, x]`` = the sum of ``a[y:y + b, x:x + b]``, every position, in float64 (b columns, then b rows)."""
    a = a.astype(np.float64)
    rows = a[:, :a.shape[1] - b + 1].copy()
    for k in range(1, b):
        rows += a[:, k:a.shape[1] - b + 1 + k]
    sums = rows[:rows.shape[0] - b + 1].copy()
    for k in range(1, b):
        sums += rows[k:rows.shape[0] - b + 1 + k]
    return sums


def _shift_cost(g_ref: np.ndarray, target: np.ndarray, dy: int, dx: int, diff: np.ndarray) -> float:
    """Mean absolute difference of the coarse gradients with ``g_ref`` moved by (dy, dx), times the prior.

    Inside the margin a shifted reference is a plain window of it (no edge to repeat): a view, not a
    copy; the differences go to ``diff`` (the same values, without an allocation per candidate)."""
    m = MAX_SHIFT + 1
    h, w = g_ref.shape
    np.subtract(g_ref[m - dy:h - m - dy, m - dx:w - m - dx], target, out=diff)
    np.abs(diff, out=diff)
    return float(diff.mean()) * (1 + 0.01 * (dy * dy + dx * dx))


def estimate_shift(ref: Picture, new: Picture) -> tuple[int, int]:
    """The (dy, dx) that moves ``ref`` onto ``new`` best, by agreement of the coarse gradients.

    Blurred first, so a fine periodic texture (a rubber mat's dots) cannot lock onto the wrong period.

    The cost of every candidate (±``MAX_SHIFT``, ``_shift_cost``) is bounded from below by its blocks'
    sums (|Σa − Σb| ≤ Σ|a − b| over each 4×4 block); candidates are costed in the order of their bounds,
    and the search stops where the next bound exceeds the best cost found: none left could beat it. The
    same shift as costing all 169 and taking the first smallest (``tests/vision/test_change_exact.py``),
    for about a tenth of the work.
    """
    g_ref, g_new = ref.shift_gradients, new.shift_gradients
    m = MAX_SHIFT + 1
    h, w = g_new.shape
    target = g_new[m:h - m, m:w - m]
    rows, cols = (h - 2 * m) // _BLOCK, (w - 2 * m) // _BLOCK  # whole blocks: the rest only adds to the cost
    target_sums = new.shift_block_sums[m:m + rows * _BLOCK:_BLOCK, m:m + cols * _BLOCK:_BLOCK]
    # every candidate's blocks at once, (dy, dx, row, col) in _SHIFTS' order: the reference's block sums
    # at the block grid moved by (dy, dx), as strided views (dy = -MAX_SHIFT first, i.e. row m + MAX_SHIFT)
    windows = sliding_window_view(ref.shift_block_sums, ((rows - 1) * _BLOCK + 1, (cols - 1) * _BLOCK + 1))
    first = m + MAX_SHIFT  # the window for dy = -MAX_SHIFT; for +MAX_SHIFT it is m - MAX_SHIFT = 1, above 0
    moved = windows[first:0:-1, first:0:-1, ::_BLOCK, ::_BLOCK]
    # Into a C-ordered array: ``moved - target_sums`` would take the view's backwards strides, and the
    # reshape below would then copy it (a third of this function's time).
    gaps = np.empty(moved.shape)
    np.subtract(moved, target_sums, out=gaps)
    np.abs(gaps, out=gaps)
    bounds = gaps.reshape(len(_SHIFTS), -1).sum(axis=1) / target.size * _PRIOR
    diff = np.empty_like(target)
    best, best_index = np.inf, -1
    for index in np.argsort(bounds, kind="stable"):
        if bounds[index] * (1 - _BOUND_SLACK) > best:
            break
        cost = _shift_cost(g_ref, target, *_SHIFTS[index], diff)
        if cost < best or (cost == best and index < best_index):  # ties: the first in _SHIFTS' order
            best, best_index = cost, int(index)
    return _SHIFTS[best_index]


# --- 3. light ------------------------------------------------------------------------------------


def _basis(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = x / (w - 1) * 2 - 1, y / (h - 1) * 2 - 1
    terms = [np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3]
    return np.stack([t.ravel() for t in terms], axis=1)


def _soft_basis(h: int, w: int) -> np.ndarray:
    """``_basis``'s terms, each as an (h, w) image blurred as ``Picture.soft_log`` blurs a frame."""
    basis = _basis(h, w)
    return _blur(basis.reshape(h, w, basis.shape[1]), 1.0).reshape(h * w, -1)


_BASIS = _basis(WORK[1], WORK[0])
_SOFT_BASIS = _soft_basis(WORK[1], WORK[0])
_BASIS_SAMPLE = np.ascontiguousarray(_BASIS[::3])  # the pixels light_field fits to
_FIT_TERMS = (3, 3, 6, 6, 6)  # light_field's rounds: plane, plane, quadratic, ... (see there)


def _sample_columns(a: np.ndarray) -> dict[int, np.ndarray]:
    """``a``'s first n columns in float64, contiguous, per term count of the fits: their kept rows are
    a plain row selection (exact: every float32 is a float64)."""
    return {terms: np.ascontiguousarray(a[:, :terms], dtype=np.float64) for terms in set(_FIT_TERMS)}


_SAMPLE_COLUMNS = _sample_columns(_BASIS_SAMPLE)


def _median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a 1-D float32 array without NaN, without its wrapping: the middle
    value, or the float32 mean of the middle two, as ``np.median`` takes them (one partition)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    middle = np.partition(values, (half - 1, half))
    return float((middle[half - 1] + middle[half]) / values.dtype.type(2))


def light_field(diff: np.ndarray) -> np.ndarray:
    """A smooth per-channel field fitted to ``diff`` (H, W, 3), ignoring the pixels that do not fit."""
    h, w, _ = diff.shape
    basis = _BASIS if (h, w) == (WORK[1], WORK[0]) else _basis(h, w)
    return (basis @ _light_coefficients(diff)).reshape(h, w, 3)


def _soft_light(coef: np.ndarray, h: int, w: int) -> np.ndarray:
    """``_blur(light field, 1.0)`` for the field of ``coef`` (``_light_coefficients``): a blur is linear,
    so it is the blurred terms' sum, the terms blurred once (not a frame's blur per comparison)."""
    soft_basis = _SOFT_BASIS if (h, w) == (WORK[1], WORK[0]) else _soft_basis(h, w)
    return (soft_basis @ coef).reshape(h, w, 3)


def _light_coefficients(diff: np.ndarray) -> np.ndarray:
    """``light_field``'s fit: the (terms, 3) coefficients of its surface per channel."""
    h, w, _ = diff.shape
    if (h, w) == (WORK[1], WORK[0]):
        a, columns = _BASIS_SAMPLE, _SAMPLE_COLUMNS
    else:
        a = np.ascontiguousarray(_basis(h, w)[::3])
        columns = _sample_columns(a)
    d = np.ascontiguousarray(diff.reshape(-1, 3)[::3])  # every third pixel
    d64 = d.astype(np.float64)
    keep = np.ones(len(a), dtype=bool)
    rows: np.ndarray | None = None  # the kept rows (None: all, the first fit)
    coef = np.zeros((a.shape[1], 3), dtype=np.float32)
    # Plane first, then quadratic, then cubic, each fitted without what the simpler one could not
    # explain: a flexible surface fitted to everything at once bends itself around a big envelope.
    for round_, terms in enumerate(_FIT_TERMS, start=1):
        coef = np.zeros((a.shape[1], 3), dtype=np.float32)
        # Least squares by the normal equations in float64: a few smooth terms over thousands of pixels
        # are well conditioned, and this is several times cheaper than an SVD per fit. Kept rows by
        # ``take``: the same rows as a boolean index, 4x cheaper.
        kept = columns[terms] if rows is None else columns[terms].take(rows, axis=0)
        try:
            coef[:terms] = np.linalg.solve(kept.T @ kept, kept.T @ (d64 if rows is None else d64.take(rows, axis=0)))
        except np.linalg.LinAlgError:  # degenerate (e.g. almost no pixels kept): the SVD copes
            coef[:terms] = np.linalg.lstsq(a[keep, :terms], d[keep], rcond=None)[0]
        if round_ == len(_FIT_TERMS):
            break  # the last fit is the field: what it leaves out would pick pixels for no further fit
        off = np.abs(d - a @ coef)
        residual = np.maximum(np.maximum(off[:, 0], off[:, 1]), off[:, 2])  # = off.max(axis=1), unstrided
        mad = _median(residual if rows is None else residual.take(rows)) * 1.4826
        keep = residual <= max(3 * mad, 0.06)
        rows = np.flatnonzero(keep)
        if len(rows) < a.shape[1] * 10:
            break
    return coef


# --- binary morphology, as scipy.ndimage's (border_value 0) for the few structures used here -------
# scipy's binary ops visit the structure element by element through a generic iterator: ~0.1-0.3 ms per
# call on a 160×120 mask. These are a few whole-array ANDs/ORs of shifted views, the same pixels
# (tests/vision/test_change_exact.py checks them against scipy).


def _run(mask: np.ndarray, axis: int, lo: int, hi: int, erode: bool) -> np.ndarray:
    """AND (erode) or OR (dilate) of ``mask`` at offsets lo..hi along ``axis``; outside the frame is False."""
    out = mask.copy()
    m, o = (mask, out) if axis == 0 else (mask.T, out.T)  # the transposed view writes through to ``out``
    n = m.shape[0]
    for k in range(lo, hi + 1):
        if k == 0:
            continue
        if abs(k) >= n:  # every pixel's neighbour at k is outside
            if erode:
                o[...] = False
            continue
        dst, src, outside = (o[:n - k], m[k:], o[n - k:]) if k > 0 else (o[-k:], m[:n + k], o[:-k])
        if erode:
            dst &= src
            outside[...] = False
        else:
            dst |= src
    return out


def _rect(mask: np.ndarray, lo: int, hi: int, erode: bool) -> np.ndarray:
    """Erosion or dilation by the square of offsets lo..hi in both axes (a square is separable)."""
    return _run(_run(mask, 1, lo, hi, erode), 0, lo, hi, erode)


def _cross(mask: np.ndarray, iterations: int, erode: bool) -> np.ndarray:
    """``binary_erosion``/``binary_dilation(mask, iterations=n)`` with scipy's default (cross) structure."""
    combine = np.logical_and if erode else np.logical_or
    for _ in range(iterations):
        out = mask.copy()
        combine(out[1:], mask[:-1], out=out[1:])  # the neighbour above
        combine(out[:-1], mask[1:], out=out[:-1])  # below
        combine(out[:, 1:], mask[:, :-1], out=out[:, 1:])  # left
        combine(out[:, :-1], mask[:, 1:], out=out[:, :-1])  # right
        if erode:  # the frame's edge pixels have a neighbour outside, which is False
            out[0, :] = out[-1, :] = False
            out[:, 0] = out[:, -1] = False
        mask = out
    return mask


def dilated(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=n)`` (scipy's default cross structure): the same pixels."""
    return _cross(mask, iterations, erode=False)


def _thick(part: np.ndarray) -> bool:
    """Some pixel of ``part`` lies ``_MIN_THICKNESS`` (2.5 px, the disc's radius below) or more from its
    outline: ``ndimage.distance_transform_edt(np.pad(part, 1)).max() >= 2.5``.

    Squared pixel distances below 2.5² are 0, 1, 2, 4 and 5: such a pixel is one whose 5×5
    neighbourhood without its corners lies inside ``part``, i.e. one that survives an erosion by that
    disc, the union of a 5×3 and a 3×5 rectangle (an erosion by a union is the erosions' intersection).
    """
    tall = _run(_run(part, 1, -1, 1, erode=True), 0, -2, 2, erode=True)
    wide = _run(_run(part, 1, -2, 2, erode=True), 0, -1, 1, erode=True)
    return bool((tall & wide).any())


def binary_opening_2x2(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure=np.ones((2, 2)))``: an even structure is anchored at
    its second element, so the erosion looks back (-1, 0) and the dilation, mirrored, ahead (0, +1)."""
    return _rect(_rect(mask, -1, 0, erode=True), 0, 1, erode=False)


def binary_closing_3x3(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_closing(mask, structure=np.ones((3, 3)))``."""
    return _rect(_rect(mask, -1, 1, erode=False), -1, 1, erode=True)


# --- 4-6. residual, regions, kinds ----------------------------------------------------------------


def compare(ref: Picture, new: Picture) -> Change:
    """What is in ``new`` that is not in ``ref``, after camera shift, light and noise are accounted for."""
    return _compare(ref, new, classify=True)


def objects_mask(ref: Picture, new: Picture) -> np.ndarray:
    """``compare(ref, new).mask``, the same pixels, without the rest of a ``Change``: the objects' kinds
    (colours, shapes, labels) and the edge ratio. The "more mail" check needs only the mask."""
    mask = _compare(ref, new, classify=False).mask
    assert mask is not None
    return mask


def _compare(ref: Picture, new: Picture, *, classify: bool) -> Change:
    """``compare``; without ``classify``, only the mask and the figures it comes from are right (every
    object's kind is "object", the edge ratio 1.0)."""
    dy, dx = estimate_shift(ref, new)
    ref_log = ref.log if (dy, dx) == (0, 0) else _shifted(ref.log, dy, dx)  # only read: no copy needed
    coef = _light_coefficients(new.log - ref_log)
    # 5×5 neighbourhood tolerance (roll and scale move the corners by a pixel or two): the smallest
    # residual over the nearby reference pixels, both frames lightly blurred against noise and JPEG blocks.
    # The reference with the light field, blurred: its own blur (worked out once per reference) moved by
    # the shift, plus the field's blur. Blurring the shifted frame instead differs only within 4 px of
    # the edge it was moved from, where the shift invented the pixels anyway.
    new_soft = new.soft_log
    h, w = new_soft.shape[:2]
    ref_soft = (ref.soft_log if (dy, dx) == (0, 0) else _shifted(ref.soft_log, dy, dx)) + _soft_light(coef, h, w)
    residual, best = _best_neighbour(new_soft, ref_soft)
    noise = min(max(_median(residual.ravel()) * 1.4826, 0.01), _NOISE_CAP)
    changed = residual > max(_ABS_CHANGE, _NOISE_K * noise)
    changed = binary_closing_3x3(binary_opening_2x2(changed))
    by, bx = abs(dy) + 3, abs(dx) + 3  # borders: pixels shifted in from outside the reference's view
    changed[:by, :] = changed[-by:, :] = False
    changed[:, :bx] = changed[:, -bx:] = False
    labels, count = ndimage.label(changed)
    total = changed.size
    regions: list[Region] = []
    mask = np.zeros_like(changed)
    # edges of lightly blurred frames: sensor noise at night is not "new print"
    g_new = new.edges
    g_ref = ref.edges if (dy, dx) == (0, 0) else _shifted(ref.edges, dy, dx)  # as ref_soft: the edges moved
    light = 0.0
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        part = labels[slices] == index
        share = float(part.sum()) / total
        if share < _MIN_REGION:
            continue
        bbox = (slices[1].start, slices[0].start, slices[1].stop, slices[0].stop)
        if not _thick(part):
            continue  # a thin line along an edge: the box's own outline, a pixel off after a roll
        if _is_light(lambda box=slices: _gains(new_soft, ref_soft, best, box), part, g_new[slices], g_ref[slices],
                     noise):
            regions.append(Region(share, "light", bbox))
            light += share
            continue
        regions.append(Region(share, _kind(new.rgb[slices], part, share) if classify else "object", bbox))
        mask[slices] |= part
    return Change(share=float(mask.sum()) / total, regions=regions, mask=mask, shift=(dy, dx), noise=noise,
                  light_share=light, edge_ratio=_edge_ratio(g_ref, g_new, mask) if classify else 1.0)


_NEIGHBOURS = [(sy, sx) for sy in range(-2, 3) for sx in range(-2, 3)]  # ±2 px, row-major


def _best_neighbour(new_soft: np.ndarray, ref_soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the reference pixel within ±2 px that matches ``new_soft`` best: the RMS residual
    over the channels, and which offset it was (an index into ``_NEIGHBOURS``; ``_gains`` gives the
    per-channel signed difference to that best match, where it is needed).

    Candidates in row-major order of the offset, the first best kept (as ``argmin`` over a stack of
    all 25 would), as a running minimum over channel planes: a few (H, W) buffers instead of a
    (25, H, W, 3) stack, and no strided reduction over the 3 channels (the same sums, in the same order).

    Every plane is laid out ``W + 4`` wide, as the edge-padded reference is: a window of the reference
    moved by (sy, sx) is then one contiguous run of it, and each step is one long vector operation
    instead of one per row. The 4 extra columns of each row hold wrapped-around numbers, dropped at the end.
    """
    h, w = new_soft.shape[:2]
    wide = w + 4
    # The reference edge-padded by 2 (= _shifted's repeated edges, once), and one row more than the
    # windows need: the last window's extra columns run 4 numbers past the frame.
    ref_planes = np.empty((3, h + 5, wide), dtype=ref_soft.dtype)
    ref_planes[:, 2:h + 2, 2:w + 2] = ref_soft.transpose(2, 0, 1)
    ref_planes[:, 2:h + 2, :2] = ref_planes[:, 2:h + 2, 2:3]
    ref_planes[:, 2:h + 2, w + 2:] = ref_planes[:, 2:h + 2, w + 1:w + 2]
    ref_planes[:, :2] = ref_planes[:, 2:3]
    ref_planes[:, h + 2:] = ref_planes[:, h + 1:h + 2]
    ref_planes = ref_planes.reshape(3, -1)
    new_planes = np.zeros((3, h, wide), dtype=ref_soft.dtype)
    new_planes[:, :, :w] = new_soft.transpose(2, 0, 1)
    new_planes = new_planes.reshape(3, -1)
    size = h * wide
    signed = np.empty_like(new_planes)
    error = np.empty(size, dtype=new_planes.dtype)
    best_error = np.empty_like(error)
    better = np.empty(size, dtype=bool)
    best = np.zeros(size, dtype=np.int8)
    marks = np.empty_like(best)
    for index, (sy, sx) in enumerate(_NEIGHBOURS):
        start = (2 - sy) * wide + 2 - sx  # the padded reference's pixel (2 - sy, 2 - sx): new's (0, 0) moved
        np.subtract(new_planes, ref_planes[:, start:start + size], out=signed)
        np.multiply(signed, signed, out=signed)
        np.add(signed[0], signed[1], out=error)
        np.add(error, signed[2], out=error)
        np.divide(error, 3, out=error)  # the mean over the channels, as (signed**2).mean(axis=-1) gives it
        if index == 0:
            best_error[...] = error
            continue
        np.less(error, best_error, out=better)
        np.minimum(best_error, error, out=best_error)
        # the offset, not its 3 differences (taken again where needed), without a masked write: the
        # offsets only grow, so where this one is better it is also the largest yet (0 or index, then max)
        np.multiply(better.view(np.int8), index, out=marks)
        np.maximum(best, marks, out=best)
    return np.sqrt(best_error.reshape(h, wide)[:, :w]), best.reshape(h, wide)[:, :w]


def _gains(new_soft: np.ndarray, ref_soft: np.ndarray, best: np.ndarray, where: tuple[slice, slice]) -> np.ndarray:
    """The per-channel signed difference (log gain) of ``new_soft`` to its best match in ``ref_soft``
    (``_best_neighbour``'s offsets ``best``) inside the box ``where``: the very subtraction it made."""
    h, w = new_soft.shape[:2]
    ys, xs = np.arange(h)[where[0], None], np.arange(w)[None, where[1]]
    offsets = np.array(_NEIGHBOURS)[best[where]]
    # the padded reference's repeated edges are the nearest pixel inside
    matched = ref_soft[np.clip(ys - offsets[..., 0], 0, h - 1), np.clip(xs - offsets[..., 1], 0, w - 1)]
    return new_soft[where] - matched


def _edge_ratio(g_ref: np.ndarray, g_new: np.ndarray, objects: np.ndarray) -> float:
    """How sharp the reference's strongest edges (top 3 %, away from new objects) still are."""
    inner = np.zeros_like(objects)
    inner[MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT] = True
    usable = inner & ~dilated(objects, 3)
    if usable.sum() < 100:
        return 1.0
    strongest = usable & (g_ref >= np.percentile(g_ref[usable], 97))
    # tolerate the camera's small shift and roll: the strongest new edge within ±2 px (only where asked)
    near_new = _filter_at(g_new, strongest, np.max)
    ref_strength = _median(g_ref[strongest])
    return _median(near_new) / ref_strength if ref_strength > 0.05 else 1.0


_LIGHT_SPREAD = 0.12  # log-gain spread inside a patch of light (sun, shadow) at most
_LIGHT_TINT = 0.45  # difference between the channels' gains: sunlight is warm, paper on a red floor is not light
_LIGHT_NEW_EDGES = 0.04  # share of a patch with edges the reference lacks: noise makes a few, print many


def _is_light(gains: Callable[[], np.ndarray], part: np.ndarray, g_new: np.ndarray, g_ref: np.ndarray,
              noise: float) -> bool:
    """A change of light only: one even gain, about the same in every channel, and the texture kept.

    Light multiplies, so in log intensity its edges inside the patch are the reference's edges.
    An object brings edges of its own (print, a stamp, tape, a label) and hides the floor's.

    ``gains``: the box's per-channel log gains (``_gains``), worked out only if the edges leave the
    question open. The tests run cheapest first and stop at the first that fails: most objects fail on
    their edges, the rest mostly on their gain; the answer is that of all of them.
    """
    inner = _cross(part, 2, erode=True)  # = ndimage.binary_erosion(part, iterations=2)
    if inner.sum() < 12:
        return False
    core = _cross(inner, 2, erode=True)  # eroded 4 times: away from the patch's own (soft) outline
    if core.sum() < 12:
        core = inner
    tolerance = max(0.12, 4 * noise)
    inside = g_new[core]
    ref_max = ndimage.maximum_filter(g_ref, size=5)[core]  # the core is most of its box: filter it all
    if not float((inside > ref_max + tolerance).mean()) < _LIGHT_NEW_EDGES:
        return False  # edges of its own
    ref_min = ndimage.minimum_filter(g_ref, size=5)[core]
    if not float((inside < ref_min - tolerance).mean()) < 0.02:
        return False  # the floor's edges hidden
    # per-pixel gains, median-smoothed: texture under a misaligned pixel or two is not "uneven light"
    values = _median_at(gains(), core)  # (n, 3) log gains
    gain = _column_medians(values)
    tint = float(gain.max() - gain.min())
    # Light's colour changes smoothly across the spectrum: green sits between red and blue, and a
    # patch that brightens (sun) is neutral or warm, never cool; paper on a coloured floor need not be.
    red, green, blue = (float(g) for g in gain)
    light_like = abs(green - (red + blue) / 2) <= 0.1 and (red - blue >= -0.05 if gain.mean() > 0 else True)
    if not (light_like and tint < _LIGHT_TINT and abs(float(gain.mean())) < 0.75):
        return False
    # about a plane: the light field fitted around a big shadow leaves a gentle ramp inside it
    ys, xs = np.nonzero(core)
    plane = np.stack([np.ones_like(xs), xs, ys], axis=1).astype(np.float32)
    coef, *_ = np.linalg.lstsq(plane, values, rcond=None)
    spread = _column_medians(np.abs(values - plane @ coef)).max() * 1.4826
    return bool(spread < max(_LIGHT_SPREAD, 3 * noise))


def _column_medians(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` of an (n, k) float32 array, column by column (``_median``)."""
    return np.array([_median(column) for column in np.ascontiguousarray(values.T)], dtype=values.dtype)


def _reflected(values: np.ndarray, r: int) -> np.ndarray:
    """``np.pad(values, r, mode="symmetric")`` over the first two axes (d c b a | a b c d | d c b a),
    scipy's "reflect" edge: four slice copies instead of np.pad's general machinery (~0.1 ms a call)."""
    h, w = values.shape[:2]
    if h < r or w < r:
        return np.pad(values, [(r, r), (r, r)] + [(0, 0)] * (values.ndim - 2), mode="symmetric")
    out = np.empty((h + 2 * r, w + 2 * r) + values.shape[2:], dtype=values.dtype)
    out[r:r + h, r:r + w] = values
    out[r:r + h, :r] = values[:, :r][:, ::-1]
    out[r:r + h, r + w:] = values[:, w - r:][:, ::-1]
    out[:r] = out[r:2 * r][::-1]
    out[r + h:] = out[h:h + r][::-1]
    return out


def _filter_at(values: np.ndarray, where: np.ndarray, reduce: Callable[..., np.ndarray], size: int = 5) -> np.ndarray:
    """``ndimage.maximum_filter(values, size)[where]`` (``reduce`` np.max) or the minimum filter (np.min)
    of a 2-D array, worked out only where asked (a few pixels of the frame)."""
    windows = sliding_window_view(_reflected(values, size // 2), (size, size))
    return reduce(windows[where], axis=(1, 2))


def _median_at(values: np.ndarray, where: np.ndarray, size: int = 5) -> np.ndarray:
    """``ndimage.median_filter(values, size=(size, size, 1))[where]``, worked out only where asked.

    The same numbers: a median is one of its window's values, and scipy's default edge ("reflect",
    d c b a | a b c d) is numpy's "symmetric" padding. A patch's core is a fraction of its box.
    """
    r = size // 2
    windows = sliding_window_view(_reflected(values, r), (size, size), axis=(0, 1))  # (H, W, C, size, size)
    ys, xs = np.nonzero(where)
    picked = windows[ys, xs].reshape(len(ys), values.shape[2], size * size)
    middle = size * size // 2
    return np.partition(picked, middle, axis=-1)[..., middle]


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = rgb[..., 0] / 255, rgb[..., 1] / 255, rgb[..., 2] / 255
    v = np.maximum(np.maximum(r, g), b)
    c = v - np.minimum(np.minimum(r, g), b)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0)
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    return np.where(c > 0, h, 0), s, v


PACKAGE_MIN_SHARE = 0.07  # a parcel covers at least this share of the frame; a brown envelope less
_BROWN_SHARE = 0.45  # of an object's pixels in cardboard colours to call it a parcel (tape and labels are not)
BIG_SOLID_SHARE = 0.1  # one solid, plain block this large is a parcel or a mailer bag, not an envelope
# Brown is no proof of a parcel: kraft envelopes are brown too, and two or three of them overlapping make
# a parcel-sized brown blob. A parcel shows a shipping label (a bright patch inside its outline), or is
# one big rectangular block; a pile of envelopes at different angles fills its enclosing rectangle poorly.
BIG_BROWN_SHARE = 0.12  # a brown block this large and rectangular is a parcel even with its label out of view
_RECTANGULAR = 0.7  # area over the smallest enclosing rectangle (any angle): one block, not a pile
_LABEL_LIFT = 0.25  # log units a label is brighter than the parcel around it (white paper on cardboard)
_LABEL_SATURATION = 0.25  # a label is white or grey paper
_LABEL_SIZE = (0.03, 0.35)  # share of the object a label covers: smaller is a glint, larger another envelope
_LABEL_ENCLOSED = 0.8  # share of the ring around the patch inside the object: a label sits on the parcel;
# a white envelope overlapping a brown one sticks out of it


def _solidity(part: np.ndarray) -> float:
    """Area over convex-hull area: a parcel is one block (≈1), a pile of letters is ragged."""
    points = np.argwhere(part)
    if len(points) < 10:
        return 0.0
    try:
        hull = spatial.ConvexHull(points)
    except spatial.QhullError:
        return 0.0
    return float(len(points)) / max(float(hull.volume), 1.0)


def _kind(rgb: np.ndarray, part: np.ndarray, share: float) -> str:
    h, s, v = _hsv(rgb[part])
    brown = (h >= 12) & (h <= 48) & (s >= 0.22) & (s <= 0.8) & (v >= 0.22) & (v <= 0.92)
    colourful = (s >= 0.35) & ~brown
    colour_spread = float(np.std(h[s >= 0.3])) if (s >= 0.3).sum() > 20 else 0.0
    if brown.mean() >= _BROWN_SHARE and share >= PACKAGE_MIN_SHARE:
        if _has_label(rgb, part) or (share >= BIG_BROWN_SHARE and _rectangularity(part) >= _RECTANGULAR):
            return "package"
        return "letter"  # kraft envelopes
    if colourful.mean() >= 0.35 and (colour_spread > 25 or colourful.mean() >= 0.6):
        return "magazine" if share >= 0.07 else "flyer"
    if share >= BIG_SOLID_SHARE and _solidity(part) >= 0.88 and _rectangularity(part) >= _RECTANGULAR:
        return "package"
    return "letter"


def _rectangularity(part: np.ndarray) -> float:
    """Area over the smallest rectangle (at any angle) around it: a parcel ≈ 1, overlapping envelopes less.

    The smallest enclosing rectangle has a side on the convex hull (rotating calipers), so the hull's
    edge directions are the only candidates. Pixel centres span one pixel less than the pixels: + 1.
    """
    points = np.argwhere(part).astype(np.float64)
    if len(points) < 10:
        return 0.0
    try:
        hull = points[spatial.ConvexHull(points).vertices]
    except spatial.QhullError:
        return 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    keep = lengths > 0
    along = edges[keep] / lengths[keep, None]
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)
    a, b = hull @ along.T, hull @ across.T  # (vertices, directions)
    areas = (np.ptp(a, axis=0) + 1) * (np.ptp(b, axis=0) + 1)
    return float(len(points)) / float(areas.min())


def _has_label(rgb: np.ndarray, part: np.ndarray) -> bool:
    """A shipping label: a patch of white or grey paper, clearly brighter than the object, inside its outline."""
    luma = np.log(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) + _LOG_FLOOR)
    _, s, _ = _hsv(rgb)
    bright = part & (luma - float(np.median(luma[part])) > _LABEL_LIFT) & (s < _LABEL_SATURATION)
    # closed, so the label's printed lines do not break it into pieces
    bright = binary_closing_3x3(np.pad(bright, 2))[2:-2, 2:-2] & part
    labels, count = ndimage.label(bright)
    if count == 0:
        return False
    area = float(part.sum())
    outline = np.pad(part, 3)
    for index, size in enumerate(ndimage.sum(bright, labels, range(1, count + 1)), start=1):
        if not _LABEL_SIZE[0] <= size / area <= _LABEL_SIZE[1]:
            continue
        patch = np.pad(labels == index, 3)
        ring = dilated(patch, 2) & ~patch
        if float((ring & outline).sum()) / max(1.0, float(ring.sum())) >= _LABEL_ENCLOSED:
            return True
    return False


LETTER_SHARE = 0.05  # about one envelope's share of the frame, to turn letter area into a count


def categories(change: Change) -> dict[str, int]:
    """Counts by category from the object regions (letters by area: overlapping envelopes merge)."""
    counts = empty_counts()
    letter_area = 0.0
    for region in change.objects:
        if region.kind == "letter":
            letter_area += region.share
        else:
            counts[region.kind] += 1
    if letter_area > 0:
        counts["letter"] = int(min(6, max(1, round(letter_area / LETTER_SHARE))))
    return counts
