"""The live cloud the gateway tests run against starts even when its port was taken meanwhile.

Its port is chosen free when the fixture is made and bound when the server starts; in between another
socket of the machine can take it (seen in CI under load: "address already in use", the test erred)."""

from __future__ import annotations

import socket

from tests.gateway.conftest import Cloud


def test_a_first_start_moves_off_a_port_taken_since_it_was_chosen(cloud_ctx):
    taker = socket.socket()
    taker.bind(("127.0.0.1", 0))
    taker.listen()
    taken = taker.getsockname()[1]
    cloud = Cloud(ctx=cloud_ctx, port=taken)
    try:
        cloud.up()
        assert cloud.port != taken
        with cloud.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        cloud.down()
        taker.close()
