"""A device's captures and reports go to the cloud in one request (POST /api/gateway/uploads/), each settled by
its own result exactly as if it had gone alone; when the request as a whole fails, they go one by one.
(Real SQLite spool; the cloud's answers from an in-memory httpx transport. Against the real cloud:
tests/cloud/test_uploads.py, and the gateway's end-to-end tests, which now forward through it.)"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from mcam import protocol

from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, TELEMETRY, Spool
from gateway.subscriber import Ingestor
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg, forward_rounds

UPLOADS = "/api/gateway/uploads/"


@pytest.fixture
def spool(tmp_path) -> Spool:
    s = Spool(tmp_path / "gateway.db", clock=ManualClock())
    s.replace_devices([("box-a", 3600), ("box-b", 3600)])
    yield s
    s.close()


def settings_for(spool: Spool, **overrides) -> GatewaySettings:
    return GatewaySettings(data_dir=spool.path.parent, **overrides)


def wake(spool: Spool, serial: str, seed: int, *, size: int = 6000) -> bytes:
    """A device's wake as the gateway receives it: a chunked capture, then its telemetry report."""
    ingestor = Ingestor(settings_for(spool), spool)
    image = fake_jpeg(size, seed=seed)
    with spool.transaction():
        for payload in chunks_of(image, chunk_size=4096)[1]:
            ingestor.handle(protocol.topic(serial, protocol.CAPTURE).encode(), payload)
        report = protocol.encode_telemetry(ts=1_780_000_000 + seed, bat=3900, rssi=-60, wake="door", awake_ms=800,
                                           fw="1.0.0", boot=seed, err=None, pending=0)
        ingestor.handle(protocol.topic(serial, protocol.TELEMETRY).encode(), report)
    return image


class Cloud:
    """Answers like the cloud, item by item through ``item`` (serial, kind) → (status, body); records requests."""

    def __init__(self, item=None, *, uploads=None) -> None:
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []
        self.item = item or (lambda serial, kind: (200, {"status": "saved" if kind == CAPTURE else "recorded"}))
        self.uploads = uploads  # the whole uploads request's answer instead, if set

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == UPLOADS:
            items = [(i["body"]["serial_number"], i["kind"]) for i in body["items"]]
            self.requests.append((UPLOADS, items))
            if self.uploads is not None:
                return self.uploads(request)
            results = [dict(zip(("status", "body"), self.item(*item), strict=True)) for item in items]
            return httpx.Response(200, json={"results": results})
        kind = CAPTURE if request.url.path.endswith("/capture/") else TELEMETRY
        self.requests.append((request.url.path, [(body["serial_number"], kind)]))
        status, answer = self.item(body["serial_number"], kind)
        return httpx.Response(status, json=answer)


def rounds(spool: Spool, cloud: Cloud, n: int = 1, **settings) -> list[bool]:
    return forward_rounds(settings_for(spool, **settings), spool, cloud, rounds=n)


