"""numpy's BLAS on one thread in the cloud process.

The offline analyser's matrix work is tiny (a light field of 10 polynomial terms over a few thousand
pixels): more BLAS threads buy no wall-clock time, and OpenBLAS's extra threads spin-wait after every
call. That spinning doubled the CPU of a compare (17.5 → 34.5 ms, the same 17.7 ms of wall time) and
cost the cloud ~20 ms per capture in bench/e2e.py. The process's parallelism is its vision workers.
"""

from __future__ import annotations

import threading

from threadpoolctl import threadpool_info, threadpool_limits

_lock = threading.Lock()
_limits: threadpool_limits | None = None  # kept: the limit holds while this object lives


def single_threaded_blas() -> None:
    """Limit every BLAS library numpy loaded to one thread, once per process (idempotent)."""
    global _limits
    with _lock:
        if _limits is None:
            import numpy  # noqa: F401 - the limit applies to libraries already loaded

            _limits = threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> list[int]:
    """The thread count of each BLAS library loaded in this process."""
    return [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
