"""Entry point of a wake: run one cycle, then deep sleep. Never a boot loop: any bug sleeps safely.

This file is never replaced by an update (boot.py put the running version's ``mcam`` first on
``sys.path``); a wake that dies under a version on trial is noted for boot.py's rollback report.
"""

import json
import sys


def _note_trial_failure(msg):
    try:
        with open("ota/state.json") as f:
            st = json.loads(f.read())
        if st.get("try"):
            st["try"]["err"] = msg[:80]
            with open("ota/state.json", "w") as f:
                f.write(json.dumps(st))
    except (OSError, ValueError):
        pass


def main():
    hal = None
    try:
        from mcam import board, cycle

        hal = board.hal()
        result = cycle.run(hal)
    except Exception as e:  # a firmware bug: log it and sleep safely rather than reset in a loop
        sys.print_exception(e) if hasattr(sys, "print_exception") else None
        _note_trial_failure(repr(e))
        safe_ms = 3600 * 1000  # mcam.config.SAFE_SLEEP_S, not imported: the failing version's own modules
        if hal is None and sys.platform == "esp32":  # the version on trial cannot even load its HAL
            import machine
            machine.deepsleep(safe_ms)
        if hal is not None:
            hal.log("fatal: " + repr(e))
            hal.deep_sleep(safe_ms, None, 0)
        result = {"error": "fatal: " + repr(e)}
    print("MCAM_RESULT " + json.dumps(result))


main()
