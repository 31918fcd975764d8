"""The live event stream (GET /api/events/): a capture's events in order, resumable, per user.

Found in issue 16: the dashboard re-fetched everything on a 15 s timer; nothing was pushed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from cloud import live, wakeups
from cloud.api.routes import live as live_route
from cloud.app import create_app
from cloud.context import AppContext
from cloud.models import LiveEvent
from cloud.vision.worker import process_pending
from tests.cloudkit import Account, LiveServer, OwnedDevice, capture_body, jpeg_bytes, new_account, new_device
from tests.gateway.kit import wait_until
from tests.livekit import DEADLINE_S, SseClient


@dataclass
class Home:
    server: LiveServer
    http: httpx.Client
    ctx: AppContext
    owner: Account
    user_id: int
    box: OwnedDevice

    def capture(self, n: int) -> str:
        capture_id = f"{self.box.serial}-{n:04d}"
        body = capture_body(self.box.serial, jpeg_bytes(seed=n), capture_id=capture_id)
        r = self.http.post("/api/device/capture/", json=body, headers=self.box.headers)
        assert r.status_code == 200, r.text
        return capture_id

    def stream(self, **kwargs) -> SseClient:
        return SseClient(self.server.url, **kwargs)

    def ticket(self) -> str:
        r = self.http.post("/api/events/ticket/", headers=self.owner.headers)
        assert r.status_code == 201, r.text
        return r.json()["ticket"]


@pytest.fixture
def home(cloud_ctx: AppContext) -> Iterator[Home]:
    with LiveServer(create_app(ctx=cloud_ctx)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        owner = new_account(http, "alice@example.com")
        user_id = http.get("/api/users/me/", headers=owner.headers).json()["id"]
        yield Home(server, http, cloud_ctx, owner, user_id, new_device(http, owner, "box-1"))


def test_a_captures_events_arrive_in_order_and_a_stream_resumes_after_last_event_id(home):
    with home.stream(headers=home.owner.headers).wait_open() as stream:
        capture_id = home.capture(1)
        received = stream.next()
        assert (received.event, received.data["data"]["capture_id"]) == ("capture_received", capture_id)
        assert received.data["device_serial"] == "box-1" and received.id == received.data["id"]
        assert process_pending(home.ctx) == 1  # the vision worker's pass (workers are off in this app)
        analysed = stream.take(2)
    # Uncalibrated: the owner is asked for an empty photo, then the analysis is reported.
    assert [e.event for e in analysed] == ["calibration_needed", "analysis_completed"]
    assert all(e.data["data"]["capture_id"] == capture_id for e in analysed)
    assert received.id < analysed[0].id < analysed[1].id

    # The connection dropped after the first event: a new stream takes up from there, same ids.
    resume = {"Last-Event-ID": str(received.id), **home.owner.headers}
    with home.stream(headers=resume) as again:
        replayed = again.take(2)
    assert [(e.id, e.event) for e in replayed] == [(e.id, e.event) for e in analysed]


def test_an_event_is_pushed_within_moments_of_its_commit(home):
    """The stream waits on its user's wakeup, not a poll (its keep-alive here is far longer)."""
    home.ctx.settings.live_keepalive_s = 60
    commits: list[float] = []
    unsubscribe = home.ctx.wakeups.subscribe_items(  # called by the commit, as the stream's own subscription
        wakeups.live_topic(home.user_id), lambda events: commits.append(time.perf_counter())
    )
    try:
        with home.stream(headers=home.owner.headers).wait_open() as stream:
            latencies = []
            for n in range(1, 6):
                home.capture(n)
                latencies.append(stream.next(timeout=5).received_at - commits[n - 1])
    finally:
        unsubscribe()
    print(f"commit -> SSE client: median {statistics.median(latencies) * 1000:.1f} ms")
    assert statistics.median(latencies) < 0.25, latencies


