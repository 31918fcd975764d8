"""Which HAL drives this board: the ESP32's, else the simulator's (the virtual board, the tests)."""

import sys


def hal():
    if sys.platform == "esp32":
        from .hal_esp32 import HAL
        return HAL()
    import os

    from .hal_sim import HAL
    return HAL(os.getenv("MCAM_SIM_DIR") or ".")
