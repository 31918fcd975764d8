"""Stand-in for lemariva/micropython-camera-driver's ``camera`` (its README: camera.init(0, format=..., ...))."""

import board

JPEG = 3
PSRAM = 1
DRAM = 0
FRAME_QQVGA = 0
FRAME_QVGA = 5
FRAME_CIF = 6
FRAME_VGA = 8
FRAME_SVGA = 9
FRAME_XGA = 10
FRAME_HD = 11
FRAME_SXGA = 12
FRAME_UXGA = 13

_state = {"on": False}
_FRAME = b"\xff\xd8" + bytes(range(200)) * 4 + b"\xff\xd9"


def init(id, *, format=JPEG, framesize=FRAME_QVGA, fb_location=DRAM, **pins):
    if id != 0 or format != JPEG:
        raise ValueError("camera.init(0, format=camera.JPEG, ...)")
    _state["on"] = True
    board.log("camera.init", format, fb_location)
    return True


def framesize(n):
    board.log("camera.framesize", n)


def quality(q):
    if not 0 <= q <= 63:
        raise ValueError("quality 0-63 (lower is better)")
    board.log("camera.quality", q)


def capture():
    if not _state["on"]:
        return False
    board.log("camera.capture")
    return _FRAME


def deinit():
    _state["on"] = False
    board.log("camera.deinit")
