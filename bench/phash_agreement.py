"""The perceptual hash from the analyser's grey frame against the full-decode hash it replaced.

    .venv/bin/python bench/phash_agreement.py              # 150 held-out boxes x 5 photos
    .venv/bin/python bench/phash_agreement.py --boxes 400

``prep.perceptual_hash`` takes the pHash of the 320x240 grey frame the analysis decodes anyway
(``prep.working_images``); before, each analysis decoded the photo a second time at full size for
the hash alone (``imagehash.phash`` of a decode at >= 512 px, reproduced here as ``full_decode_hash``).
The hash only decides whether a photo is "unchanged" from the box's previous one (distance <=
``VisionSettings.unchanged_phash_distance``), so its answer is reused without a judgement.

Photos: generated mailboxes from seed 7000 (held out: the analyser's figures use lower seeds), each
photographed empty, empty again, with mail, with the same mail again, and empty (sometimes at
night); a quarter of the boxes upscaled 2x or 2.5x and re-encoded at JPEG quality 60-92, beyond the
sizes the generator makes. Prints how far the two hashes of one photo are apart, how often the two
agree on "unchanged" for consecutive photos, how many photos whose contents changed either would
have called unchanged (a missed delivery), and the CPU of each.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imagehash  # noqa: E402
from PIL import Image  # noqa: E402

from cloud.vision.config import VisionSettings  # noqa: E402
from cloud.vision.prep import perceptual_hash, phash_distance  # noqa: E402
from mailcam.mailboxes import Mailbox, Wake, random_contents  # noqa: E402


def full_decode_hash(jpeg: bytes) -> str:
    """The hash as it was: a decode at >= 512 px (DCT scaling above 1024), grey, pHash."""
    image = Image.open(io.BytesIO(jpeg), formats=["JPEG"])
    image.draft("L", (512, 512))
    return str(imagehash.phash(image.convert("L")))


def photos(seed: int) -> list[tuple[str, bytes]]:
    box, rng = Mailbox(seed), random.Random(f"phash:{seed}")
    scale = rng.choice([1.0, 1.0, 2.0, 2.5])
    quality = rng.choice([60, 80, 92])

    def shot(items: list, n: int, night: bool = False) -> bytes:
        jpeg = box.frame(items, Wake(n, night=night))
        if scale == 1.0:
            return jpeg
        image = Image.open(io.BytesIO(jpeg))
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return out.getvalue()

    items = random_contents(rng, rng.choice(["letters", "package", "magazine"]))
    return [("empty", shot([], 1)), ("empty", shot([], 2)), ("mail", shot(items, 3)), ("mail", shot(items, 4)),
            ("empty", shot([], 5, night=rng.random() < 0.3))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=150)
    args = parser.parse_args()
    limit = VisionSettings().unchanged_phash_distance
    apart: list[int] = []
    agree = disagree_old_unchanged = disagree_new_unchanged = 0
    missed = {"full decode": 0, "grey frame": 0}
    changed_pairs = 0
    cpu = {"full decode": 0.0, "grey frame": 0.0}
    for seed in range(7000, 7000 + args.boxes):
        hashes = []
        for label, jpeg in photos(seed):
            t0 = time.thread_time()
            old = full_decode_hash(jpeg)
            t1 = time.thread_time()
            new = perceptual_hash(jpeg)
            cpu["full decode"] += t1 - t0
            cpu["grey frame"] += time.thread_time() - t1
            apart.append(phash_distance(old, new))
            hashes.append((label, old, new))
        for (label_a, old_a, new_a), (label_b, old_b, new_b) in zip(hashes, hashes[1:], strict=False):
            old_same, new_same = phash_distance(old_a, old_b) <= limit, phash_distance(new_a, new_b) <= limit
            agree += old_same == new_same
            disagree_old_unchanged += old_same and not new_same
            disagree_new_unchanged += new_same and not old_same
            if label_a != label_b:
                changed_pairs += 1
                missed["full decode"] += old_same
                missed["grey frame"] += new_same
    photos_n = len(apart)
    print(f"{photos_n} photos of {args.boxes} held-out boxes; 'unchanged' = distance <= {limit}")
    print(f"  one photo, two hashes: distance median {statistics.median(apart):.0f}, "
          f"p95 {sorted(apart)[int(0.95 * (photos_n - 1))]}, max {max(apart)}")
    pairs = agree + disagree_old_unchanged + disagree_new_unchanged
    print(f"  consecutive photos: agree on 'unchanged' {agree} of {pairs}; only the full decode says unchanged "
          f"{disagree_old_unchanged}, only the grey frame {disagree_new_unchanged}")
    print(f"  contents changed ({changed_pairs} pairs) but called unchanged: full decode {missed['full decode']}, "
          f"grey frame {missed['grey frame']}")
    print("  CPU ms per photo (the hash alone, with its own decode): "
          + ", ".join(f"{k} {1000 * v / photos_n:.2f}" for k, v in cpu.items()))


if __name__ == "__main__":
    main()
