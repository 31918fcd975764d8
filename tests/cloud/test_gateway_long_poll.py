"""The gateway's trigger long-poll: woken by an in-process event, capped per gateway.

Found in review: every long-poll queried the database every 0.2 s (40 idle polls cost
0.57 CPU-s/s), and one gateway token could hold any number of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import event

from cloud.app import create_app
from cloud.context import AppContext
from cloud.models import Device, User
from cloud.services import triggers
from tests.cloudkit import LiveServer, new_account, new_device

DEADLINE_S = 15  # far below the long-poll's own wait (60 s) and the safety poll (30 s)


@pytest.fixture
def server(cloud_ctx) -> Iterator[LiveServer]:
    cloud_ctx.settings.gateway_long_polls_per_gateway = 2
    cloud_ctx.settings.gateway_long_poll_safety_s = 30
    with LiveServer(create_app(ctx=cloud_ctx)) as live:
        yield live


class TriggerQueries:
    """Counts SQL statements that read the triggers table (each long-poll snapshot makes one)."""

    def __init__(self, ctx: AppContext) -> None:
        self.count = 0
        self.changed = threading.Condition()
        event.listen(ctx.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "manual_triggers" in statement:
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, timeout=DEADLINE_S), self.count


class LongPoll:
    def __init__(self, server: LiveServer, token: str, version: str | None) -> None:
        self.result: httpx.Response | None = None
        params = {"wait": 60, **({"version": version} if version else {})}
        self._thread = threading.Thread(
            target=self._run, args=(server.url, token, params), name="long-poll", daemon=True
        )
        self._thread.start()

    def _run(self, url: str, token: str, params: dict) -> None:
        self.result = httpx.get(url + "/api/gateway/triggers/", params=params,
                                headers={"Authorization": f"Bearer {token}"}, timeout=90)

    def wait(self) -> httpx.Response:
        self._thread.join(DEADLINE_S)
        assert self.result is not None, "the long-poll did not return"
        return self.result

    @property
    def returned(self) -> bool:
        return self.result is not None


@pytest.fixture
def home(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        owner = new_account(client, "alice@example.com")
        new_device(client, owner, "box-1")
        token = client.post("/api/gateways/", json={"name": "home"}, headers=owner.headers).json()["gateway_token"]
        version = client.get("/api/gateway/triggers/", headers={"Authorization": f"Bearer {token}"}).json()["version"]
        yield client, owner, token, version


def test_an_idle_long_poll_does_not_query_and_a_click_wakes_it(server, cloud_ctx, home):
    """Expected: no queries while idle; the click's commit wakes the waiter. Before: a query every 0.2 s."""
    client, owner, token, version = home
    queries = TriggerQueries(cloud_ctx)
    poll = LongPoll(server, token, version)
    queries.wait_for(1)  # its first snapshot: it is waiting now
    threading.Event().wait(2.0)  # observe an idle stretch (nothing should happen in it)
    assert queries.count <= 2, f"{queries.count} trigger queries by one idle long-poll"
    click = client.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=owner.headers)
    assert click.status_code in (200, 202), click.text
    body = poll.wait().json()
    assert [t["trigger_id"] for t in body["triggers"]] == [click.json()["trigger_id"]]


def test_a_third_long_poll_of_one_gateway_releases_the_oldest(server, cloud_ctx, home):
    """Expected: at most 2 waiting per gateway; a new one releases the oldest at once (a gateway whose
    old connection was lost gets through). Before: every one of them was held (and polled)."""
    client, owner, token, version = home
    queries = TriggerQueries(cloud_ctx)
    polls = []
    for n in range(3):
        polls.append(LongPoll(server, token, version))
        queries.wait_for(n + 1)
    released = polls[0].wait()
    assert released.status_code == 200 and released.json()["version"] == version
    assert not polls[1].returned and not polls[2].returned
    click = client.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=owner.headers)
    for poll in polls[1:]:  # one commit wakes every waiter
        assert [t["trigger_id"] for t in poll.wait().json()["triggers"]] == [click.json()["trigger_id"]]


def _click_on_another_replica(cloud_settings, clock) -> str:
    """Alice's "take a photo now", committed by a second cloud process on the same database."""
    other = AppContext.build(cloud_settings, clock=clock)
    try:
        with other.sessions() as session:
            user = session.query(User).filter_by(email="alice@example.com").one()
            device = session.query(Device).filter_by(serial="box-1").one()
            made = triggers.request_trigger(session, other, user, device).trigger.trigger_id
            session.commit()
            return made
    finally:
        other.engine.dispose()


def test_a_trigger_made_by_another_replica_is_seen_by_the_safety_poll(cloud_ctx, cloud_settings, clock, home,
                                                                      server):
    """No in-process event for another process's click: the slow safety poll still finds it."""
    _client, _owner, token, version = home
    cloud_ctx.settings.gateway_long_poll_safety_s = 0.5
    queries = TriggerQueries(cloud_ctx)
    poll = LongPoll(server, token, version)
    queries.wait_for(1)
    made = _click_on_another_replica(cloud_settings, clock)
    assert [t["trigger_id"] for t in poll.wait().json()["triggers"]] == [made]


def test_a_trigger_made_by_another_replica_wakes_the_long_poll_at_once_on_postgresql(
    cloud_ctx, cloud_settings, clock, home, server
):
    """Issue 16: on PostgreSQL the other replica's commit carries a NOTIFY; the safety poll (30 s
    here) is not what answers."""
    if cloud_ctx.engine.dialect.name != "postgresql":
        pytest.skip("replicas share a PostgreSQL (MAILCAM_TEST_POSTGRES_URL)")
    _client, _owner, token, version = home
    queries = TriggerQueries(cloud_ctx)
    poll = LongPoll(server, token, version)
    queries.wait_for(1)
    made = _click_on_another_replica(cloud_settings, clock)
    committed = time.monotonic()
    assert [t["trigger_id"] for t in poll.wait().json()["triggers"]] == [made]
    assert time.monotonic() - committed < 2.0
