"""`python -m gateway` stays small (gateway/lean.py): what it refuses to load, and that it works without."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.gateway.kit import REPO


def test_the_gateway_speaks_http_1_1_to_the_cloud_without_loading_http2(cloud):
    """Memory (issue 18): httpcore loads h2, hpack and hyperframe (~1.2 MB) whenever h2 is installed,
    although the gateway's client never asks for HTTP/2. Refused, the client still talks to the cloud."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        import gateway.__main__  # what `python -m gateway` runs before the service
        from gateway.cloud import CloudClient

        async def main():
            async with CloudClient(base_url={cloud.url!r}, token={cloud.gateway_token!r}, timeout_s=10) as client:
                return await client.devices()

        print(len(asyncio.run(main())))
        print(sorted(name for name in ("h2", "hpack", "hyperframe") if sys.modules.get(name)))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["2", "[]"]
