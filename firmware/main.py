"""Entry point of a wake: run one cycle, then deep sleep. Never a boot loop: any bug sleeps safely."""

import json
import sys


def main():
    from mcam import board

    hal = board.hal()
    try:
        from mcam import cycle
        result = cycle.run(hal)
    except Exception as e:  # a firmware bug: log it and sleep safely rather than reset in a loop
        sys.print_exception(e) if hasattr(sys, "print_exception") else None
        hal.log("fatal: " + repr(e))
        from mcam.config import SAFE_SLEEP_S
        hal.deep_sleep(SAFE_SLEEP_S * 1000, None, 0)
        result = {"error": "fatal: " + repr(e)}
    print("MCAM_RESULT " + json.dumps(result))


main()
