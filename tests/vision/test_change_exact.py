"""The offline comparison's faster pieces give the very numbers of the plain numpy/scipy forms they replace.

Detection was tuned on those numbers (bench/vision_accuracy.py); a speed-up that moved a residual or a
median by a rounding step could move a verdict near a threshold. Here each piece meets its plain form on
frames of the bench's mailboxes, bit for bit.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cloud.vision import change
from cloud.vision.change import (
    _BASIS,
    _MIN_THICKNESS,
    MAX_SHIFT,
    _best_neighbour,
    _block_sums,
    _blur,
    _column_medians,
    _cross,
    _filter_at,
    _gains,
    _median,
    _median_at,
    _reflected,
    _shifted,
    _thick,
    binary_closing_3x3,
    binary_opening_2x2,
    compare,
    estimate_shift,
    light_field,
    objects_mask,
    picture,
    picture_from_arrays,
    picture_from_png,
)
from cloud.vision.frames import Frames, reference_key
from cloud.vision.prep import open_jpeg
from mailcam.mailboxes import Item, Mailbox, Wake, random_contents


def _pair(seed: int):
    box = Mailbox(seed)
    empty = picture(box.frame([], Wake(0)))
    mail = picture(box.frame([Item("letter", seed), Item("package", seed + 1)], Wake(1, night=seed % 2 == 1)))
    return empty, mail


def _plain_best_neighbour(new_soft: np.ndarray, ref_soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = new_soft.shape[:2]
    padded = np.pad(ref_soft, ((2, 2), (2, 2), (0, 0)), mode="edge")
    signed = np.stack([new_soft - padded[2 - sy:2 - sy + h, 2 - sx:2 - sx + w]
                       for sy in range(-2, 3) for sx in range(-2, 3)])
    errors = (signed**2).mean(axis=3)
    best = np.argmin(errors, axis=0)
    residual = np.sqrt(np.take_along_axis(errors, best[None], axis=0)[0])
    return residual, np.take_along_axis(signed, best[None, ..., None], axis=0)[0]


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_best_neighbour_matches_the_stacked_argmin(seed):
    empty, mail = _pair(seed)
    ref_soft = ndimage.gaussian_filter(empty.log, (1.0, 1.0, 0))
    ref_soft[:10, :10] = mail.soft_log[:10, :10]  # exact ties: the first offset must win, as argmin's
    residual, best = _best_neighbour(mail.soft_log, ref_soft)
    plain_residual, plain_raw = _plain_best_neighbour(mail.soft_log, ref_soft)
    assert np.array_equal(residual, plain_residual)
    assert np.array_equal(_gains(mail.soft_log, ref_soft, best, np.s_[:, :]), plain_raw)
    box = np.s_[1:37, 90:160]  # a region's box, at the frame's edge
    assert np.array_equal(_gains(mail.soft_log, ref_soft, best, box), plain_raw[box])


def _plain_estimate_shift(ref, new) -> tuple[int, int]:
    """Every candidate shift costed in full, the first smallest taken."""
    g_ref, g_new = ref.shift_gradients, new.shift_gradients
    m = MAX_SHIFT + 1
    h, w = g_new.shape
    target = g_new[m:h - m, m:w - m]
    shifts = [(dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1) for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)]
    costs = [float(np.abs(g_ref[m - dy:h - m - dy, m - dx:w - m - dx] - target).mean())
             * (1 + 0.01 * (dy * dy + dx * dx)) for dy, dx in shifts]
    return shifts[int(np.argmin(costs))]


def _moved(frame, dy: int, dx: int):
    """The frame as a camera moved by (dy, dx) would see it (edges repeated)."""
    return picture_from_arrays(_shifted(frame.rgb, dy, dx), frame.mean, frame.sharpness)


@pytest.mark.parametrize("seed", range(1000, 1012))
def test_shift_search_matches_costing_every_candidate(seed):
    empty, mail = _pair(seed)
    for ref, new in ((empty, mail), (mail, empty), (empty, _moved(mail, 4, -5)), (_moved(empty, -6, 6), mail)):
        assert estimate_shift(ref, new) == _plain_estimate_shift(ref, new)


def test_shift_search_keeps_the_first_of_equal_costs():
    """A featureless frame costs the same at every shift: the first candidate wins, as argmin's."""
    flat = picture_from_arrays(np.full((120, 160, 3), 90, dtype=np.float32), 90.0, 0.0)
    assert estimate_shift(flat, flat) == _plain_estimate_shift(flat, flat) == (-MAX_SHIFT, -MAX_SHIFT)


