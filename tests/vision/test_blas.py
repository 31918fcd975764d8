"""The cloud's vision runs numpy's BLAS on one thread: OpenBLAS's extra threads only spin (cloud/vision/blas.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, tempfile
from pathlib import Path
import numpy
from cloud.context import AppContext
from cloud.settings import Settings
from cloud.vision.blas import blas_threads
from cloud.vision.pipeline import VisionPipeline
before = blas_threads()
ctx = AppContext.build(Settings(environment="test", data_dir=Path(tempfile.mkdtemp()), run_workers=False,
                                run_scheduler=False))
VisionPipeline(ctx)
print(json.dumps({"before": before, "after": blas_threads()}))
"""
THREAD_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def test_a_vision_pipeline_leaves_blas_on_one_thread():
    # A fresh process with BLAS's own default: this session's BLAS may be limited by another test already.
    env = {k: v for k, v in os.environ.items() if k not in THREAD_SETTINGS}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env,
                         timeout=120)
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads["before"], "numpy loaded no BLAS library"
    assert threads["after"] == [1] * len(threads["after"])
    if (os.cpu_count() or 1) > 1:
        assert max(threads["before"]) > 1  # so the limit above is the pipeline's doing, not the default
