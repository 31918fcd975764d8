"""Capture ingest authenticates in a read-only transaction (``cloud.db.read_only_transaction``):
it never queues behind SQLite's writers, and a gateway is still marked seen by the captures it forwards."""

import re
import sqlite3
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from cloud.db import read_only_transaction
from cloud.models import Capture, Device
from tests.cloudkit import capture_body, new_account, new_device

pytestmark = pytest.mark.db


def test_a_capture_forwarded_by_a_gateway_marks_the_gateway_seen(api, cloud_ctx, clock):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    token = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()["gateway_token"]
    (row,) = api.get("/api/gateways/", headers=alice.headers).json()
    assert row["state"] == "never_seen"

    clock.advance(timedelta(minutes=1))
    response = api.post(
        "/api/device/capture/",
        json=capture_body("box-1", capture_id="box-1-gw-1"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    (row,) = api.get("/api/gateways/", headers=alice.headers).json()
    assert row["state"] == "online"
    assert row["last_seen_at"].replace("Z", "+00:00") == clock.now().isoformat()
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(Capture.capture_id)) == "box-1-gw-1"


def test_a_repeated_capture_is_answered_while_another_process_holds_the_write_lock(api, cloud_ctx):
    """A gateway's retry of a capture already stored writes nothing, so it must not wait for writers
    (before: its token lookup took the write lock and waited out the 30 s busy timeout)."""
    if cloud_ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    body = capture_body("box-1", capture_id="box-1-0001")
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200

    other = sqlite3.connect(cloud_ctx.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (the CLI, a second replica) writing
    answers: list[int] = []
    try:
        retry = threading.Thread(
            target=lambda: answers.append(api.post("/api/device/capture/", json=body, headers=box.headers).status_code)
        )
        retry.start()
        retry.join(timeout=10)
        assert answers == [200], "the repeat waited for the write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
        retry.join()


def test_a_write_in_a_read_only_transaction_fails_and_the_connection_writes_again_after_it(cloud_ctx, api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    with cloud_ctx.sessions() as session:
        read_only_transaction(session)
        assert session.scalar(select(Device.serial)) == "box-1"
        if cloud_ctx.engine.dialect.name == "sqlite":
            with pytest.raises(Exception, match="readonly"):
                session.execute(update(Device).values(wake_interval_s=120))
        session.rollback()
        # the same pooled connection, in a normal transaction: writes again
        session.execute(update(Device).values(wake_interval_s=180))
        session.commit()
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(Device.wake_interval_s)) == 180


def test_each_token_is_looked_up_in_the_table_its_prefix_names(api, cloud_ctx):
    """A gateway's requests (two per wake) looked in the devices table first, in vain (bench/e2e.py)."""
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    gateway_token = api.post("/api/gateways/", json={"name": "pi"}, headers=alice.headers).json()["gateway_token"]
    lookups: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        if re.search(r"\bWHERE\b.*\btoken_hash\b", statement, re.S):
            lookups.append(re.search(r"\bFROM\s+(\w+)", statement).group(1))

    event.listen(cloud_ctx.engine, "before_cursor_execute", record)
    try:
        for token, capture_id in ((gateway_token, "box-1-gw"), (box.device_token, "box-1-own")):
            response = api.post("/api/device/capture/", json=capture_body("box-1", capture_id=capture_id),
                                headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
        response = api.post("/api/device/capture/", json=capture_body("box-1", capture_id="box-1-bad"),
                            headers={"Authorization": "Bearer mcg_not-a-token"})
        assert response.status_code == 401
    finally:
        event.remove(cloud_ctx.engine, "before_cursor_execute", record)
    assert lookups == ["gateways", "devices", "gateways", "devices"]  # a bad token is looked for in both