def _plain_light_field(diff: np.ndarray) -> np.ndarray:
    a = _BASIS[::3]
    d = diff.reshape(-1, 3)[::3]
    keep = np.ones(len(a), dtype=bool)
    coef = np.zeros((a.shape[1], 3), dtype=np.float32)
    for terms in (3, 3, 6, 6, 6):
        coef = np.zeros((a.shape[1], 3), dtype=np.float32)
        a64 = a[keep, :terms].astype(np.float64)
        coef[:terms] = np.linalg.solve(a64.T @ a64, a64.T @ d[keep].astype(np.float64))
        residual = np.abs(d - a @ coef).max(axis=1)
        keep = residual <= max(3 * float(np.median(residual[keep])) * 1.4826, 0.06)
        if keep.sum() < a.shape[1] * 10:
            break
    return (_BASIS @ coef).reshape(diff.shape)


@pytest.mark.parametrize("seed", [3, 8, 21, 1004, 1007])
def test_light_field_matches_the_plain_fit(seed):
    empty, mail = _pair(seed)
    dy, dx = estimate_shift(empty, mail)
    diff = mail.log - _shifted(empty.log, dy, dx)
    assert np.array_equal(light_field(diff), _plain_light_field(diff))


@pytest.mark.parametrize("length", [1, 2, 7, 6400, 6401])
def test_median_is_numpys(length):
    values = np.random.default_rng(length).normal(size=length).astype(np.float32)
    values[: length // 3] = values[-1]  # repeated values around the middle
    assert _median(values) == float(np.median(values))


@pytest.mark.parametrize("seed", [3, 8])
def test_median_at_core_pixels_matches_the_full_median_filter(seed):
    empty, mail = _pair(seed)
    gains = (mail.log - empty.log)[20:90, 30:140]
    core = np.zeros(gains.shape[:2], dtype=bool)
    core[::3, 1::2] = True
    core[:2, :] = core[-2:, :] = True  # the box's edges, where the filter reflects
    assert np.array_equal(_median_at(gains, core), ndimage.median_filter(gains, size=(5, 5, 1))[core])


def test_a_kept_frame_is_the_decoded_frame():
    box = Mailbox(11)
    image = box.frame([Item("letter", 1)], Wake(1))
    frames = Frames()
    decoded = picture(image)
    frames.keep_frame("sha", decoded)
    kept = frames.frame("sha")
    assert kept is not None
    for name in ("rgb", "log", "luma"):
        assert np.array_equal(getattr(kept, name), getattr(decoded, name))
    assert (kept.mean, kept.sharpness) == (decoded.mean, decoded.sharpness)
    mask = np.zeros((120, 160), dtype=bool)
    mask[30:70, 40:99] = True
    frames.keep_mask("ref", "sha", mask)
    kept_mask = frames.mask("ref", "sha")
    assert kept_mask is not None and np.array_equal(kept_mask, mask)
    assert frames.mask("other", "sha") is None


def _masks():
    """Random masks, sparse to dense, blobby and speckled, down to one pixel wide, and a real change."""
    rng = np.random.default_rng(7)
    for shape in [(120, 160), (37, 51), (5, 3), (1, 9), (2, 2), (1, 1)]:
        for density in (0.1, 0.5, 0.9):
            mask = rng.random(shape) < density
            yield mask
            yield ndimage.binary_dilation(mask)
            yield ndimage.binary_dilation(mask, iterations=3)
    empty, mail = _pair(4)
    yield np.abs(mail.luma - empty.luma) > 0.2


def test_binary_morphology_is_scipys():
    for mask in _masks():
        assert np.array_equal(binary_opening_2x2(mask), ndimage.binary_opening(mask, structure=np.ones((2, 2))))
        assert np.array_equal(binary_closing_3x3(mask), ndimage.binary_closing(mask, structure=np.ones((3, 3))))
        for n in (1, 2, 3, 4):
            assert np.array_equal(_cross(mask, n, erode=True), ndimage.binary_erosion(mask, iterations=n))
            assert np.array_equal(_cross(mask, n, erode=False), ndimage.binary_dilation(mask, iterations=n))
            assert np.array_equal(change.dilated(mask, n), ndimage.binary_dilation(mask, iterations=n))


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -2), (-6, 6), (6, 0), (0, -5), (200, -300)])
def test_shifted_is_the_clipped_gather(dy, dx):
    empty, _ = _pair(5)
    for a in (empty.log, empty.luma):
        h, w = a.shape[:2]
        plain = a[np.clip(np.arange(h) - dy, 0, h - 1)][:, np.clip(np.arange(w) - dx, 0, w - 1)]
        assert np.array_equal(_shifted(a, dy, dx), plain)


