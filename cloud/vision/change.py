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
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage, spatial

from cloud.vision.base import empty_counts
from cloud.vision.prep import open_jpeg

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
        return _gradients(ndimage.gaussian_filter(self.luma, 2.0))

    @cached_property
    def edges(self) -> np.ndarray:
        """Gradients of the lightly blurred frame: its edges, not its sensor noise."""
        return _gradients(ndimage.gaussian_filter(self.luma, 0.6))

    @cached_property
    def soft_log(self) -> np.ndarray:
        """The log frame lightly blurred against noise and JPEG blocks."""
        return ndimage.gaussian_filter(self.log, (1.0, 1.0, 0))

    def to_png(self) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.clip(np.rint(self.rgb), 0, 255).astype(np.uint8)).save(out, "PNG")
        return out.getvalue()


def picture(jpeg: bytes) -> Picture:
    """Decode (scaled by the JPEG decoder itself) and prepare a frame."""
    image = open_jpeg(jpeg, draft_to=(320, 240)).convert("RGB")
    grey = np.asarray(image.convert("L").resize((320, 240), Image.Resampling.BILINEAR), dtype=np.float32)
    small = np.asarray(image.resize(WORK, Image.Resampling.BOX), dtype=np.float32)
    return _from_arrays(small, grey)


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
    log = np.log(rgb + _LOG_FLOOR)
    luma = np.log(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) + _LOG_FLOOR)
    mean, sharpness = 0.0, 0.0
    if grey is not None:
        lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
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


# --- 2. camera shift ----------------------------------------------------------------------------


