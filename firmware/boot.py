"""Runs before main.py on every wake: keep it tiny (no network, no imports of the app).

It chooses which firmware runs (see mcam/ota.py): the factory copy in /lib, or an updated one in
``ota/a`` or ``ota/b`` put first on ``sys.path``. A version on trial gets ``try.max`` boots to
complete one wake (which confirms it); on the boot after that it is rolled back here, and the
previous version reports why. This file is never replaced by an update: it is what recovers one.
"""

import gc
import json
import os
import sys

if sys.platform == "esp32":
    import esp
    esp.osdebug(None)  # no ROM debug chatter on the UART during the short wake

OTA_STATE = "ota/state.json"


def _choose_slot():
    try:
        with open(OTA_STATE) as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        return None  # no update ever installed: the factory firmware
    t = st.get("try")
    if not t:
        return st.get("cur")
    if t["boots"] >= t["max"]:
        why = "no complete wake in %d boots" % t["boots"]
        if t.get("err"):
            why += ": " + t["err"]
        st["rb"] = {"rid": t["rid"], "ver": t["ver"], "why": why}
        st["bad"] = (st.get("bad") or [])[-3:] + [t["rid"]]
        st["try"] = None
        slot = st.get("cur")
    else:
        t["boots"] += 1
        slot = t["slot"]
    with open(OTA_STATE + ".tmp", "w") as f:
        f.write(json.dumps(st))
    os.rename(OTA_STATE + ".tmp", OTA_STATE)
    return slot


_slot = _choose_slot()
if _slot:
    sys.path.insert(0, "ota/" + _slot)
del _slot
gc.collect()