@pytest.mark.parametrize("seed", [3, 8])
def test_filters_at_pixels_match_scipys(seed):
    empty, mail = _pair(seed)
    for box in (np.s_[:, :], np.s_[40:47, 0:60], np.s_[0:2, 5:9]):
        values = mail.edges[box]
        where = np.random.default_rng(seed).random(values.shape) < 0.3
        where[0, :] = where[-1, :] = True  # the edges, where the filters reflect
        assert np.array_equal(_filter_at(values, where, np.max), ndimage.maximum_filter(values, size=5)[where])
        assert np.array_equal(_filter_at(values, where, np.min), ndimage.minimum_filter(values, size=5)[where])


def test_column_medians_are_numpys():
    values = np.random.default_rng(2).normal(size=(101, 3)).astype(np.float32)
    for rows in (values, values[:100], values[:1]):
        medians = _column_medians(rows)
        assert medians.dtype == np.float32 and np.array_equal(medians, np.median(rows, axis=0))


@pytest.mark.parametrize("seed", [3, 8])
def test_blur_is_scipys_gaussian_filter(seed):
    empty, mail = _pair(seed)
    for sigma in (0.6, 1.0, 2.0):
        assert np.array_equal(_blur(mail.luma, sigma), ndimage.gaussian_filter(mail.luma, sigma))
        assert np.array_equal(_blur(mail.log, sigma), ndimage.gaussian_filter(mail.log, (sigma, sigma, 0)))


def test_thickness_is_the_distance_transforms():
    for mask in _masks():
        for part in (mask, ndimage.binary_opening(mask), ndimage.binary_erosion(mask)):
            expected = float(ndimage.distance_transform_edt(np.pad(part, 1)).max()) >= _MIN_THICKNESS
            assert _thick(part) == expected


@pytest.mark.parametrize("shape", [(120, 160), (7, 9, 3), (2, 2), (1, 5, 3), (3, 1)])
def test_reflected_is_symmetric_padding(shape):
    values = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
    for r in (0, 1, 2):
        pad = [(r, r), (r, r)] + [(0, 0)] * (len(shape) - 2)
        assert np.array_equal(_reflected(values, r), np.pad(values, pad, mode="symmetric"))


