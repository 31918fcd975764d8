"""Stand-in for cnadler86/micropython-camera-API's ``camera`` (README, typings/camera.pyi, src/modcamera.c)."""

import board


class PixelFormat:
    RGB565 = 0
    YUV422 = 1
    YUV420 = 2
    GRAYSCALE = 3
    JPEG = 4
    RGB888 = 5
    RAW = 6
    RGB444 = 7
    RGB555 = 8


class FrameSize:
    R96X96 = 0
    QQVGA = 1
    QCIF = 3
    HQVGA = 4
    R240X240 = 5
    QVGA = 6
    CIF = 8
    HVGA = 9
    VGA = 10
    SVGA = 11
    XGA = 12
    HD = 13
    SXGA = 14
    UXGA = 15


class GrabMode:
    WHEN_EMPTY = 0
    LATEST = 1


JPEG = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"


class Camera:
    def __init__(self, *, data_pins=None, pclk_pin=None, vsync_pin=None, href_pin=None, sda_pin=None,
                 scl_pin=None, xclk_pin=None, xclk_freq=20000000, powerdown_pin=-1, reset_pin=-1, i2c=None,
                 pixel_format=PixelFormat.RGB565, frame_size=FrameSize.QVGA, jpeg_quality=85, fb_count=1,
                 grab_mode=GrabMode.WHEN_EMPTY, init=True):
        if data_pins is not None and len(data_pins) != 8:
            raise ValueError("data_pins needs 8 pins")
        if xclk_freq > 40000000:
            raise ValueError("xclk frequency cannot be greater than 40MHz")
        if pixel_format > PixelFormat.RGB555 or grab_mode not in (0, 1) or not 0 <= jpeg_quality <= 100:
            raise ValueError("invalid pixel_format, grab_mode or jpeg_quality")
        self.pixel_format = pixel_format
        self.jpeg_quality = jpeg_quality
        self.initialized = False
        board.log("Camera", pixel_format, frame_size, jpeg_quality, powerdown_pin)
        if init:
            self.init()

    def init(self):
        self.initialized = True

    def capture(self):
        if not self.initialized:
            raise OSError(2)  # ENOENT, as check_init()
        board.log("Camera.capture")
        return memoryview(JPEG)

    def deinit(self):
        self.initialized = False
        board.log("Camera.deinit")
