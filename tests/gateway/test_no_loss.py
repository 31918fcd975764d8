"""No loss, no leak (issue 11, gateway items 1–4): the spool, the ingestor and the forwarder on a real
SQLite file; the cloud's answers come from an in-memory httpx transport (the remote service)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from mcam import protocol
from typer.testing import CliRunner

from gateway.cli import gateway_app
from gateway.cloud import CloudClient, Retryable
from gateway.forwarder import Forwarder
from gateway.inbox import Incoming
from gateway.settings import GatewaySettings
from gateway.spool import CAPTURE, TELEMETRY, Spool
from gateway.subscriber import Ingestor
from tests.gateway.kit import ManualClock, chunks_of, fake_jpeg


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def spool(tmp_path, clock) -> Spool:
    s = Spool(tmp_path / "gateway.db", clock=clock, partial_quota_bytes=20_000)
    s.replace_devices([("dev1", 3600), ("dev2", 3600)])
    yield s
    s.close()


def settings_for(spool: Spool, **overrides) -> GatewaySettings:
    return GatewaySettings(data_dir=spool.path.parent, max_image_bytes=16 * 1024,
                           device_partial_quota_bytes=20_000, **overrides)


def feed(ingestor: Ingestor, serial: str, payloads: list[bytes], kind: str = protocol.CAPTURE) -> list[str]:
    topic = protocol.topic(serial, kind).encode()
    with ingestor.store.transaction():
        return [ingestor.handle(topic, payload) for payload in payloads]


def chunk_bytes(spool: Spool, serial: str) -> int:
    with spool.transaction() as db:
        return db.execute("SELECT COALESCE(SUM(length(data)),0) FROM chunks WHERE serial = ?", (serial,)).fetchone()[0]


def cli(spool: Spool, *args: str):
    return CliRunner().invoke(gateway_app, list(args), env={"MAILCAM_GATEWAY_DATA_DIR": str(spool.path.parent)})


# -- item 1: only the cloud's own JSON errors are final, and even then the bytes are kept ----------

def cloud_answering(status: int, body: bytes, content_type: str, seen: list[dict] | None = None) -> CloudClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(json.loads(request.content))
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return CloudClient(base_url="http://cloud.test", token="mcg_x", timeout_s=5,
                       transport=httpx.MockTransport(handler))


def one_capture(spool: Spool, seed: int = 1) -> tuple[str, bytes]:
    image = fake_jpeg(9000, seed=seed)
    cid, payloads = chunks_of(image, chunk_size=4096)
    feed(Ingestor(settings_for(spool), spool), "dev1", payloads)
    return cid, image


@pytest.mark.parametrize("status, body, content_type", [
    (413, b"<html><body><h1>413 Request Entity Too Large</h1>nginx</body></html>", "text/html"),
    (404, b"<html>404 Not Found</html>", "text/html"),
    (400, b"Bad Request", "text/plain"),
    (404, b'{"message": "no route"}', "application/json"),  # JSON, but not the cloud's shape
    (404, b'{"error": "not_found", "detail": "Not Found"}', "application/json"),  # a route missing mid-deploy
])
def test_a_4xx_that_is_not_the_clouds_own_error_is_retried_and_keeps_the_capture(spool, status, body, content_type):
    """Expected: the capture stays queued and is retried. Before: an HTML 413 from a reverse proxy (or a
    404 during a deploy, a 400 from a portal) was taken as final, dead-lettered and its bytes deleted."""
    cid, image = one_capture(spool)
    (item,) = spool.pending(10)

    async def attempt() -> bool:
        async with cloud_answering(status, body, content_type) as cloud:
            with pytest.raises(Retryable):
                await cloud.send(item, image)
            return await Forwarder(settings_for(spool), spool, cloud).forward(item)

    assert asyncio.run(attempt()) is False
    assert [(i.kind, i.key) for i in spool.pending(10)] == [(CAPTURE, cid)]
    assert spool.image("dev1", cid) == image
    assert spool.dead_letters() == []


def test_a_final_cloud_error_quarantines_the_image_and_replay_sends_it_again(spool):
    """Expected: the cloud's own refusal (JSON error code) dead-letters the capture with its image kept, and
    `mailcam gateway dead-letters replay ID` sends that same image again. Before: the bytes were deleted."""
    cid, image = one_capture(spool, seed=2)
    (item,) = spool.pending(10)
    refusal = b'{"error": "invalid_image", "detail": "not a decodable JPEG"}'

    async def forward(cloud: CloudClient) -> bool:
        async with cloud:
            return await Forwarder(settings_for(spool), spool, cloud).forward(item)

    assert asyncio.run(forward(cloud_answering(422, refusal, "application/json"))) is True
    assert spool.pending(10) == []
    (letter,) = spool.dead_letters()
    assert (letter.reason, letter.key, letter.replayable, letter.kept_bytes) == ("cloud_invalid_image", cid, True,
                                                                                 len(image))
    listing = cli(spool, "dead-letters")
    assert listing.exit_code == 0, listing.output
    assert f"#{letter.id}" in listing.output and "cloud_invalid_image" in listing.output
    assert f"kept {len(image)}B" in listing.output

    replayed = cli(spool, "dead-letters", "replay", str(letter.id))
    assert replayed.exit_code == 0, replayed.output
    assert spool.dead_letters() == []
    (again,) = spool.pending(10)
    assert (again.kind, again.key) == (CAPTURE, cid)
    seen: list[dict] = []
    item = again
    assert asyncio.run(forward(cloud_answering(200, b'{"status": "saved"}', "application/json", seen))) is True
    assert base64.b64decode(seen[0]["image"]) == image
    assert seen[0]["capture_id"] == cid and seen[0]["serial_number"] == "dev1"
    assert spool.pending(10) == []


def test_replay_help_teaches_the_commands(spool):
    out = cli(spool, "dead-letters", "--help").output
    assert "dead-letters replay --all" in out and "replay 12 13" in out
    refused = cli(spool, "dead-letters", "replay")
    assert refused.exit_code == 2 and "--all" in refused.output


# -- item 2: unknown serials are held, not dropped -------------------------------------------------

def test_capture_from_a_serial_not_listed_yet_is_held_then_forwarded_once_listed(spool):
    """Expected: a device that sends before its owner claims it keeps its photos: held, then forwarded when
    the cloud lists it. Before: `unknown_device` dead letter, acked, bytes gone."""
    unknown = []
    ingestor = Ingestor(settings_for(spool), spool, on_unknown_device=lambda: unknown.append(1))
    image = fake_jpeg(9000, seed=3)
    cid, payloads = chunks_of(image, chunk_size=4096)
    telemetry = protocol.encode_telemetry(ts=1, bat=3700, rssi=-60, wake="timer", awake_ms=1, fw="1", boot=1,
                                          err=None, pending=0)
    assert feed(ingestor, "newbox", payloads)[-1] == "completed"
    feed(ingestor, "newbox", [telemetry], protocol.TELEMETRY)
    assert unknown, "an unknown serial asks for a device-list refresh"
    assert spool.dead_letters() == []
    assert spool.pending(10) == []
    assert [(i.kind, i.serial) for i in spool.held()] == [(CAPTURE, "newbox"), (TELEMETRY, "newbox")]
    assert spool.outbox_stats()["held"] == 2

    spool.replace_devices([("dev1", 3600), ("dev2", 3600), ("newbox", 3600)])
    assert spool.release_held() == 2
    assert [(i.kind, i.key) for i in spool.pending(10)][0] == (CAPTURE, cid)
    assert spool.image("newbox", cid) == image


def test_a_serial_never_listed_is_quarantined_with_its_image_after_the_hold_time(spool, clock):
    """Expected: after `unknown_device_hold_s` the capture becomes a replayable `unknown_device` dead
    letter that keeps its image. Before: dead-lettered at once, without the bytes."""
    ingestor = Ingestor(settings_for(spool), spool)
    image = fake_jpeg(5000, seed=4)
    cid, payloads = chunks_of(image, chunk_size=4096)
    feed(ingestor, "ghost", payloads)
    assert spool.expire_held(hold_s=86400) == 0
    clock.now += 86401
    assert spool.expire_held(hold_s=86400) == 1
    assert spool.held() == [] and spool.used_bytes == 0
    (letter,) = spool.dead_letters()
    assert (letter.reason, letter.serial, letter.key, letter.kept_bytes) == ("unknown_device", "ghost", cid, len(image))
    assert cli(spool, "dead-letters", "replay", "--all").exit_code == 0
    (item,) = spool.pending(10)
    assert (item.kind, item.key, item.body) == (CAPTURE, cid, image)


def test_a_capture_the_cloud_calls_an_unknown_device_is_held_until_the_claim(spool):
    """Expected (issue 15): a photo of a box not claimed yet waits for the claim. Happened: when it was
    forwarded anyway (the gateway had no device list yet, or a stale one), the cloud's 404 "unknown
    device" quarantined it as `cloud_not_found`, which the claim never brought back."""
    cid, image = one_capture(spool, seed=6)
    (item,) = spool.pending(10)
    unknown = b'{"error": "not_found", "detail": "unknown device", "device_serial": "dev1"}'
    asked = []

    async def forward() -> bool:
        async with cloud_answering(404, unknown, "application/json") as cloud:
            forwarder = Forwarder(settings_for(spool), spool, cloud, on_unknown_device=lambda: asked.append(1))
            return await forwarder.forward(item)

    assert asyncio.run(forward()) is True
    assert spool.dead_letters() == [] and spool.pending(10) == []
    assert [(i.kind, i.key) for i in spool.held()] == [(CAPTURE, cid)]
    assert asked, "a device-list refresh is asked for"
    assert spool.release_held() == 0  # what the cloud said wins over the cached list until the next one
    spool.replace_devices([("dev1", 3600), ("dev2", 3600)])  # the next list names it: claimed
    assert spool.release_held() == 1
    assert [(i.kind, i.key) for i in spool.pending(10)] == [(CAPTURE, cid)] and spool.image("dev1", cid) == image


