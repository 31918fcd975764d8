"""Keep the gateway process small (a 512 MB Pi): refuse optional imports the service never uses.

- ``httpx._main``: httpx's command-line client; httpx imports it when click/rich are installed,
  pulling in click, rich and pygments (~10 MB).
- ``h2``: HTTP/2 (with hpack, hyperframe; ~1.2 MB); httpcore imports it whenever it is installed,
  and the gateway's client speaks HTTP/1.1 (`gateway.cloud`: no ``http2=True``).
- ``dns``: dnspython, only for paho's ``connect_srv`` (unused).
- ``socks``: PySocks, only for paho's proxy support (unused).

Call before importing httpx or paho; `python -m gateway` does. A module already imported is left alone.
"""

from __future__ import annotations

import sys

OPTIONAL_MODULES = ("httpx._main", "h2", "dns", "socks")


def block_optional_imports() -> None:
    for name in OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None makes `import name` fail
