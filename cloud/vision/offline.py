"""The offline provider: no network, no key; decides from the pixels with Pillow and NumPy.

1. Quality first: a frame too dark or too blurred gets ``image_quality`` set (a retake is asked
   for) and an honest, low confidence instead of a guess.
2. With a learned baseline of this device's empty mailbox (a small grid of cell brightness and
   colour, updated from confident empty results): fit the new frame's brightness to the baseline
   (``new = a * baseline + b``, robustly, so daylight changes are not "mail"), and count the cells
   that still differ. Enough changed cells → something is in the box.
3. Without a baseline (a new device): cells that stand out from the mailbox's own median —
   much brighter (paper) or strongly coloured (cardboard, print) — with confidence capped low.
Changed cells are then sorted by colour into package (cardboard brown), letter (paper-bright)
and magazine (other colour) to estimate counts.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cloud.vision.base import AnalyseRequest, Answer, CallRecord, ImageQuality, VisionResult, empty_counts
from cloud.vision.config import VisionSettings
from cloud.vision.prep import rgb

GRID = (64, 48)
SIGNATURE_VERSION = 1
_BRIGHT_RATIO = 1.45  # cell luminance / frame median above which a cell looks like paper
_CHROMA = 35.0  # max-min of RGB above which a cell is "coloured"
_RESIDUAL = 0.18  # baseline residual (share of the median luminance) meaning "changed"
_LETTER_AREA = 0.06  # share of the frame one envelope covers, roughly
_PACKAGE_MIN = 0.04
_BLUR_BASELINE_RATIO = 0.3


@dataclass
class Frame:
    lum: np.ndarray  # GRID cells, 0..255
    chroma: np.ndarray
    rgb: np.ndarray  # GRID x 3
    mean: float
    sharpness: float


def measure(image: bytes) -> Frame:
    picture = rgb(image, 640)
    cells = np.asarray(picture.resize(GRID, Image.Resampling.BOX), dtype=np.float32)
    gray = np.asarray(picture.convert("L").resize((320, 240), Image.Resampling.BILINEAR), dtype=np.float32)
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    lum = cells @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return Frame(
        lum=lum,
        chroma=cells.max(axis=2) - cells.min(axis=2),
        rgb=cells,
        mean=float(gray.mean()),
        sharpness=float(lap.var()),
    )


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.clip(np.rint(a), 0, 255).astype(np.uint8).tobytes()).decode()


def _decode(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.uint8).astype(np.float32).reshape(GRID[1], GRID[0])


def signature_of(frame: Frame, previous: dict | None, alpha: float) -> dict[str, Any]:
    """A new baseline: the frame itself, or a running average with the previous baseline."""
    lum, chroma, sharp, samples = frame.lum, frame.chroma, frame.sharpness, 1
    if previous and previous.get("version") == SIGNATURE_VERSION:
        lum = (1 - alpha) * _decode(previous["lum"]) + alpha * lum
        chroma = (1 - alpha) * _decode(previous["chroma"]) + alpha * chroma
        sharp = (1 - alpha) * float(previous["sharpness"]) + alpha * sharp
        samples = int(previous.get("samples", 1)) + 1
    return {
        "version": SIGNATURE_VERSION,
        "lum": _encode(lum),
        "chroma": _encode(chroma),
        "sharpness": sharp,
        "samples": samples,
    }


def usable_baseline(baseline: Any) -> dict | None:
    return baseline if isinstance(baseline, dict) and baseline.get("version") == SIGNATURE_VERSION else None


def _changed_vs_baseline(frame: Frame, baseline: dict) -> np.ndarray:
    base_lum, base_chroma = _decode(baseline["lum"]), _decode(baseline["chroma"])
    x, y = base_lum.ravel(), frame.lum.ravel()
    keep = np.ones_like(x, dtype=bool)
    a, b = 1.0, 0.0
    for _ in range(3):  # least squares, then again without the worst-fitting cells (the mail)
        a, b = np.polyfit(x[keep], y[keep], 1)
        residual = np.abs(y - (a * x + b))
        keep = residual <= np.percentile(residual, 70)
    scale = max(float(np.median(frame.lum)), 1.0)
    residual = np.abs(frame.lum - (a * base_lum + b)) / scale
    return (residual > _RESIDUAL) | (frame.chroma - base_chroma > _CHROMA)


def _anomalous(frame: Frame) -> np.ndarray:
    median = max(float(np.median(frame.lum)), 1.0)
    return (frame.lum / median > _BRIGHT_RATIO) | (frame.chroma > _CHROMA)


def _classify(frame: Frame, mask: np.ndarray) -> tuple[dict[str, int], float, float]:
    """Counts by category from the changed cells, the package share and the changed share."""
    r, g, b = frame.rgb[..., 0], frame.rgb[..., 1], frame.rgb[..., 2]
    median = max(float(np.median(frame.lum)), 1.0)
    bright = frame.lum / median > _BRIGHT_RATIO
    brown = (frame.chroma > _CHROMA) & (r > g) & (g > b) & ~bright & ((r - b) > 1.4 * (r - g))
    package_share = float((mask & brown).mean())
    letter_share = float((mask & bright).mean())
    other_share = float((mask & ~bright & ~brown).mean())
    counts = empty_counts()
    if package_share >= _PACKAGE_MIN:
        counts["package"] = max(1, round(package_share / 0.2))
        letter_share -= 0.045  # a parcel's tape and label look like paper
    if letter_share > 0.015:
        counts["letter"] = min(6, max(1, round(letter_share / _LETTER_AREA)))
    if other_share > 0.04 and counts["package"] == 0:
        counts["magazine"] = 1
    return counts, package_share, float(mask.mean())


def _probability(share: float, threshold: float) -> float:
    return 1 / (1 + math.exp(-(share - threshold) / (threshold / 3)))


def _describe(counts: dict[str, int]) -> str:
    parts = [f"{n} {name}{'s' if n > 1 else ''}" for name, n in counts.items() if n]
    return ("Mail in the mailbox: " + ", ".join(parts) + ".") if parts else "Something is in the mailbox."


class OfflineProvider:
    name = "offline"
    model = "offline-v1"

    def __init__(self, settings: VisionSettings) -> None:
        self.settings = settings

    def analyse(self, request: AnalyseRequest) -> Answer:
        frame = measure(request.image)
        result = self.judge(frame, usable_baseline(request.baseline))
        return Answer(result, model=self.model, calls=[CallRecord(provider=self.name, model=self.model)])

    def judge(self, frame: Frame, baseline: dict | None) -> VisionResult:
        s = self.settings
        if frame.mean < s.offline_dark_mean:
            return VisionResult(
                mail_detected=False,
                confidence=0.5,
                description="Too dark to see inside the mailbox; a retake with light is needed.",
                image_quality=ImageQuality.TOO_DARK.value,
            )
        blur_limit = s.offline_blur_threshold
        if baseline is not None:
            blur_limit = max(blur_limit, _BLUR_BASELINE_RATIO * float(baseline["sharpness"]))
        blurry = frame.sharpness < blur_limit
        mask = _changed_vs_baseline(frame, baseline) if baseline is not None else _anomalous(frame)
        counts, package_share, share = _classify(frame, mask)
        threshold = s.offline_change_threshold
        p_mail = _probability(share, threshold)
        mail = p_mail >= 0.5
        # Honest confidence: capped lower without a learned baseline, lower still when blurred.
        cap = 0.97 if baseline is not None else 0.8
        if blurry:
            cap = min(cap, 0.6)
        confidence = round(min(cap, max(p_mail, 1 - p_mail)), 3)
        quality = ImageQuality.BLURRY if blurry else ImageQuality.OK
        if share > 0.85:
            quality, mail, confidence = ImageQuality.OBSTRUCTED, False, 0.5
        if not mail:
            counts = empty_counts()
        if mail and not any(counts.values()):
            counts["letter"] = 1
        package = counts["package"] > 0
        description = _describe(counts) if mail else "The mailbox looks empty."
        if quality is ImageQuality.BLURRY:
            description += " The photo is blurred; a retake would make sure."
        if quality is ImageQuality.OBSTRUCTED:
            description = "The view is blocked; a retake is needed."
        items = [
            {"type": name, "description": f"{name} (offline estimate)"} for name, n in counts.items() for _ in range(n)
        ]
        return VisionResult(
            mail_detected=mail,
            confidence=confidence,
            description=description,
            items=items,
            categories=counts,
            package_present=package,
            package_damage="none",
            package_damage_confidence=0.0,  # the offline analyser cannot judge damage
            image_quality=quality.value,
        )

    def updated_baseline(self, image: bytes, previous: dict | None) -> dict[str, Any]:
        return signature_of(measure(image), usable_baseline(previous), self.settings.offline_baseline_alpha)