def test_a_wake_is_one_request_and_both_items_are_settled(spool):
    image = wake(spool, "box-a", 1)
    sent: list[dict] = []
    cloud = Cloud()
    plain = cloud.__call__

    def keep(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return plain(request)

    assert rounds(spool, keep) == [True]
    assert len(sent) == 1 and [i["kind"] for i in sent[0]["items"]] == ["capture", "telemetry"]
    capture, report = (i["body"] for i in sent[0]["items"])
    assert base64.b64decode(capture["image"]) == image and capture["serial_number"] == "box-a"
    assert report["serial_number"] == "box-a" and report["battery_voltage"] == 3.9
    assert spool.pending(64) == []
    assert spool.counters()["forwarded:capture"] == spool.counters()["forwarded:telemetry"] == 1


def test_each_item_is_settled_by_its_own_result(spool):
    """A refused capture is dead-lettered with its image, an unknown device's report is held, a failure
    for now keeps its item (and the device's later ones) queued: as for single requests."""
    wake(spool, "box-a", 2)
    wake(spool, "box-b", 3)
    refused = {"error": "invalid_image", "detail": "not a JPEG"}

    def item(serial: str, kind: str):
        if (serial, kind) == ("box-a", CAPTURE):
            return 422, refused
        if (serial, kind) == ("box-a", TELEMETRY):
            return 404, {"error": "not_found", "detail": "unknown device", "device_serial": serial}
        if (serial, kind) == ("box-b", CAPTURE):
            return 500, {"error": "internal_error", "detail": "an unexpected error occurred; it has been logged"}
        return 503, {"error": "not_attempted", "detail": "an earlier item of this device failed for now"}

    assert rounds(spool, Cloud(item)) == [False]
    (letter,) = spool.dead_letters()
    assert (letter.reason, letter.serial, letter.replayable) == ("cloud_invalid_image", "box-a", True)
    assert [(i.serial, i.kind) for i in spool.held()] == [("box-a", TELEMETRY)]
    assert [(i.serial, i.kind) for i in spool.pending(64)] == [("box-b", CAPTURE), ("box-b", TELEMETRY)]


def test_a_proxys_answer_to_the_whole_request_sends_the_items_one_by_one(spool):
    """A reverse proxy's HTML 413 for the combined body says nothing about the items: each goes alone, and
    each alone gets its own outcome (here: stored)."""
    wake(spool, "box-a", 4)
    cloud = Cloud(uploads=lambda request: httpx.Response(
        413, content=b"<html>413 Request Entity Too Large</html>", headers={"content-type": "text/html"}))
    assert rounds(spool, cloud) == [True]
    assert [path for path, _ in cloud.requests] == [UPLOADS, "/api/device/capture/", "/api/device/telemetry/"]
    assert spool.pending(64) == [] and spool.dead_letters() == []


def test_a_cloud_without_the_endpoint_gets_one_request_per_item_from_then_on(spool):
    wake(spool, "box-a", 5)
    cloud = Cloud(uploads=lambda request: httpx.Response(404, json={"error": "not_found", "detail": "Not Found"}))

    def second_wake() -> None:
        wake(spool, "box-a", 6)

    assert forward_rounds(settings_for(spool), spool, cloud, rounds=2, between=second_wake) == [True, True]
    assert [path for path, _ in cloud.requests] == [UPLOADS, *["/api/device/capture/", "/api/device/telemetry/"] * 2]
    assert spool.pending(64) == []


def test_an_unreachable_cloud_keeps_everything_and_records_one_attempt(spool):
    wake(spool, "box-a", 7)
    wake(spool, "box-b", 8)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert rounds(spool, refuse) == [False]
    assert 1 <= spool.counters().get("retried", 0) <= 2
    assert len(spool.pending(64)) == 4


def test_batches_keep_to_their_item_and_byte_limits_and_the_devices_order(spool):
    for n in range(3):
        wake(spool, "box-a", 10 + n, size=20_000)
    cloud = Cloud()
    # 3 wakes of box-a (6 items) with room for 4 items, or for one 20 kB capture and its neighbours' reports
    assert rounds(spool, cloud, upload_batch_items=4) == [True]
    assert [items for _, items in cloud.requests] == [
        [("box-a", CAPTURE), ("box-a", TELEMETRY), ("box-a", CAPTURE), ("box-a", TELEMETRY)],
        [("box-a", CAPTURE), ("box-a", TELEMETRY)],
    ]
    for n in range(3):
        wake(spool, "box-a", 20 + n, size=20_000)
    cloud = Cloud()
    assert rounds(spool, cloud, upload_batch_bytes=30_000) == [True]
    assert [items for _, items in cloud.requests] == [
        [("box-a", CAPTURE), ("box-a", TELEMETRY)],
        [("box-a", CAPTURE), ("box-a", TELEMETRY)],
        [("box-a", CAPTURE), ("box-a", TELEMETRY)],
    ]
    assert spool.pending(64) == []