def test_a_device_claimed_after_the_hold_time_still_gets_its_photos_forwarded(spool, clock):
    """Expected (issue 15): a box that sends before its owner claims it keeps its photos until the claim,
    however late. Happened: after `unknown_device_hold_s` they were quarantined, a later claim did not
    bring them back (only a hand-typed `replay` did), and the quarantine's retention then deleted them."""
    ingestor = Ingestor(settings_for(spool), spool)
    image = fake_jpeg(5000, seed=5)
    cid, payloads = chunks_of(image, chunk_size=4096)
    feed(ingestor, "latebox", payloads)
    clock.now += 8 * 86400  # the homeowner claims it after a week and a day
    assert spool.expire_held(hold_s=7 * 86400) == 1
    spool.replace_devices([("dev1", 3600), ("dev2", 3600), ("latebox", 3600)])  # the cloud lists it: claimed
    assert spool.release_held() == 1
    (item,) = spool.pending(10)
    assert (item.kind, item.serial, item.key, item.body) == (CAPTURE, "latebox", cid, image)
    assert spool.dead_letters() == []


# -- item 3: an internal error keeps the message ----------------------------------------------------

def test_a_bug_while_ingesting_quarantines_the_payload_and_replay_ingests_it(spool, monkeypatch):
    """Expected: a message that hits a bug is kept (topic + payload) and can be replayed once fixed.
    Before: `internal_error` was recorded with the size only and the message acked: gone."""
    payload = protocol.encode_telemetry(ts=7, bat=3650, rssi=-60, wake="door", awake_ms=5, fw="1", boot=2,
                                        err=None, pending=0)
    topic = protocol.topic("dev2", protocol.TELEMETRY).encode()

    def bug(_payload):
        raise RuntimeError("a bug in the telemetry decoder")

    monkeypatch.setattr(protocol, "decode_telemetry", bug)  # fault injection: a bug in our own code path
    Ingestor(settings_for(spool), spool).commit_batch([Incoming(1, 1, 1, topic, payload)])
    monkeypatch.undo()
    (letter,) = spool.dead_letters()
    assert (letter.reason, letter.replayable, letter.kept_bytes) == ("internal_error", True, len(payload))
    assert spool.pending(10) == []

    assert cli(spool, "dead-letters", "replay", str(letter.id)).exit_code == 0
    (item,) = spool.pending(10)
    assert (item.kind, item.serial, item.meta["battery_voltage"]) == (TELEMETRY, "dev2", 3.65)
    assert spool.dead_letters() == []


