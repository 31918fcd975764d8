"""The few things MicroPython and CPython spell differently: ticks and hex digests."""

import time

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

try:
    from binascii import hexlify
except ImportError:  # pragma: no cover
    from ubinascii import hexlify


def hexstr(b):
    return hexlify(b).decode()


def collect():
    import gc
    gc.collect()