def test_a_kept_reference_is_the_decoded_reference():
    """A job's references come from the process's Frames: decoded once, then the same picture, read-only."""
    box = Mailbox(12)
    decoded = picture(box.frame([], Wake(0)))
    png = decoded.to_png()
    frames = Frames()
    kept = frames.reference(reference_key(png), png, decoded.mean, decoded.sharpness)
    plain = picture_from_png(png, decoded.mean, decoded.sharpness)
    for name in ("rgb", "log", "luma"):
        assert np.array_equal(getattr(kept, name), getattr(plain, name))
        assert not getattr(kept, name).flags.writeable
    assert (kept.mean, kept.sharpness) == (plain.mean, plain.sharpness)
    assert frames.reference(reference_key(png), png, decoded.mean, decoded.sharpness) is kept
    other = frames.reference(reference_key(png), png, decoded.mean + 1, decoded.sharpness)
    assert other is not kept and other.mean == decoded.mean + 1
    mail = picture(box.frame([Item("letter", 3)], Wake(1)))
    assert compare(kept, mail).share == compare(plain, mail).share


def test_block_sums_are_the_sums_of_each_block():
    values = np.random.default_rng(4).random((13, 17)).astype(np.float32)
    sums = _block_sums(values, 4)
    assert sums.shape == (10, 14)
    for y, x in [(0, 0), (9, 13), (3, 7)]:
        assert sums[y, x] == pytest.approx(float(values[y:y + 4, x:x + 4].astype(np.float64).sum()), rel=1e-12)


def _plain_is_light(raw, part, g_new, g_ref, noise) -> bool:
    """The light test as it was: every measure worked out, then all the conditions at once."""
    inner = ndimage.binary_erosion(part, iterations=2)
    if inner.sum() < 12:
        return False
    core = ndimage.binary_erosion(part, iterations=4)
    if core.sum() < 12:
        core = inner
    values = ndimage.median_filter(raw, size=(5, 5, 1))[core]
    gain = np.median(values, axis=0)
    ys, xs = np.nonzero(core)
    plane = np.stack([np.ones_like(xs), xs, ys], axis=1).astype(np.float32)
    coef, *_ = np.linalg.lstsq(plane, values, rcond=None)
    spread = np.median(np.abs(values - plane @ coef), axis=0).max() * 1.4826
    tint = float(gain.max() - gain.min())
    red, green, blue = (float(g) for g in gain)
    light_like = abs(green - (red + blue) / 2) <= 0.1 and (red - blue >= -0.05 if gain.mean() > 0 else True)
    tolerance = max(0.12, 4 * noise)
    ref_max = ndimage.maximum_filter(g_ref, size=5)[core]
    ref_min = ndimage.minimum_filter(g_ref, size=5)[core]
    edges_new = float((g_new[core] > ref_max + tolerance).mean())
    edges_lost = float((g_new[core] < ref_min - tolerance).mean())
    return bool(light_like and spread < max(0.12, 3 * noise) and tint < 0.45
                and edges_new < 0.04 and edges_lost < 0.02 and abs(float(gain.mean())) < 0.75)


def _answering_as(monkeypatch, name: str, plain) -> list:
    """``change.<name>`` checked call by call against ``plain`` (same arguments, same answer); the answers."""
    answers = []
    fast = getattr(change, name)

    def both(*args):
        answer = fast(*args)
        assert answer == plain(*args)
        answers.append(answer)
        return answer

    monkeypatch.setattr(change, name, both)
    return answers


def test_light_test_answers_as_the_plain_one(monkeypatch):
    """Every region compare asks about, on mailboxes with sun, shadows and mail: the same answer."""
    answers = _answering_as(monkeypatch, "_is_light", lambda gains, *rest: _plain_is_light(gains(), *rest))
    for seed in range(1000, 1008):
        box = Mailbox(seed)
        empty = picture(box.frame([], Wake(0)))
        for n, kind in enumerate(("empty", "letters", "package", "magazine")):
            items = random_contents(random.Random(seed * 10 + n), kind)
            compare(empty, picture(box.frame(items, Wake(n + 1, night=n == 3))))
    assert True in answers and False in answers  # patches of light and objects both met