# -- item 4: one device cannot fill the spool ----------------------------------------------------------

def test_chunks_beyond_the_declared_size_are_refused_at_once(spool):
    """Expected: the chunk that takes a capture past its declared size is refused and the capture's bytes
    freed. Before: up to n chunks of `size` bytes each were stored (~30 MB for a declared 4 MB)."""
    size, n, sha = 8000, 3, "0" * 64
    first = protocol.encode_chunk("bloat1", 0, n, size, sha, "automatic", None, 1, 3900, b"\xff\xd8" + b"y" * 7998)
    second = protocol.encode_chunk("bloat1", 1, n, size, sha, "automatic", None, 1, 3900, b"z" * 7999)
    chunk = [first, second]  # each valid alone (a body ≤ size), together twice the declared size
    ingestor = Ingestor(settings_for(spool), spool)
    assert feed(ingestor, "dev1", chunk[:1]) == ["stored"]
    assert feed(ingestor, "dev1", chunk[1:]) == ["dead"]
    assert spool.used_bytes == 0
    assert spool.outbox_stats()["partials"] == 0
    letter = spool.dead_letters()[0]
    assert (letter.reason, letter.key) == ("size_mismatch", "bloat1")


def test_a_device_flooding_partial_captures_stays_within_its_quota_and_others_flow(spool):
    """Expected: one device's never-completed captures are limited to its quota (oldest given up first) and
    another device's capture still completes. Before: no per-device limit; the partials grew until the
    global limit paused ingest for every device."""
    ingestor = Ingestor(settings_for(spool), spool)
    for k in range(12):
        _, payloads = chunks_of(fake_jpeg(9000, seed=100 + k), chunk_size=4096)
        feed(ingestor, "dev1", payloads[:2])  # 8 KB of a 9 KB capture, never completed
    assert chunk_bytes(spool, "dev1") <= 20_000
    evicted = [x for x in spool.dead_letters() if x.reason == "incomplete_capture"]
    assert len(evicted) >= 9 and all("quota" in x.detail for x in evicted)
    image = fake_jpeg(9000, seed=5)
    cid, payloads = chunks_of(image, chunk_size=4096)
    assert feed(ingestor, "dev2", payloads)[-1] == "completed"
    assert spool.image("dev2", cid) == image

    spool.close()  # the quota survives a restart (counted again from the tables)
    reopened = Spool(spool.path, partial_quota_bytes=20_000)
    try:
        _, payloads = chunks_of(fake_jpeg(9000, seed=200), chunk_size=4096)
        feed(Ingestor(settings_for(reopened), reopened), "dev1", payloads[:2])
        assert chunk_bytes(reopened, "dev1") <= 20_000
    finally:
        reopened.close()


