"""Pure parts of vision: image preparation, answer parsing, pricing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from cloud.vision.change import picture_and_hash
from cloud.vision.config import VisionSettings
from cloud.vision.openai_provider import parse_answer
from cloud.vision.prep import BadImage, perceptual_hash, phash_distance, prepare_jpeg
from cloud.vision.pricing import UnpricedModel, cost_usd, image_tokens
from mailcam import scenes


def _jpeg_with_exif(size: tuple[int, int]) -> bytes:
    image = Image.new("RGB", size, (120, 90, 60))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS latitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_prepared_image_is_downscaled_and_has_no_exif():
    original = _jpeg_with_exif((1600, 1200))
    assert b"SecretCam" in original
    prepared = prepare_jpeg(original, long_side=512)
    image = Image.open(io.BytesIO(prepared))
    assert image.size == (512, 384)
    assert b"SecretCam" not in prepared and not image.info.get("exif")


def test_small_images_are_not_upscaled():
    prepared = prepare_jpeg(_jpeg_with_exif((320, 240)), long_side=512)
    assert Image.open(io.BytesIO(prepared)).size == (320, 240)


def test_undecodable_image_is_a_bad_image():
    with pytest.raises(BadImage):
        prepare_jpeg(b"\xff\xd8not a jpeg", long_side=512)


def test_phash_is_close_for_the_same_scene_and_far_for_a_changed_one():
    # (A featureless empty box hashes unstably; the offline pre-filter, not the pHash, handles those.)
    letters = perceptual_hash(scenes.render("letters", 1, light=1.0))
    letters_dimmer = perceptual_hash(scenes.render("letters", 1, light=0.97))
    package = perceptual_hash(scenes.render("package", 1))
    assert phash_distance(letters, letters_dimmer) <= 4 < phash_distance(letters, package)


@pytest.mark.parametrize("size", [(480, 360), (640, 480), (800, 600), (1600, 1200), (2047, 1535)])
def test_the_frame_and_the_hash_come_from_one_decode_and_match_the_hash_of_the_photo(size):
    """The analysis takes the hash with its frame (one decode); a hash taken on its own, of the same
    photo, must be the very same, or "unchanged" would compare hashes made two ways."""
    scene = Image.open(io.BytesIO(scenes.render("letters", 3))).resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    scene.save(out, "JPEG", quality=85)
    frame, phash = picture_and_hash(out.getvalue())
    assert phash == perceptual_hash(out.getvalue())
    assert frame.rgb.shape == (120, 160, 3) and frame.sharpness > 0


@pytest.mark.parametrize(
    ("text", "mail"),
    [
        ('{"mail_detected": true, "confidence": 0.9}', True),
        ('```json\n{"mail_detected": false, "confidence": 0.8}\n```', False),
        ('Sure! {"mail_detected": true, "confidence": 1, "image_quality": "Too Dark"} Hope this helps.', True),
    ],
)
def test_parse_accepts_fenced_and_partial_answers(text, mail):
    assert parse_answer(text).mail_detected is mail


@pytest.mark.parametrize(
    "text",
    [None, "", "no json here", '{"mail_detected": true', '{"confidence": 0.5}', '{"mail_detected": 1, "confidence": 7}',
     '{"mail_detected": true, "confidence": 0.5, "package_damage": "crushed"}'],
)
def test_parse_rejects_unusable_answers(text):
    with pytest.raises(ValueError):
        parse_answer(text)


def test_parse_derives_package_and_items_from_counts():
    result = parse_answer('{"mail_detected": true, "confidence": 0.9, "counts": {"letter": 2, "package": 1},'
                          ' "package_damage": "severe", "package_damage_confidence": 0.6}')
    assert result.package_present is True and result.package_damage == "severe"
    assert [i["type"] for i in result.items] == ["letter", "letter", "package"]
    assert result.categories == {"letter": 2, "package": 1, "magazine": 0, "flyer": 0, "postcard": 0}


def test_cost_comes_from_the_pricing_table():
    settings = VisionSettings()
    assert cost_usd(settings, "gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd(settings, "gpt-4o-2024-08-06", 0, 1_000_000) == pytest.approx(10.00)  # a listed snapshot
    # The table is the allow-list: an unlisted snapshot (or any other model) has no price, never $0.
    with pytest.raises(UnpricedModel):
        cost_usd(settings, "gpt-4o-2024-11-20", 0, 1_000_000)
    with pytest.raises(UnpricedModel):
        cost_usd(settings, "llava:13b", 10_000, 10_000)
    assert cost_usd(VisionSettings(local_models=["llava:13b"]), "llava:13b", 10_000, 10_000) == 0.0


def test_image_tokens_follow_openai_accounting():
    assert image_tokens("gpt-4o", "low", 4000, 3000) == 85
    assert image_tokens("gpt-4o", "high", 640, 480) == 85 + 170 * 2  # not upscaled: 2x1 tiles
    assert image_tokens("gpt-4o", "high", 1600, 1200) == 85 + 170 * 4  # to 1024x768: 2x2 tiles
    assert image_tokens("gpt-4o-mini", "low", 640, 480) == 2833  # more tokens per image, not fewer
