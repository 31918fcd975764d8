"""The workers' decoded references (cloud.vision.frames): sized by a memory setting, so that the boxes a
process serves are decoded once each, not once per job."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from cloud.vision import frames as frames_module
from cloud.vision.change import picture_from_arrays
from cloud.vision.config import VisionSettings
from cloud.vision.frames import Frames, reference_key, references_for
from mailcam.mailboxes import Item, Mailbox, Wake


@pytest.fixture
def decodes(monkeypatch) -> list[bytes]:
    """Every stored reference the cache decodes (the PNGs handed to picture_from_png)."""
    seen: list[bytes] = []
    decode = frames_module.picture_from_png

    def counting(data: bytes, mean: float, sharpness: float):
        seen.append(data)
        return decode(data, mean, sharpness)

    monkeypatch.setattr(frames_module, "picture_from_png", counting)
    return seen


def test_a_hundred_boxes_with_two_references_each_are_decoded_once_each(decodes):
    """Before: 32 kept; 100 boxes' jobs come round robin, so every job decoded its references again."""
    rng = np.random.default_rng(5)
    stored = []
    for _ in range(200):
        rgb = rng.integers(0, 256, size=(12, 16, 3)).astype(np.float32)
        png = picture_from_arrays(rgb, 100.0, 0.01).to_png()
        stored.append((reference_key(png), png))
    frames = Frames(references=references_for(VisionSettings().decoded_references_mb))
    first = [frames.reference(key, png, 100.0, 0.01) for key, png in stored]
    for _round in range(3):
        again = [frames.reference(key, png, 100.0, 0.01) for key, png in stored]
        assert all(a is b for a, b in zip(again, first, strict=True))
    assert len(decodes) == 200


def test_the_budget_bounds_what_is_kept(decodes):
    stored = []
    for seed in range(4):
        rgb = np.full((12, 16, 3), 10.0 * seed, dtype=np.float32)
        png = picture_from_arrays(rgb, 100.0, 0.01).to_png()
        stored.append((reference_key(png), png))
    frames = Frames(references=references_for(2 * frames_module.REFERENCE_MB))
    for _round in range(2):
        for key, png in stored:
            frames.reference(key, png, 100.0, 0.01)
    assert len(decodes) == 8  # round robin over 4 with room for 2: every look a miss, never more kept


@pytest.mark.parametrize(("budget_mb", "decoded"), [(None, 1), (0.0, 4)])
def test_the_workers_keep_the_reference_for_the_next_job_as_the_setting_says(make_env, decodes, budget_mb, decoded):
    settings = {} if budget_mb is None else {"decoded_references_mb": budget_mb}
    env = make_env(**settings)
    box = Mailbox(31)
    env.calibrate(env.capture(box.frame([], Wake(1))))
    assert env.run() == 1
    for wake in range(2, 5):
        env.ctx.clock.advance(timedelta(minutes=30))
        env.capture(box.frame([Item("letter", wake)], Wake(wake)))
        assert env.run() == 1
    assert len(decodes) == decoded
