"""``cloud.vision.resample``: Pillow's LANCZOS resize as matrix products, the same pixels bit for bit,
and the perceptual hash made with it is ``imagehash.phash``'s."""

from __future__ import annotations

import random

import imagehash
import numpy as np
import pytest
from PIL import Image

from cloud.vision.prep import GREY_SIZE, phash_of, working_images
from cloud.vision.resample import lanczos_resize
from mailcam.mailboxes import Mailbox, Wake, random_contents

KINDS = ["empty", "letters", "package", "magazine"]


def _photos(count: int, seed: int) -> list[Image.Image]:
    """Grey frames of generated mailboxes (held-out seeds), as the analyser makes them."""
    rng = random.Random(seed)
    frames = [Mailbox(seed + n).frame(random_contents(rng, rng.choice(KINDS)), Wake(rng.randrange(1, 60)))
              for n in range(count)]
    return [working_images(frame)[1] for frame in frames]


def _hard_cases() -> list[Image.Image]:
    """Where the rounding and the clipping bite: noise, flat black and white, hard edges (ringing)."""
    rng = np.random.default_rng(7)
    width, height = GREY_SIZE
    checker = ((np.indices((height, width)).sum(axis=0) // 3) % 2 * 255).astype(np.uint8)
    stripes = np.zeros((height, width), np.uint8)
    stripes[:, ::7] = 255
    arrays = [rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(20)]
    arrays += [np.zeros((height, width), np.uint8), np.full((height, width), 255, np.uint8), checker, stripes]
    return [Image.fromarray(a) for a in arrays]


@pytest.mark.parametrize("size", [(32, 32), (8, 8), (160, 120), (33, 17)])
def test_the_resize_is_pillows_bit_for_bit(size):
    for grey in _photos(12, 6000) + _hard_cases():
        expected = np.asarray(grey.resize(size, Image.Resampling.LANCZOS))
        assert np.array_equal(lanczos_resize(np.asarray(grey), size), expected)


def test_the_perceptual_hash_is_imagehashs():
    greys = _photos(60, 8000) + _hard_cases()
    assert [phash_of(grey) for grey in greys] == [str(imagehash.phash(grey)) for grey in greys]
