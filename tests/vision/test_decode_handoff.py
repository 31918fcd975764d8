"""A new photo is decoded once: ingest proves it whole with the decode its analysis then uses.

Most of a JPEG decode's CPU is reading its entropy-coded stream, at any scale; ingest must read all
of it anyway (a truncated or corrupt upload is a 4xx), so it decodes at the analysis's scale and
hands the result over (``AppContext.decoded``). A job that finds nothing handed over (another
replica ingested the photo, or a backlog pushed it out) decodes the stored photo itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloud.lru import Lru
from cloud.vision import prep
from cloud.vision.change import picture_and_hash
from mailcam.mailboxes import Item, Mailbox, Wake


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """One entry per JPEG decoded at the analysis's scale (by ingest or a job)."""
    made: list[int] = []
    real = prep.open_jpeg

    def counting(data: bytes, **kwargs):
        if kwargs.get("draft_to") == prep.GREY_SIZE:
            made.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(prep, "open_jpeg", counting)
    return made


def test_a_new_photo_is_decoded_once_from_upload_to_verdict(make_env, decodes):
    env = make_env()
    box = Mailbox(41)
    env.calibrate(env.shoot(box, [], 1))
    decodes.clear()
    capture_id = env.capture(box.frame([Item("letter", 1), Item("magazine", 2)], Wake(2)))
    assert len(decodes) == 1  # ingest's proof
    assert env.run() == 1
    assert len(decodes) == 1  # the analysis used it
    assert len(env.ctx.decoded) == 0  # taken, not kept
    analysis = env.analysis(capture_id)
    assert analysis["status"] == "done" and analysis["mail_detected"] is True


def test_a_photo_ingested_elsewhere_is_decoded_by_its_job(make_env, decodes):
    env = make_env()
    box = Mailbox(42)
    env.calibrate(env.shoot(box, [], 1))
    capture_id = env.capture(box.frame([Item("letter", 1)], Wake(2)))
    env.ctx.decoded.clear()  # as on another replica, or pushed out by a backlog
    decodes.clear()
    assert env.run() == 1
    assert len(decodes) == 1
    assert env.analysis(capture_id)["mail_detected"] is True


def test_the_handed_over_decode_gives_the_very_frame_and_hash():
    box = Mailbox(43)
    wakes = (([], Wake(1)), ([Item("package", 1)], Wake(2)), ([Item("letter", 1)], Wake(3, night=True)))
    for items, wake in wakes:
        jpeg = box.frame(items, wake)
        frame, phash = picture_and_hash(jpeg, prep.analysis_decode(jpeg))
        fresh, fresh_phash = picture_and_hash(jpeg)
        assert phash == fresh_phash
        assert np.array_equal(frame.rgb, fresh.rgb) and frame.mean == fresh.mean
        assert frame.sharpness == fresh.sharpness


def test_handed_over_decodes_are_bounded_and_taken_once():
    kept: Lru[str, int] = Lru(2)
    for n in range(3):
        kept.put(f"sha{n}", n)
    assert len(kept) == 2 and kept.get("sha0") is None  # the oldest went first
    assert kept.take("sha2") == 2 and kept.take("sha2") is None
