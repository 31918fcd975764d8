"""The offline provider: no network, no key; decides from the pixels, against this box's own empty photo.

1. Quality first: too dark to see → ``too_dark`` and no verdict (``mail_detected`` None: a black
   frame is no evidence of an empty box); blurred → ``blurry`` with a confidence capped low.
2. No reference yet → *uncalibrated*: ``mail_detected`` None, confidence 0. A box the analyser has
   never seen empty cannot be judged from one photo without guessing (paper-white floors, brown
   wooden ones, posters glued inside), and a guess is what woke people for nothing.
3. With references → ``change.compare`` against the closest ones (in brightness); the best match
   wins. Objects covering at least ``offline_change_threshold`` of the frame are mail; their
   colours and sizes give the categories.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.vision.base import AnalyseRequest, Answer, CallRecord, ImageQuality, VisionResult, empty_counts
from cloud.vision.change import Change, Picture, categories, compare, picture
from cloud.vision.config import VisionSettings
from cloud.vision.references import Reference, closest

UNCALIBRATED = (
    "Not calibrated yet: open the mailbox, take a photo of it empty and press 'This is empty', "
    "so mailcam knows what your mailbox looks like without mail."
)
_ALWAYS_DARK = 10.0  # mean grey level below which nothing can be seen, whatever the box
_DARK_RATIO = 0.35  # below the offline_dark_mean, darker than this share of the box's reference is too dark
_BLUR_RATIO = 0.3  # Laplacian detail below this share of the reference's (exposure-free) ...
_EDGE_RATIO = 0.9  # ... and the box's strongest edges below this share of their strength there: blurred
_UNCALIBRATED_BLUR = 0.0002  # the same without a reference (normalised Laplacian variance)


@dataclass
class Judgement:
    """The offline verdict with what it was based on (the pipeline reuses the comparison)."""

    result: VisionResult
    frame: Picture
    change: Change | None = None
    reference: Reference | None = None


class OfflineProvider:
    name = "offline"
    model = "offline-v2"

    def __init__(self, settings: VisionSettings) -> None:
        self.settings = settings

    def analyse(self, request: AnalyseRequest) -> Answer:
        judgement = self.judge(picture(request.image), request.references)
        return Answer(judgement.result, model=self.model, calls=[CallRecord(provider=self.name, model=self.model)])

    def judge(self, frame: Picture, references: list[Reference]) -> Judgement:
        if self._too_dark(frame, references):
            return Judgement(_unknown("Too dark to see inside the mailbox; a retake with light is needed.",
                                      ImageQuality.TOO_DARK), frame)
        if not references:
            blurry = frame.sharpness < _UNCALIBRATED_BLUR
            return Judgement(_unknown(UNCALIBRATED, ImageQuality.BLURRY if blurry else ImageQuality.OK), frame)
        best: tuple[Change, Reference] | None = None
        for reference in closest(references, frame):
            change = compare(reference.picture, frame)
            if best is None or change.share < best[0].share:
                best = (change, reference)
            if best[0].share == 0.0:
                break  # nothing changed: no other reference can do better (a tie keeps the first)
        assert best is not None
        change, reference = best
        # Both: detail gone (a Laplacian alone mistakes a noisier reference for a sharper one) and the
        # box's own strongest edges softened.
        blurry = frame.sharpness < _BLUR_RATIO * reference.picture.sharpness and change.edge_ratio < _EDGE_RATIO
        return Judgement(self._verdict(change, blurry), frame, change, reference)

    def _too_dark(self, frame: Picture, references: list[Reference]) -> bool:
        """Dark for this box: a black-painted mailbox is dark by day, a dead flash makes it darker still."""
        if frame.mean >= self.settings.offline_dark_mean:
            return False
        if not references or frame.mean < _ALWAYS_DARK:
            return True
        return frame.mean < _DARK_RATIO * closest(references, frame, limit=1)[0].picture.mean

    def _verdict(self, change: Change, blurry: bool) -> VisionResult:
        threshold = self.settings.offline_change_threshold
        mail = change.share >= threshold
        if mail:
            confidence = 0.6 + 0.37 * min(1.0, (change.share - threshold) / (3 * threshold))
        else:
            confidence = 0.97 - 0.37 * change.share / threshold - (0.1 if change.light_share > 0.05 else 0.0)
        if blurry:
            confidence = min(confidence, 0.6)
        counts = categories(change) if mail else empty_counts()
        if mail and not any(counts.values()):
            counts["letter"] = 1
        quality = ImageQuality.BLURRY if blurry else ImageQuality.OK
        if change.share > 0.85:  # nearly everything changed: the lens is covered or the camera moved
            return _unknown("The view is blocked or the camera has moved; a retake is needed.",
                            ImageQuality.OBSTRUCTED)
        description = _describe(counts) if mail else "The mailbox looks empty."
        if blurry:
            description += " The photo is blurred; a retake would make sure."
        return VisionResult(
            mail_detected=mail,
            confidence=round(confidence, 3),
            description=description,
            items=[{"type": name, "description": f"{name} (offline estimate)"}
                   for name, n in counts.items() for _ in range(n)],
            categories=counts,
            package_present=counts["package"] > 0,
            image_quality=quality.value,
        )


def _unknown(description: str, quality: ImageQuality) -> VisionResult:
    return VisionResult(mail_detected=None, confidence=0.0, description=description, image_quality=quality.value)


def _describe(counts: dict[str, int]) -> str:
    parts = [f"{n} {name}{'s' if n > 1 else ''}" for name, n in counts.items() if n]
    return "Mail in the mailbox: " + ", ".join(parts) + "."
