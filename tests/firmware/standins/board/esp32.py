"""Stand-in for MicroPython's ``esp32`` module (docs/library/esp32.rst)."""

import board
from machine import Pin

WAKEUP_ALL_LOW = False  # ports/esp32/modesp32.c: mp_const_false / mp_const_true
WAKEUP_ANY_HIGH = True
_RTC_GPIO = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)


def gpio_deep_sleep_hold(enable):
    if not isinstance(enable, bool):
        raise TypeError("enable should be a boolean value")
    board.log("gpio_deep_sleep_hold", enable)


def wake_on_ext0(pin, level):
    if pin is not None and not isinstance(pin, Pin):
        raise TypeError("pin can be None or a valid Pin object")
    if pin is not None and pin.id not in _RTC_GPIO:
        raise ValueError("invalid pin for wake")
    if level is not WAKEUP_ALL_LOW and level is not WAKEUP_ANY_HIGH:
        raise ValueError("level should be esp32.WAKEUP_ALL_LOW or esp32.WAKEUP_ANY_HIGH")
    board.log("wake_on_ext0", pin.id if pin else None, level)