def test_a_browser_opens_the_stream_with_a_single_use_ticket_not_its_token(home):
    ticket = home.ticket()
    assert ticket.startswith("mcs_") and home.owner.token not in ticket
    with home.stream(params={"ticket": ticket}).wait_open() as stream:
        assert stream.status == 200
        home.capture(1)
        assert stream.next().event == "capture_received"
    with home.stream(params={"ticket": ticket}).wait_open() as reused:
        assert reused.status == 401 and b"not_authenticated" in reused.error_body
    with home.stream(params={"token": home.owner.token}).wait_open() as token_in_url:
        assert token_in_url.status == 401  # a login token in the URL is not a way in
    late = home.ticket()
    home.ctx.clock.advance(home.ctx.settings.stream_ticket_ttl_s + 1)
    with home.stream(params={"ticket": late}).wait_open() as expired:
        assert expired.status == 401


def test_a_stream_shows_only_the_callers_own_events(home):
    bob = new_account(home.http, "bob@example.com")
    bobs_box = new_device(home.http, bob, "bob-box")
    with (
        home.stream(headers=bob.headers).wait_open() as bobs,
        home.stream(headers=home.owner.headers).wait_open() as alices,
    ):
        home.capture(1)
        assert alices.next().event == "capture_received"
        r = home.http.post(
            "/api/device/capture/", json=capture_body("bob-box", jpeg_bytes(seed=9)), headers=bobs_box.headers
        )
        assert r.status_code == 200, r.text
        first = bobs.next()  # Alice's capture came first, but never to Bob
        assert (first.event, first.data["device_serial"]) == ("capture_received", "bob-box")


def test_a_client_whose_last_event_was_pruned_is_told_to_reload(home):
    home.capture(1)
    with home.ctx.sessions() as session:
        first = live.newest_id(session)
    home.ctx.clock.advance(home.ctx.settings.live_retention_s + 60)
    home.capture(2)
    with home.ctx.sessions() as session:
        assert live.prune(session, home.ctx) == 1
        session.commit()
    with home.stream(headers={"Last-Event-ID": str(first - 1), **home.owner.headers}) as stream:
        assert stream.next().event == "reset"
        assert stream.next().event == "capture_received"  # what is still kept follows


def _count_event_bodies_read(engine) -> list[int]:
    """Count the live-event bodies the database hands back (each is JSON decoded): a list of one counter."""
    decoded = [0]
    plain = engine.dialect._json_deserializer or json.loads

    def counting(text: str):
        decoded[0] += 1
        return plain(text)

    engine.dialect._json_deserializer = counting
    return decoded


def test_a_stream_reads_each_events_body_once_however_busy_its_owner(home):
    """Found by bench/e2e.py (one owner, 100 mailboxes): each wakeup re-read and decoded every event of the
    last SETTLE_S seconds to find the few new ones, so a stream's cost grew with the square of the rate."""
    decoded = _count_event_bodies_read(home.ctx.engine)
    with home.stream(headers=home.owner.headers).wait_open() as stream:
        for n in range(1, 31):
            home.capture(n)
            assert stream.next().data["data"]["capture_id"] == f"box-1-{n:04d}"
    assert decoded[0] <= 30 + 3, f"{decoded[0]} event bodies read for 30 events"


def test_an_event_committed_late_with_a_lower_id_is_still_sent_once(home):
    """PostgreSQL assigns ids at insert, not commit: a slower producer's event can appear below one already
    sent. The stream looks back SETTLE_S for such events and sends each exactly once."""
    with home.ctx.sessions() as session:
        newest = live.newest_id(session)

    def commit_event(event_id: int, capture_id: str) -> None:
        with home.ctx.sessions() as session, session.begin():
            session.add(LiveEvent(id=event_id, user_id=home.user_id, kind="capture_received", device_serial="box-1",
                                  data={"capture_id": capture_id}, created_at=home.ctx.clock.now()))
            wakeups.mark(session, wakeups.live_topic(home.user_id))

    with home.stream(headers=home.owner.headers).wait_open() as stream:
        commit_event(newest + 2, "fast")
        assert stream.next().data["data"]["capture_id"] == "fast"
        commit_event(newest + 1, "slow")  # its id was taken first, its commit came last
        late = stream.next()
        assert (late.id, late.data["data"]["capture_id"]) == (newest + 1, "slow")
        if home.ctx.engine.dialect.name == "postgresql":  # ids given by hand: move the sequence past them
            with home.ctx.sessions() as session, session.begin():
                session.execute(text("SELECT setval(pg_get_serial_sequence('live_events', 'id'), :id)"),
                                {"id": newest + 2})
        home.capture(1)  # a later event: nothing sent before comes again
        assert stream.next().data["data"]["capture_id"] == "box-1-0001"