def test_dead_letters_are_pruned_by_age_count_and_bytes(spool, clock):
    """Expected: the dead-letter table is bounded (age, count, kept bytes). Before: it grew forever."""
    for k in range(6):
        spool.dead_letter("internal_error", size=1000, kind="mqtt", topic="t", payload=bytes(1000), key=str(k))
        clock.now += 10
    spool.prune_dead_letters(max_age_s=45, max_count=100, max_bytes=10_000)
    assert [x.key for x in spool.dead_letters()] == ["5", "4", "3", "2"]  # older than 45 s: deleted
    spool.prune_dead_letters(max_age_s=1e9, max_count=3, max_bytes=10_000)
    assert [x.key for x in spool.dead_letters()] == ["5", "4", "3"]
    spool.prune_dead_letters(max_age_s=1e9, max_count=100, max_bytes=2000)
    kept = {x.key: x.kept_bytes for x in spool.dead_letters()}
    assert kept == {"5": 1000, "4": 1000, "3": 0}  # the oldest payload dropped, its record kept
    spool.dead_letter_max_bytes = 2500
    spool.dead_letter("internal_error", size=1000, kind="mqtt", topic="t", payload=bytes(1000), key="6")
    assert sum(x.kept_bytes for x in spool.dead_letters()) <= 2500  # enforced as letters arrive


def test_a_spool_written_by_the_previous_gateway_opens_and_keeps_its_rows(tmp_path):
    """A gateway upgraded in the field opens its old file: the new columns are added, nothing is lost."""
    import sqlite3

    path = tmp_path / "old" / "gateway.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:  # the tables as the previous release created them
        db.executescript("""
            CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, serial TEXT NOT NULL,
                key TEXT NOT NULL, meta TEXT NOT NULL, body BLOB, bytes INTEGER NOT NULL, created_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
            CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, reason TEXT NOT NULL,
                detail TEXT, topic TEXT, serial TEXT, key TEXT, size INTEGER NOT NULL);
            CREATE TABLE devices (serial TEXT PRIMARY KEY, wake_interval_s INTEGER, last_seen REAL, status TEXT);
            CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO outbox(kind, serial, key, meta, bytes, created_at)
                VALUES ('telemetry', 'dev1', 'k', '{}', 200, 1);
            INSERT INTO dead_letters(at, reason, size) VALUES (1, 'bad_topic', 3);
            INSERT INTO devices(serial, wake_interval_s) VALUES ('dev1', 3600);
            INSERT INTO kv(key, value) VALUES ('devices_loaded_at', '1');
        """)
    spool = Spool(path)
    try:
        assert [(i.kind, i.serial) for i in spool.pending(10)] == [(TELEMETRY, "dev1")]
        assert [(x.reason, x.replayable) for x in spool.dead_letters()] == [("bad_topic", False)]
        assert spool.known_devices() == {"dev1"}
        assert spool.used_bytes == 200
    finally:
        spool.close()
