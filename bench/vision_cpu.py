"""CPU per capture of the offline analyser: median milliseconds per compare, judge, picture and phash.

Two sets of photos: frames of the bench's generated mailboxes (``mailcam.mailboxes``, held-out seeds
from 1000, every class, some at night) against each box's empty frame, and the real firmware's recorded
wakes (``bench/recordings/firmware_wakes.json``) against its empty timer wake.

``compare`` is one comparison with a reference whose own arrays are at hand; ``judge`` is the offline
verdict as a vision job makes it, with the reference as the version's job gets it: read back from its
stored PNG (before s5-vision: every job, every reference) or kept decoded by the process's ``Frames``;
``judge, 2 refs`` the same for a box with a second (night) reference.
``picture`` decodes a photo, ``phash`` is its perceptual hash.

CPU time of the calling thread (``time.thread_time``), each call repeated ``--repeat`` times and the
median kept: the box is shared and noisy, and a median of CPU time is what is steady on it. numpy's
BLAS is held to one thread: OpenBLAS spins its idle helpers, which doubles process CPU for no gain and
is being fixed on its own (the cloud's workers limit it too).

``--against REV`` measures the analyser as it was at a git revision (its ``change.py``, ``prep.py``,
``offline.py`` and ``frames.py``) side by side in the same run, interleaved call by call, and counts the photos whose
comparison (any of its numbers) or verdict differ between the two, and by how much (verdicts, object
pixels, object share, noise).

    .venv/bin/python bench/vision_cpu.py
    .venv/bin/python bench/vision_cpu.py --against main --boxes 20 --repeat 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see above)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from replay import RECORDING, load  # noqa: E402

from cloud.vision import change as current_change  # noqa: E402
from cloud.vision import frames as current_frames  # noqa: E402
from cloud.vision import offline as current_offline  # noqa: E402
from cloud.vision import prep as current_prep  # noqa: E402
from cloud.vision.config import VisionSettings  # noqa: E402
from cloud.vision.references import Reference  # noqa: E402
from mailcam.mailboxes import Mailbox, Wake, random_contents  # noqa: E402

WORK_PIXELS = current_change.WORK[0] * current_change.WORK[1]

CLASSES = ("empty", "letters", "package", "magazine")


@dataclass
class Version:
    name: str
    change: ModuleType
    prep: ModuleType
    offline: ModuleType
    frames: ModuleType


def _module_at(rev: str, path: str, name: str, tmp: Path) -> ModuleType:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    file = tmp / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def version_at(rev: str, tmp: Path) -> Version:
    """The analyser at ``rev``: its change.py and prep.py, and an offline.py that uses them."""
    prep = _module_at(rev, "cloud/vision/prep.py", "_rev_prep", tmp)
    change = _module_at(rev, "cloud/vision/change.py", "_rev_change", tmp)
    change.open_jpeg = prep.open_jpeg  # its own decoder entry, if that changed too
    offline = _module_at(rev, "cloud/vision/offline.py", "_rev_offline", tmp)
    offline.compare, offline.picture = change.compare, change.picture
    frames = _module_at(rev, "cloud/vision/frames.py", "_rev_frames", tmp)
    frames.picture_from_arrays = change.picture_from_arrays
    if hasattr(frames, "picture_from_png"):
        frames.picture_from_png = change.picture_from_png
    return Version(rev, change, prep, offline, frames)


Photo = tuple[bytes, bytes, bytes | None]  # reference JPEG, photo JPEG, a second reference (or None)


def pairs(boxes: int, first: int) -> tuple[list[Photo], list[Photo]]:
    """Photos with their box's references: generated mailboxes (an empty day photo, and an empty night
    photo as a second reference, as a box that learned its night look has), and the recorded firmware
    wakes (its empty timer wake)."""
    generated = []
    for seed in range(first, first + boxes):
        box, rng = Mailbox(seed), random.Random(f"cpu:{seed}")
        empty, night = box.frame([], Wake(0)), box.frame([], Wake(9, night=True))
        for n, kind in enumerate(CLASSES):
            generated.append((empty, box.frame(random_contents(rng, kind), Wake(n + 1, night=n == 3)), night))
    wakes = load(RECORDING)
    reference = next(w.image for w in wakes if "empty" in w.label)
    recorded: list[Photo] = [(reference, w.image, None) for w in wakes if w.image is not reference]
    return generated, recorded


def cpu_ms(call: Callable[[], object]) -> float:
    started = time.thread_time_ns()
    call()
    return (time.thread_time_ns() - started) / 1e6


def measure(version: Version, ref_jpeg: bytes, jpeg: bytes, second_jpeg: bytes | None,
            repeat: int) -> dict[str, Callable[[], object]]:
    ch, provider = version.change, version.offline.OfflineProvider(VisionSettings())
    kept = version.frames.Frames()

    def stored_as_jobs_get_it(image: bytes) -> Callable[[], object]:
        """The reference as the version's vision job gets it: kept decoded by the process's Frames (the
        box's earlier job decoded it), or read back from its stored PNG, every job."""
        ref = ch.picture(image)
        png = ref.to_png()
        if not hasattr(kept, "reference"):
            return lambda: ch.picture_from_png(png, ref.mean, ref.sharpness)
        warm = kept.reference(version.frames.reference_key(png), png, ref.mean, ref.sharpness)
        _ = warm.shift_gradients, warm.shift_block_sums, warm.edges
        return lambda: kept.reference(version.frames.reference_key(png), png, ref.mean, ref.sharpness)

    ref = ch.picture(ref_jpeg)
    _ = ref.shift_gradients, ref.edges, ref.soft_log  # compare: the reference's own arrays already at hand
    stored = stored_as_jobs_get_it(ref_jpeg)
    second = stored_as_jobs_get_it(second_jpeg) if second_jpeg is not None else None

    def fresh() -> object:  # a new frame each time: its per-frame arrays are part of the cost
        return ch.picture(jpeg)

    frames = [fresh() for _ in range(3 * repeat)]  # decoded outside the timing

    def compare() -> object:
        return ch.compare(ref, frames.pop())

    def judge() -> object:
        return provider.judge(frames.pop(), [Reference(0, "owner", stored(), b"", datetime.now(UTC))])

    calls = {"compare": compare, "judge": judge, "picture": fresh,
             "phash": lambda: version.prep.perceptual_hash(jpeg)}
    if second is not None:
        calls["judge, 2 refs"] = lambda: provider.judge(frames.pop(), [
            Reference(0, "owner", stored(), b"", datetime.now(UTC)),
            Reference(1, "learned", second(), b"", datetime.now(UTC))])
    return calls


def outcome(version: Version, ref_jpeg: bytes, jpeg: bytes, second_jpeg: bytes | None) -> tuple:
    ch = version.change
    ref, frame = ch.picture(ref_jpeg), ch.picture(jpeg)
    c = ch.compare(ref, frame)
    provider = version.offline.OfflineProvider(VisionSettings())
    references = [Reference(0, "owner", ref, b"", datetime.now(UTC))]
    if second_jpeg is not None:
        references.append(Reference(1, "learned", ch.picture(second_jpeg), b"", datetime.now(UTC)))
    result = provider.judge(frame, references).result
    regions = tuple((r.kind, r.share, r.bbox) for r in c.regions)
    return (c.shift, c.share, regions, c.noise, c.light_share, c.edge_ratio, c.mask.tobytes(),
            result.mail_detected, result.confidence, result.categories, result.image_quality,
            version.prep.perceptual_hash(jpeg))


def run(versions: list[Version], sets: dict[str, list[Photo]], repeat: int) -> None:
    names = ("compare", "judge", "judge, 2 refs", "picture", "phash")
    for set_name, photos in sets.items():
        samples: dict[tuple[str, str], list[float]] = {(v.name, n): [] for v in versions for n in names}
        for photo in photos:
            calls = {v.name: measure(v, *photo, repeat) for v in versions}
            for _ in range(repeat):
                for name in names:
                    for v in versions:  # interleaved: both versions see the same moment of the box
                        if name in calls[v.name]:
                            samples[(v.name, name)].append(cpu_ms(calls[v.name][name]))
        print(f"\n{set_name}: {len(photos)} photos x {repeat}, median CPU ms per call")
        print(f"{'':14}" + "".join(f"{v.name:>12}" for v in versions) + ("       ratio" if len(versions) == 2 else ""))
        for name in names:
            if not samples[(versions[0].name, name)]:
                continue
            medians = [statistics.median(samples[(v.name, name)]) for v in versions]
            ratio = f"{medians[0] / medians[1]:11.2f}x" if len(medians) == 2 and medians[1] else ""
            print(f"{name:14}" + "".join(f"{m:12.2f}" for m in medians) + ratio)
        if len(versions) == 2:
            outcomes = [(outcome(versions[0], *photo), outcome(versions[1], *photo)) for photo in photos]
            # the hash apart: it decides only "unchanged" reuse, and it was redefined once on purpose
            # (bench/phash_agreement.py measures what that changed)
            differ = [i for i, (a, b) in enumerate(outcomes) if a[:-1] != b[:-1]]
            hashes = [i for i, (a, b) in enumerate(outcomes) if a[-1] != b[-1]]
            print(f"comparisons or verdicts that differ (any number of compare, the verdict): {len(differ)} of "
                  f"{len(photos)}" + (f" (photos {differ})" if differ else ""))
            if differ:  # how far: the verdict, the objects' pixels, the figures
                verdicts = [i for i in differ if outcomes[i][0][7:11] != outcomes[i][1][7:11]]
                pixels = [int(np.count_nonzero(np.frombuffer(a[6], bool) != np.frombuffer(b[6], bool)))
                          for a, b in (outcomes[i] for i in differ)]
                share = max(abs(outcomes[i][0][1] - outcomes[i][1][1]) for i in differ)
                noise = max(abs(outcomes[i][0][3] - outcomes[i][1][3]) for i in differ)
                print(f"  of them: verdicts that differ (mail, confidence, categories, quality) {len(verdicts)}"
                      + (f" (photos {verdicts})" if verdicts else "")
                      + f"; object masks that differ {sum(1 for n in pixels if n)}, by at most {max(pixels)} pixels"
                      f" of {WORK_PIXELS}; object share by at most {share:.4f}, noise by at most {noise:.5f}")
            print(f"perceptual hashes that differ: {len(hashes)} of {len(photos)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=12, help="generated mailboxes (4 photos each)")
    parser.add_argument("--first", type=int, default=1000, help="first box seed")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per photo and piece")
    parser.add_argument("--against", metavar="REV", help="also measure the analyser at this git revision")
    args = parser.parse_args(argv)
    generated, recorded = pairs(args.boxes, args.first)
    sets = {"generated mailboxes": generated, "recorded firmware wakes": recorded}
    current = Version("now", current_change, current_prep, current_offline, current_frames)
    with tempfile.TemporaryDirectory() as tmp:
        versions = [version_at(args.against, Path(tmp)), current] if args.against else [current]
        run(versions, sets, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