def _count_reads(monkeypatch) -> list[int]:
    """Count the streams' reads of the database (each a worker-thread hop and a transaction): a list of one."""
    reads = [0]
    plain_read = live_route._read

    def counted(*args, **kwargs):
        reads[0] += 1
        return plain_read(*args, **kwargs)

    monkeypatch.setattr(live_route, "_read", counted)
    return reads


def test_a_burst_of_events_is_read_once_not_once_per_event(home, monkeypatch):
    """Found in issue 16's profile: a capture raises three or four events within milliseconds (stored,
    telemetry, analysed, delivered), and the stream read the database once per wakeup: a worker thread
    and a transaction each, a fifth of the request threads' CPU. A burst is now read once."""
    home.ctx.settings.live_read_interval_s = 0.5  # wide enough that the burst below falls inside it
    reads = _count_reads(monkeypatch)

    def commit_event(capture_id: str) -> None:
        with home.ctx.sessions() as session, session.begin():
            session.add(LiveEvent(user_id=home.user_id, kind="capture_received", device_serial="box-1",
                                  data={"capture_id": capture_id}, created_at=home.ctx.clock.now()))
            wakeups.mark(session, wakeups.live_topic(home.user_id))

    with home.stream(headers=home.owner.headers).wait_open() as stream:
        commit_event("first")
        assert stream.next().data["data"]["capture_id"] == "first"
        read_before_burst = reads[0]
        for n in range(5):  # each its own commit and wakeup
            commit_event(f"burst-{n}")
        burst = stream.take(5)
    assert [e.data["data"]["capture_id"] for e in burst] == [f"burst-{n}" for n in range(5)]
    assert reads[0] - read_before_burst == 1, f"{reads[0] - read_before_burst} reads for a burst of 5 events"


def test_events_committed_in_this_process_reach_the_stream_without_a_read(home, monkeypatch):
    """Measured for issue 16: each read cost a worker-thread hop and a transaction, ~1.9 ms of the server's
    CPU per read (a stream read up to 10 times a second for a busy owner). The commit now hands this
    process's streams its events: only the catch-up at the start reads."""
    reads = _count_reads(monkeypatch)
    with home.stream(headers=home.owner.headers).wait_open() as stream:
        wait_until(lambda: reads[0] == 1, DEADLINE_S, "the catch-up read")
        for n in range(1, 6):
            home.capture(n)
            assert stream.next().data["data"]["capture_id"] == f"box-1-{n:04d}"
    assert reads[0] == 1, f"{reads[0] - 1} reads for 5 events committed here"


def test_a_handed_event_is_the_event_a_replay_reads(home):
    """What a stream is handed at the commit and what it reads back after a reconnect (Last-Event-ID) are
    the same bytes: a client cannot tell the two ways apart."""
    with home.stream(headers=home.owner.headers).wait_open() as stream:
        home.capture(1)
        handed = stream.next()
    with home.stream(headers={"Last-Event-ID": str(handed.id - 1), **home.owner.headers}) as replay:
        read = replay.next()
    assert (read.id, read.data) == (handed.id, handed.data)


def test_a_savepoint_rolled_back_takes_the_items_it_carried(cloud_ctx):
    """Ingest's group commit puts each capture in a savepoint: a capture that fails there must not reach
    anyone's screen, while the batch's other captures do, once their transaction commits."""
    topic = "live:test"
    handed: list[list[str]] = []
    unsubscribe = cloud_ctx.wakeups.subscribe_items(topic, handed.append)
    try:
        with cloud_ctx.sessions() as session, session.begin():
            wakeups.carry(session, topic, "kept")
            with session.begin_nested():
                wakeups.carry(session, topic, "released savepoint")
            failed = session.begin_nested()
            wakeups.carry(session, topic, "rolled back")
            with session.begin_nested():
                wakeups.carry(session, topic, "inside the one rolled back")
            failed.rollback()
            assert handed == []  # nothing before the commit
        assert handed == [["kept", "released savepoint"]]
        with cloud_ctx.sessions() as session:
            session.begin()
            wakeups.carry(session, topic, "never committed")
            session.rollback()
        assert handed == [["kept", "released savepoint"]]
    finally:
        unsubscribe()
