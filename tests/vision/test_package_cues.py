"""What tells a parcel from brown envelopes in the offline analyser: a label on it, one rectangular block.

Drawn at the working size (160×120), where ``_kind`` sees an object: its pixels and its mask.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cloud.vision.change import WORK, _has_label, _kind, _rectangularity

CARDBOARD = (175, 125, 78)
KRAFT = (180, 140, 92)
WHITE = (245, 243, 235)
FLOOR = (70, 72, 78)


def _corners(cx: float, cy: float, w: float, h: float, degrees: float) -> list[tuple[float, float]]:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in ((-w / 2, -h / 2), (w / 2, -h / 2),
                                                                 (w / 2, h / 2), (-w / 2, h / 2))]


def _scene(shapes: list[tuple[list[tuple[float, float]], tuple[int, int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and the object mask of ``shapes`` drawn in order on a plain floor."""
    image = Image.new("RGB", WORK, FLOOR)
    mask = Image.new("L", WORK, 0)
    for corners, colour in shapes:
        ImageDraw.Draw(image).polygon(corners, fill=colour)
        ImageDraw.Draw(mask).polygon(corners, fill=255)
    return np.asarray(image, dtype=np.float32), np.asarray(mask) > 0


def _share(part: np.ndarray) -> float:
    return float(part.sum()) / part.size


def test_a_labelled_box_is_a_package():
    rgb, part = _scene([(_corners(80, 60, 60, 36, 20), CARDBOARD), (_corners(70, 56, 22, 11, 20), WHITE)])
    assert _share(part) >= 0.1
    assert _rectangularity(part) > 0.9
    assert _has_label(rgb, part)
    assert _kind(rgb, part, _share(part)) == "package"


def test_overlapping_kraft_envelopes_are_letters():
    rgb, part = _scene([(_corners(66, 60, 48, 22, -25), KRAFT), (_corners(94, 62, 48, 22, 15), KRAFT)])
    assert 0.07 <= _share(part) < 0.12  # parcel-sized brown: the colour rule alone called this a package
    assert _rectangularity(part) < 0.7
    assert not _has_label(rgb, part)
    assert _kind(rgb, part, _share(part)) == "letter"


def test_a_white_envelope_sticking_out_of_a_brown_one_is_no_label():
    rgb, part = _scene([(_corners(72, 60, 50, 24, 0), KRAFT), (_corners(104, 66, 40, 20, 10), WHITE)])
    assert not _has_label(rgb, part)


def test_a_big_rectangular_brown_block_is_a_package_with_its_label_out_of_view():
    rgb, part = _scene([(_corners(80, 62, 70, 40, 12), CARDBOARD)])
    assert _share(part) >= 0.12 and not _has_label(rgb, part)
    assert _kind(rgb, part, _share(part)) == "package"
