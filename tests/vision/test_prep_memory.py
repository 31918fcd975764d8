"""Vision preparation decodes large stored images at a reduced scale (libjpeg DCT scaling).

Found in review: an 8192x8192 JPEG cost the vision worker +330 MB. Images stored before the
side cap (or under a raised one) must still be cheap to analyse: ``rgb``, ``grayscale``,
``perceptual_hash`` and ``prepare_jpeg`` decode only as many pixels as they need.
Each case runs in a fresh interpreter and reports the growth of its peak resident memory.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image

SIDE = 4096  # a full decode is 48 MB of RGB pixels (+16 MB of grayscale)

MEASURE = """
import io, sys
from PIL import Image
from cloud.vision import prep

def peak_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

def run(call, data):
    if call == "rgb":
        return prep.rgb(data, 512).size
    if call == "grayscale":
        return prep.grayscale(data, (64, 64)).size
    if call == "phash":
        return prep.perceptual_hash(data)
    return len(prep.prepare_jpeg(data, long_side=768))

small = io.BytesIO()
Image.new("RGB", (640, 480), "gray").save(small, "JPEG")
call = sys.argv[2]
run(call, small.getvalue())  # warm up: lazy imports (scipy for the hash) must not count
data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (Linux)
before = peak_kb()
out = run(call, data)
after = peak_kb()
print((after - before) // 1024, out)
"""


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory) -> str:
    image = Image.linear_gradient("L").resize((SIDE, SIDE)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=40)
    del image
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    path.write_bytes(out.getvalue())
    return str(path)


@pytest.mark.parametrize("call", ["rgb", "grayscale", "phash", "prepare"])
def test_large_stored_image_is_decoded_scaled(large_jpeg, call):
    """Expected: well under a full decode (48 MB). Before: each call decoded all 4096x4096 pixels."""
    done = subprocess.run([sys.executable, "-c", MEASURE, large_jpeg, call], capture_output=True, text=True,
                          timeout=120, check=True)
    grown_mb, result = done.stdout.split(maxsplit=1)
    assert int(grown_mb) < 20, f"{call} grew peak memory by {grown_mb} MB ({result.strip()})"