def _plain_has_label(rgb, part):
    luma = np.log(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) + change._LOG_FLOOR)
    _, s, _ = change._hsv(rgb)
    bright = part & (luma - float(np.median(luma[part])) > change._LABEL_LIFT) & (s < change._LABEL_SATURATION)
    bright = ndimage.binary_closing(np.pad(bright, 2), structure=np.ones((3, 3)))[2:-2, 2:-2] & part
    labels, count = ndimage.label(bright)
    area = float(part.sum())
    outline = np.pad(part, 3)
    for index, size in enumerate(ndimage.sum(bright, labels, range(1, count + 1)), start=1):
        if not change._LABEL_SIZE[0] <= size / area <= change._LABEL_SIZE[1]:
            continue
        patch = np.pad(labels == index, 3)
        ring = ndimage.binary_dilation(patch, iterations=2) & ~patch
        if float((ring & outline).sum()) / max(1.0, float(ring.sum())) >= change._LABEL_ENCLOSED:
            return True
    return False


def test_label_check_answers_as_the_plain_one(monkeypatch):
    """Every brown object compare looks for a shipping label on (parcels, kraft envelopes): the same answer."""
    answers = _answering_as(monkeypatch, "_has_label", _plain_has_label)
    for seed in range(1000, 1030):
        box = Mailbox(seed)
        empty = picture(box.frame([], Wake(0)))
        for n in range(3):
            items = random_contents(random.Random(seed * 10 + n), "package")
            compare(empty, picture(box.frame(items, Wake(n + 1, night=n == 2))))
    assert True in answers and False in answers  # labels found and missed both met


@pytest.mark.parametrize("size", [(320, 240), (322, 240), (400, 300), (321, 241)])
def test_the_working_size_is_the_box_resize(size):
    rng = np.random.default_rng(size[0])
    frames = [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(10)]
    box = Mailbox(14)
    frames += [Image.open(io.BytesIO(box.frame(random_contents(random.Random(n), "letters"), Wake(n)))).convert("RGB")
               .resize(size) for n in range(6)]
    for frame in frames:
        assert np.array_equal(np.asarray(change.work_size(frame)),
                              np.asarray(frame.resize(change.WORK, Image.Resampling.BOX)))


def test_a_prepared_frame_has_the_plain_numbers():
    box = Mailbox(9)
    image = box.frame([Item("magazine", 2)], Wake(3, night=True))
    frame = picture(image)
    rgb = frame.rgb
    assert np.array_equal(frame.log, np.log(rgb + 6.0))
    assert np.array_equal(frame.luma, np.log(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) + 6.0))
    grey = np.asarray(open_jpeg(image, draft_to=(320, 240)).convert("RGB").convert("L")
                      .resize((320, 240), Image.Resampling.BILINEAR), dtype=np.float32)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    assert frame.mean == float(grey.mean())
    assert frame.sharpness == float(lap.var()) / max(float(grey.mean()), 1.0) ** 2


@pytest.mark.parametrize("seed", [2, 5, 13, 30])
def test_the_objects_mask_is_the_compares_mask(seed):
    """The "more mail" check takes only a comparison's mask (``objects_mask``, without the objects'
    kinds): the same pixels as the whole ``compare``'s, for a box's photos against its empty one and
    against each other (mail added, taken, moved; day and night)."""
    box = Mailbox(seed)
    rng = random.Random(seed)
    kinds = ["empty", "letters", "package", "magazine", "letters", "package"]
    photos = [picture(box.frame(random_contents(rng, kind), Wake(n, night=n % 3 == 2)))
              for n, kind in enumerate(kinds)]
    pairs = [(photos[0], p) for p in photos[1:]] + list(zip(photos[1:], photos[2:], strict=False))
    objects = 0
    for ref, new in pairs:
        whole = compare(ref, new)
        assert np.array_equal(objects_mask(ref, new), whole.mask)
        objects += len(whole.objects)
    assert objects > len(pairs)  # masks with objects in them, not only empty ones
