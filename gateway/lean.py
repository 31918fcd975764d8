"""Keep the gateway's processes small (a 512 MB Pi): refuse optional imports they never use.

Both processes (`block_optional_imports`):

- ``httpx._main``: httpx's command-line client; httpx imports it when click/rich are installed,
  pulling in click, rich and pygments (~10 MB).
- ``h2``: HTTP/2 (with hpack, hyperframe; ~1.2 MB); httpcore imports it whenever it is installed,
  and the gateway's client speaks HTTP/1.1 (`gateway.cloud`: no ``http2=True``).
- ``dns``: dnspython, only for paho's ``connect_srv`` (unused).
- ``socks``: PySocks, only for paho's proxy support (unused).

The MQTT process alone (`block_mqtt_process_imports`, `gateway.mqtt_process.child_main`), which runs
nothing but paho:

- ``urllib.request`` (and with it http.client, email, tempfile…; ~1.3 MB): paho imports it only for
  its proxy lookup, which returns before using it when PySocks is absent, as it is here. A stand-in
  module takes its place that fails loudly if anything does use it.

Not ``ssl``, although the broker connection has no TLS: paho 2.2 survives its absence at import, but
its socket reads and writes name ``ssl.SSLWantReadError`` in their ``except`` clauses, so the first
would-block read of a busy connection raised AttributeError in paho's thread.

Call before importing httpx or paho; `python -m gateway` does. A module already imported is left alone.
"""

from __future__ import annotations

import sys
import types

OPTIONAL_MODULES = ("httpx._main", "h2", "dns", "socks")


def block_optional_imports() -> None:
    for name in OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None makes `import name` fail


def block_mqtt_process_imports() -> None:
    """`block_optional_imports`, and what the MQTT process needs none of (see the module docstring)."""
    block_optional_imports()
    if "socks" in sys.modules and sys.modules["socks"] is None and "urllib.request" not in sys.modules:
        import urllib

        stand_in = _StandIn("urllib.request", "paho's proxy lookup needs it only with PySocks (gateway/lean.py)")
        sys.modules["urllib.request"] = stand_in
        urllib.request = stand_in  # type: ignore[attr-defined]  # what `import urllib.request` would bind


class _StandIn(types.ModuleType):
    """A module that is imported but never used: any use of it raises, naming why it is not there."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, f"Stand-in: {why}")
        self._why = why

    def __getattr__(self, attribute: str) -> object:
        raise AttributeError(f"{self.__name__}.{attribute}: not loaded in this process ({self._why})")
