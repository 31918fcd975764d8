"""The call log the stand-ins share, and the modelled board state."""

CALLS = []
PINS = {}  # gpio -> {"mode", "value", "pull", "hold"}
STATE = {"wifi_active": False, "rtc_memory": b"", "rtc_offset": 0, "wake": 4}


def log(*call):
    CALLS.append(list(call))