def _gradients(luma: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, 1:-1] = luma[:, 2:] - luma[:, :-2]
    gy[1:-1, :] = luma[2:, :] - luma[:-2, :]
    return np.hypot(gx, gy)


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx), edges repeated (no wrap-around)."""
    h, w = a.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return a[ys][:, xs]


def estimate_shift(ref: Picture, new: Picture) -> tuple[int, int]:
    """The (dy, dx) that moves ``ref`` onto ``new`` best, by agreement of the coarse gradients.

    Blurred first, so a fine periodic texture (a rubber mat's dots) cannot lock onto the wrong period.
    """
    g_ref, g_new = ref.shift_gradients, new.shift_gradients
    m = MAX_SHIFT + 1
    h, w = g_new.shape
    target = g_new[m:h - m, m:w - m]
    shifts = [(dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1) for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)]
    # A small prior for small shifts: a lid moves the camera a pixel or two, and a periodic texture
    # (a mat's dots) must not pull the estimate to a distant period. Inside the margin m a shifted
    # reference is a plain window of it (no edge to repeat): a view, not a copy per candidate; the
    # differences go to one buffer (the same values, without an allocation per candidate).
    diff = np.empty_like(target)
    costs = []
    for dy, dx in shifts:
        np.subtract(g_ref[m - dy:h - m - dy, m - dx:w - m - dx], target, out=diff)
        np.abs(diff, out=diff)
        costs.append(float(diff.mean()) * (1 + 0.01 * (dy * dy + dx * dx)))
    return shifts[int(np.argmin(costs))]


# --- 3. light ------------------------------------------------------------------------------------


def _basis(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = x / (w - 1) * 2 - 1, y / (h - 1) * 2 - 1
    terms = [np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3]
    return np.stack([t.ravel() for t in terms], axis=1)


_BASIS = _basis(WORK[1], WORK[0])
_BASIS_SAMPLE = np.ascontiguousarray(_BASIS[::3])  # the pixels light_field fits to
_BASIS_SAMPLE64 = _BASIS_SAMPLE.astype(np.float64)


def _least_squares(a: np.ndarray, b: np.ndarray, a64: np.ndarray | None = None) -> np.ndarray:
    """``lstsq(a, b)`` by the normal equations in float64: a few smooth terms over thousands of pixels
    are well conditioned, and this is several times cheaper than an SVD per fit. ``a64``: ``a`` in
    float64 already (exact: every float32 is a float64)."""
    a64 = a.astype(np.float64) if a64 is None else a64
    try:
        return np.linalg.solve(a64.T @ a64, a64.T @ b.astype(np.float64))
    except np.linalg.LinAlgError:  # degenerate (e.g. almost no pixels kept): the SVD copes
        return np.linalg.lstsq(a, b, rcond=None)[0]


def light_field(diff: np.ndarray) -> np.ndarray:
    """A smooth per-channel field fitted to ``diff`` (H, W, 3), ignoring the pixels that do not fit."""
    h, w, _ = diff.shape
    if (h, w) == (WORK[1], WORK[0]):
        basis, a, a64 = _BASIS, _BASIS_SAMPLE, _BASIS_SAMPLE64
    else:
        basis = _basis(h, w)
        a = np.ascontiguousarray(basis[::3])
        a64 = a.astype(np.float64)
    d = diff.reshape(-1, 3)[::3]  # every third pixel
    keep = np.ones(len(a), dtype=bool)
    coef = np.zeros((a.shape[1], 3), dtype=np.float32)
    # Plane first, then quadratic, then cubic, each fitted without what the simpler one could not
    # explain: a flexible surface fitted to everything at once bends itself around a big envelope.
    for terms in (3, 3, 6, 6, 6):
        coef = np.zeros((a.shape[1], 3), dtype=np.float32)
        coef[:terms] = _least_squares(a[keep, :terms], d[keep], a64[keep, :terms])
        off = np.abs(d - a @ coef)
        residual = np.maximum(np.maximum(off[:, 0], off[:, 1]), off[:, 2])  # = off.max(axis=1), unstrided
        mad = float(np.median(residual[keep])) * 1.4826
        keep = residual <= max(3 * mad, 0.06)
        if keep.sum() < a.shape[1] * 10:
            break
    return (basis @ coef).reshape(h, w, 3)


# --- 4-6. residual, regions, kinds ----------------------------------------------------------------


def compare(ref: Picture, new: Picture) -> Change:
    """What is in ``new`` that is not in ``ref``, after camera shift, light and noise are accounted for."""
    dy, dx = estimate_shift(ref, new)
    ref_log = _shifted(ref.log, dy, dx)
    field_ = light_field(new.log - ref_log)
    # 5×5 neighbourhood tolerance (roll and scale move the corners by a pixel or two): the smallest
    # residual over the nearby reference pixels, both frames lightly blurred against noise and JPEG blocks.
    new_soft = new.soft_log
    ref_soft = ndimage.gaussian_filter(ref_log + field_, (1.0, 1.0, 0))
    residual, raw = _best_neighbour(new_soft, ref_soft)
    noise = min(max(float(np.median(residual)) * 1.4826, 0.01), _NOISE_CAP)
    changed = residual > max(_ABS_CHANGE, _NOISE_K * noise)
    changed = ndimage.binary_opening(changed, structure=np.ones((2, 2)))
    changed = ndimage.binary_closing(changed, structure=np.ones((3, 3)))
    by, bx = abs(dy) + 3, abs(dx) + 3  # borders: pixels shifted in from outside the reference's view
    changed[:by, :] = changed[-by:, :] = False
    changed[:, :bx] = changed[:, -bx:] = False
    labels, count = ndimage.label(changed)
    total = changed.size
    regions: list[Region] = []
    mask = np.zeros_like(changed)
    # edges of lightly blurred frames: sensor noise at night is not "new print"
    g_new = new.edges
    g_ref = ref.edges if (dy, dx) == (0, 0) else _gradients(ndimage.gaussian_filter(_shifted(ref.luma, dy, dx), 0.6))
    light = 0.0
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        part = labels[slices] == index
        share = float(part.sum()) / total
        if share < _MIN_REGION:
            continue
        bbox = (slices[1].start, slices[0].start, slices[1].stop, slices[0].stop)
        if float(ndimage.distance_transform_edt(np.pad(part, 1)).max()) < _MIN_THICKNESS:
            continue  # a thin line along an edge: the box's own outline, a pixel off after a roll
        if _is_light(raw[slices], part, g_new[slices], g_ref[slices], noise):
            regions.append(Region(share, "light", bbox))
            light += share
            continue
        regions.append(Region(share, _kind(new.rgb[slices], part, share), bbox))
        mask[slices] |= part
    return Change(share=float(mask.sum()) / total, regions=regions, mask=mask, shift=(dy, dx), noise=noise,
                  light_share=light, edge_ratio=_edge_ratio(g_ref, g_new, mask))


def _best_neighbour(new_soft: np.ndarray, ref_soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the reference pixel within ±2 px that matches ``new_soft`` best: the RMS residual
    over the channels, and the per-channel signed difference to that best match (log gain).

    Candidates in row-major order of the offset, the first best kept (as ``argmin`` over a stack of
    all 25 would), as a running minimum over channel planes: a few (H, W) buffers instead of a
    (25, H, W, 3) stack, and no strided reduction over the 3 channels (the same sums, in the same order).
    """
    h, w = new_soft.shape[:2]
    padded = np.pad(ref_soft, ((2, 2), (2, 2), (0, 0)), mode="edge")  # = _shifted's repeated edges, once
    new_planes = np.ascontiguousarray(new_soft.transpose(2, 0, 1))
    ref_planes = np.ascontiguousarray(padded.transpose(2, 0, 1))
    signed = np.empty_like(new_planes)
    squared = np.empty_like(new_planes)
    error = np.empty((h, w), dtype=new_planes.dtype)
    better = np.empty((h, w), dtype=bool)
    best_error: np.ndarray | None = None
    raw = np.empty_like(new_planes)
    for sy in range(-2, 3):
        for sx in range(-2, 3):
            np.subtract(new_planes, ref_planes[:, 2 - sy:2 - sy + h, 2 - sx:2 - sx + w], out=signed)
            np.multiply(signed, signed, out=squared)
            np.add(squared[0], squared[1], out=error)
            np.add(error, squared[2], out=error)
            np.divide(error, 3, out=error)  # the mean over the channels, as (signed**2).mean(axis=-1) gives it
            if best_error is None:
                best_error = error.copy()
                raw[...] = signed
                continue
            np.less(error, best_error, out=better)
            np.minimum(best_error, error, out=best_error)
            np.copyto(raw, signed, where=better)
    assert best_error is not None
    return np.sqrt(best_error), raw.transpose(1, 2, 0)


def _edge_ratio(g_ref: np.ndarray, g_new: np.ndarray, objects: np.ndarray) -> float:
    """How sharp the reference's strongest edges (top 3 %, away from new objects) still are."""
    inner = np.zeros_like(objects)
    inner[MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT] = True
    usable = inner & ~ndimage.binary_dilation(objects, iterations=3)
    if usable.sum() < 100:
        return 1.0
    strongest = usable & (g_ref >= np.percentile(g_ref[usable], 97))
    near_new = ndimage.maximum_filter(g_new, size=5)  # tolerate the camera's small shift and roll
    ref_strength = float(np.median(g_ref[strongest]))
    return float(np.median(near_new[strongest])) / ref_strength if ref_strength > 0.05 else 1.0


_LIGHT_SPREAD = 0.12  # log-gain spread inside a patch of light (sun, shadow) at most
_LIGHT_TINT = 0.45  # difference between the channels' gains: sunlight is warm, paper on a red floor is not light
_LIGHT_NEW_EDGES = 0.04  # share of a patch with edges the reference lacks: noise makes a few, print many


def _is_light(raw: np.ndarray, part: np.ndarray, g_new: np.ndarray, g_ref: np.ndarray, noise: float) -> bool:
    """A change of light only: one even gain, about the same in every channel, and the texture kept.

    Light multiplies, so in log intensity its edges inside the patch are the reference's edges.
    An object brings edges of its own (print, a stamp, tape, a label) and hides the floor's.
    """
    inner = ndimage.binary_erosion(part, iterations=2)
    if inner.sum() < 12:
        return False
    core = ndimage.binary_erosion(part, iterations=4)  # away from the patch's own (soft) outline
    if core.sum() < 12:
        core = inner
    # per-pixel gains, median-smoothed: texture under a misaligned pixel or two is not "uneven light"
    values = _median_at(raw, core)  # (n, 3) log gains
    gain = np.median(values, axis=0)
    # about a plane: the light field fitted around a big shadow leaves a gentle ramp inside it
    ys, xs = np.nonzero(core)
    plane = np.stack([np.ones_like(xs), xs, ys], axis=1).astype(np.float32)
    coef, *_ = np.linalg.lstsq(plane, values, rcond=None)
    spread = np.median(np.abs(values - plane @ coef), axis=0).max() * 1.4826
    tint = float(gain.max() - gain.min())
    # Light's colour changes smoothly across the spectrum: green sits between red and blue, and a
    # patch that brightens (sun) is neutral or warm, never cool; paper on a coloured floor need not be.
    red, green, blue = (float(g) for g in gain)
    light_like = abs(green - (red + blue) / 2) <= 0.1 and (red - blue >= -0.05 if gain.mean() > 0 else True)
    tolerance = max(0.12, 4 * noise)
    ref_max = ndimage.maximum_filter(g_ref, size=5)[core]
    ref_min = ndimage.minimum_filter(g_ref, size=5)[core]
    edges_new = float((g_new[core] > ref_max + tolerance).mean())
    edges_lost = float((g_new[core] < ref_min - tolerance).mean())
    return bool(light_like and spread < max(_LIGHT_SPREAD, 3 * noise) and tint < _LIGHT_TINT
                and edges_new < _LIGHT_NEW_EDGES and edges_lost < 0.02
                and abs(float(gain.mean())) < 0.75)


def _median_at(values: np.ndarray, where: np.ndarray, size: int = 5) -> np.ndarray:
    """``ndimage.median_filter(values, size=(size, size, 1))[where]``, worked out only where asked.

    The same numbers: a median is one of its window's values, and scipy's default edge ("reflect",
    d c b a | a b c d) is numpy's "symmetric" padding. A patch's core is a fraction of its box.
    """
    r = size // 2
    padded = np.pad(values, ((r, r), (r, r), (0, 0)), mode="symmetric")
    windows = sliding_window_view(padded, (size, size), axis=(0, 1))  # (H, W, C, size, size), a view
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
    bright = ndimage.binary_closing(np.pad(bright, 2), structure=np.ones((3, 3)))[2:-2, 2:-2] & part
    labels, count = ndimage.label(bright)
    if count == 0:
        return False
    area = float(part.sum())
    outline = np.pad(part, 3)
    for index, size in enumerate(ndimage.sum(bright, labels, range(1, count + 1)), start=1):
        if not _LABEL_SIZE[0] <= size / area <= _LABEL_SIZE[1]:
            continue
        patch = np.pad(labels == index, 3)
        ring = ndimage.binary_dilation(patch, iterations=2) & ~patch
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
