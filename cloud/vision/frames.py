"""What one analysis leaves for the next of the same box, so it is not worked out again.

"More mail" compares a frame with the box's previous photo, and the previous photo with the empty
reference (``pipeline._added_share``). Both were at hand when the previous photo was analysed: its
working frame, and its comparison with the reference that matched it. Reading the photo back from
the image store, decoding it and comparing it again cost as much as a whole analysis.

The box's references, too: each job reads them back from the database as PNG working frames, and
decoding them (~0.75 ms each, every reference of the box) and working out again what ``compare`` derives
from a reference (its blurred gradients, block sums, edges: ~0.9 ms) cost as much as a third of the
comparison itself. Kept decoded, with what was derived from them, they are read-only: shared by workers.
As many as ``VisionSettings.decoded_references_mb`` holds: the jobs of N boxes come round robin, so a
cache smaller than their references is missed by every job.

Content-addressed, so never stale: a photo by its SHA-256 (the image store's key), a reference by a
digest of its stored working frame. Bounded (least recently used goes first) and shared by the
process's vision workers; a miss costs only the work it would have saved.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cloud.lru import Lru
from cloud.vision.change import Picture, picture_from_arrays, picture_from_png
from cloud.vision.config import VisionSettings

FRAMES_KEPT = 256  # working frames of photos that showed mail (~60 KB each as uint8)
MASKS_KEPT = 4096  # object masks of (reference, photo) pairs (~2.4 KB each, packed bits)
REFERENCE_MB = 1.1  # a decoded reference with every array compare derives from it (at change.WORK size)


def references_for(budget_mb: float) -> int:
    """How many decoded references fit in ``budget_mb`` (VisionSettings.decoded_references_mb)."""
    return int(budget_mb / REFERENCE_MB)


def reference_key(picture_png: bytes) -> str:
    """A stored reference's identity by content (row ids can be reused after a delete)."""
    return hashlib.blake2b(picture_png, digest_size=16).hexdigest()


class Frames:
    """Working frames by photo, object masks by (reference, photo), decoded references by content."""

    def __init__(self, frames: int = FRAMES_KEPT, masks: int = MASKS_KEPT, references: int | None = None) -> None:
        if references is None:  # the shipped setting's
            references = references_for(VisionSettings.model_fields["decoded_references_mb"].default)
        self._frames: Lru[str, tuple[np.ndarray, float, float]] = Lru(frames)
        self._masks: Lru[tuple[str, str], tuple[bytes, tuple[int, int]]] = Lru(masks)
        self._references: Lru[tuple[str, float, float], Picture] = Lru(references)

    def reference(self, key: str, picture_png: bytes, mean: float, sharpness: float) -> Picture:
        """The stored reference ``picture_png`` (``key``: its ``reference_key``) decoded, kept from an
        earlier job when it can be: ``picture_from_png``'s very picture, its pixels read-only."""
        kept = self._references.get((key, mean, sharpness))
        if kept is None:
            kept = picture_from_png(picture_png, mean, sharpness)
            for pixels in (kept.rgb, kept.log, kept.luma):
                pixels.flags.writeable = False  # shared by the workers' comparisons, which only read it
            self._references.put((key, mean, sharpness), kept)
        return kept

    def keep_frame(self, image_sha256: str, frame: Picture) -> None:
        # The working frame's pixels are whole numbers 0..255 (a BOX resize of 8-bit RGB): uint8 is exact.
        self._frames.put(image_sha256, (frame.rgb.astype(np.uint8), frame.mean, frame.sharpness))

    def frame(self, image_sha256: str) -> Picture | None:
        kept = self._frames.get(image_sha256)
        if kept is None:
            return None
        rgb, mean, sharpness = kept
        return picture_from_arrays(rgb.astype(np.float32), mean, sharpness)

    def keep_mask(self, reference: str, image_sha256: str, mask: np.ndarray) -> None:
        self._masks.put((reference, image_sha256), (np.packbits(mask).tobytes(), mask.shape))

    def mask(self, reference: str, image_sha256: str) -> np.ndarray | None:
        kept = self._masks.get((reference, image_sha256))
        if kept is None:
            return None
        bits, shape = kept
        count = shape[0] * shape[1]
        return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=count).reshape(shape).astype(bool)

    def clear(self) -> None:
        self._frames.clear()
        self._masks.clear()
        self._references.clear()
