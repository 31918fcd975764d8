"""The forwarder's rounds against a cloud that is down or refuses one item (real SQLite spool; the cloud's
answers from an in-memory httpx transport)."""

from __future__ import annotations

import json

import httpx
import pytest
from mcam import protocol

from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, Spool
from gateway.subscriber import Ingestor
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg, forward_rounds

DEVICES = [f"dev{k}" for k in range(12)]


@pytest.fixture
def spool(tmp_path) -> Spool:
    s = Spool(tmp_path / "gateway.db", clock=ManualClock())
    s.replace_devices([(serial, 3600) for serial in DEVICES])
    yield s
    s.close()


def settings_for(spool: Spool) -> GatewaySettings:
    return GatewaySettings(data_dir=spool.path.parent, forward_concurrency=3, forward_batch=64)


def queue_one_capture_per_device(spool: Spool) -> None:
    ingestor = Ingestor(settings_for(spool), spool)
    with spool.transaction():
        for k, serial in enumerate(DEVICES):
            _, payloads = chunks_of(fake_jpeg(6000, seed=k), chunk_size=4096)
            for payload in payloads:
                assert ingestor.handle(protocol.topic(serial, protocol.CAPTURE).encode(), payload) in ("stored",
                                                                                                        "completed")


def one_round(spool: Spool, handler) -> bool:
    return forward_rounds(settings_for(spool), spool, handler)[0]


def test_a_round_stops_at_the_first_unreachable_cloud_instead_of_trying_every_device(spool):
    """Expected: with no connection to the cloud, a round tries at most `forward_concurrency` items (the lanes
    already under way) and keeps everything queued. Before: every device's lane tried its first item, each
    costing an image read and a committed failure record (one fsync each) while ingest was committing."""
    queue_one_capture_per_device(spool)
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    assert one_round(spool, refuse) is False
    assert 1 <= len(attempts) <= 3
    assert spool.counters().get("retried") == len(attempts)
    assert sorted(i.serial for i in spool.pending(64)) == sorted(DEVICES)
    assert all(i.kind == CAPTURE for i in spool.pending(64))


def test_a_retryable_answer_for_one_item_does_not_stop_the_other_devices(spool):
    """A proxy's HTML 413 for one device's capture is about that item, not the cloud: the other lanes go on."""
    queue_one_capture_per_device(spool)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        serial = json.loads(request.content)["serial_number"]
        seen.append(serial)
        if serial == DEVICES[0]:
            return httpx.Response(413, content=b"<html>413 Request Entity Too Large</html>",
                                  headers={"content-type": "text/html"})
        return httpx.Response(200, json={"status": "saved"})

    assert one_round(spool, answer) is False
    assert sorted(seen) == sorted(DEVICES)
    assert [i.serial for i in spool.pending(64)] == [DEVICES[0]]
