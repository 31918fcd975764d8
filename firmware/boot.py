"""Runs before main.py on every wake: keep it tiny (no network, no imports of the app)."""

import gc
import sys

if sys.platform == "esp32":
    import esp
    esp.osdebug(None)  # no ROM debug chatter on the UART during the short wake
gc.collect()
