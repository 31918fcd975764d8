"""mailcam firmware package (MicroPython-compatible; importable as ``mcam`` from CPython too)."""

FW_VERSION = "1.0.0"
