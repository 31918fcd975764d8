"""Which commits wait for the disk (``cloud.db.redoable_transaction``).

What was acknowledged (a capture's 200) or spent (a model call) must survive a power cut: its commit
waits for the disk (SQLite's WAL fsync, PostgreSQL's synchronous commit). A vision job's claim and
result do not: lost, the job is claimed and run again. Each commit is checked at the moment it is
made, on the connection that makes it: SQLite's ``synchronous`` level, PostgreSQL's ``synchronous_commit``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event, text

from cloud.db import make_engine, make_session_factory, redoable_transaction
from mailcam import scenes
from mailcam.mailboxes import Item, Mailbox, Wake
from tests.vision.fake_openai import GOOD, Reply

pytestmark = pytest.mark.db

_WRITE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.I)


def _waits_for_disk(engine: Engine, dbapi_connection) -> bool:
    if engine.dialect.name == "sqlite":
        return dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL; NORMAL is 1
    return dbapi_connection.execute("SHOW synchronous_commit").fetchone()[0] == "on"


@contextmanager
def commits(engine: Engine) -> Iterator[list[tuple[frozenset[str], bool]]]:
    """Every commit that wrote something, as it is made: the tables it wrote, and whether it waits for the disk."""
    written: dict[int, set[str]] = defaultdict(set)
    made: list[tuple[frozenset[str], bool]] = []

    def on_statement(conn, cursor, statement, parameters, context, executemany) -> None:
        match = _WRITE.match(statement)
        if match:
            written[id(conn.connection.dbapi_connection)].add(match.group(1).lower())

    def on_commit(conn) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        tables = written.pop(id(dbapi_connection), set())
        if tables:
            made.append((frozenset(tables), _waits_for_disk(engine, dbapi_connection)))

    def on_rollback(conn) -> None:
        written.pop(id(conn.connection.dbapi_connection), None)

    listeners = (("before_cursor_execute", on_statement), ("commit", on_commit), ("rollback", on_rollback))
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield made
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


def test_a_capture_waits_for_the_disk_and_its_analysis_does_not(make_env):
    env = make_env()
    box = Mailbox(31)
    env.calibrate(env.shoot(box, [], 1))
    with commits(env.ctx.engine) as made:
        env.capture(box.frame([Item("letter", 1)], Wake(2)))
        assert env.run() == 1
        env.capture(box.frame([], Wake(3)))  # after the job's commits, on the connections they used
    ingest = [synced for tables, synced in made if "captures" in tables]
    claim = [synced for tables, synced in made if tables == {"analysis_jobs", "analyses"}]
    result = [synced for tables, synced in made if "ai_operations" in tables]
    assert ingest == [True, True]  # answered 200 after it: on disk first
    assert claim == [False] and result == [False]  # lost to a power cut, the job runs again


def test_a_result_that_cost_money_waits_for_the_disk(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.json(GOOD))
    with commits(env.ctx.engine) as made:
        env.capture(scenes.render("letters", 1))
        assert env.run() == 1
    (op,) = env.operations()
    assert op.kind == "call" and op.cost_usd > 0
    assert [synced for tables, synced in made if "ai_operations" in tables] == [True]


def test_a_connection_waits_for_the_disk_again_after_a_redoable_transaction(database_url):
    engine = make_engine(database_url)  # a pool of its own: one thread, one connection, used three times
    try:
        sessions = make_session_factory(engine)
        seen = []
        for redoable in (True, False, True, False):
            with sessions() as session:
                if redoable:
                    redoable_transaction(session)
                session.execute(text("UPDATE users SET name = name"))
                dbapi_connection = session.connection().connection.dbapi_connection
                seen.append((id(dbapi_connection), _waits_for_disk(engine, dbapi_connection)))
                session.commit()
        assert len({connection for connection, _ in seen}) == 1
        assert [synced for _, synced in seen] == [False, True, False, True]
    finally:
        engine.dispose()
