"""Engine and session factory.

SQLite is the embedded default: WAL, a busy timeout, and every transaction
opened with ``BEGIN IMMEDIATE`` so two writers queue instead of failing with
"database is locked" halfway through a read-then-write.
Within one process the writers queue on a lock (``_WriterGate``) before they
ask SQLite: SQLite's busy handler polls with sleeps of up to 100 ms, so under
load its lock sat free while every waiter slept (bench/cloud_ingest.py: with the
gate, more captures/s and less CPU per capture). Other processes still meet the
busy timeout.
A transaction opened with the ``READ_ONLY`` execution option (``read_only_transaction``) is the
exception: it only reads, so it takes neither the gate nor SQLite's write lock.
PostgreSQL is used as is (READ COMMITTED) with row locks where it matters.

Every commit waits for the disk (SQLite ``synchronous=FULL``: an fsync of the WAL; PostgreSQL's
synchronous commit), so what was acknowledged survives a power cut, except a transaction opened
with the ``REDOABLE`` option (``redoable_transaction``): a worker's own bookkeeping, which its lease
redoes if it is lost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


SQLITE_BUSY_TIMEOUT_S = 30
# Pooled SQLite connections kept open: more than the threads that hold one at once (the request
# thread pool's 40, the workers, the group-commit leader). With SQLAlchemy's default (5 kept),
# under ingest load every connection returned past the fifth was closed and a later request
# opened a new one (its PRAGMAs, SQLite reading the schema again): seen in the server's profile
# under bench/cloud_ingest.py. An idle SQLite connection is a file handle and a small cache.
SQLITE_POOL_SIZE = 64
READ_ONLY = "mailcam_read_only"  # execution option: see read_only_transaction
REDOABLE = "mailcam_redoable"  # execution option: see redoable_transaction
_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


class _GatedConnection(sqlite3.Connection):
    """A pysqlite connection that gives the process's writer gate back when its transaction ends."""

    gate: threading.Lock | None = None
    holds_gate = False
    query_only = False  # PRAGMA query_only is on (set by a READ_ONLY transaction, cleared by the next other one)
    unsynced = False  # PRAGMA synchronous is NORMAL (set by a REDOABLE transaction, back to FULL by the next other)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_gate()

    def take_gate(self) -> None:
        if self.gate is not None and not self.holds_gate:
            # Bounded like SQLite's own wait; past it, BEGIN IMMEDIATE meets the busy timeout as before.
            self.holds_gate = self.gate.acquire(timeout=SQLITE_BUSY_TIMEOUT_S)

    def release_gate(self) -> None:
        if self.holds_gate and self.gate is not None:
            self.holds_gate = False
            self.gate.release()


def _gate_for(url: str) -> threading.Lock:
    with _gates_lock:
        return _gates.setdefault(url, threading.Lock())


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S, "factory": _GatedConnection},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        _configure_sqlite(engine, _gate_for(url))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        if conn.get_execution_options().get(REDOABLE):
            # The transaction's first statement (psycopg opens it); LOCAL: it ends with the transaction.
            conn.connection.dbapi_connection.execute("SET LOCAL synchronous_commit TO OFF")


def _configure_sqlite(engine: Engine, gate: threading.Lock) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        if isinstance(dbapi_conn, _GatedConnection):
            dbapi_conn.gate = gate
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer 200, so an acknowledged capture survives power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # BEGIN and the query_only switch go straight to the driver: through exec_driver_sql each cost ~50 µs
    # more CPU (SQLAlchemy's execution path, for a statement with no parameters and no result), and every
    # transaction has one (a vision job has four, and most switch query_only).
    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        dbapi_conn = conn.connection.dbapi_connection
        gated = isinstance(dbapi_conn, _GatedConnection)
        if conn.get_execution_options().get(READ_ONLY):
            # A deferred BEGIN: one WAL snapshot from the first read, no write lock, no gate, so it never
            # queues behind the writers. query_only turns a write in it into an error at once (a
            # read-then-write here could fail on a stale snapshot only under load, so it is not allowed).
            if gated and not dbapi_conn.query_only:
                dbapi_conn.execute("PRAGMA query_only=ON")
                dbapi_conn.query_only = True
            dbapi_conn.execute("BEGIN")
            return
        if gated and dbapi_conn.query_only:
            dbapi_conn.execute("PRAGMA query_only=OFF")
            dbapi_conn.query_only = False
        unsynced = bool(conn.get_execution_options().get(REDOABLE))
        if gated and dbapi_conn.unsynced != unsynced:  # SQLite refuses to change it inside a transaction
            dbapi_conn.execute(f"PRAGMA synchronous={'NORMAL' if unsynced else 'FULL'}")
            dbapi_conn.unsynced = unsynced
        if gated:
            dbapi_conn.take_gate()  # given back by the connection's commit, rollback or close
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            if gated:
                dbapi_conn.release_gate()
            raise


def read_only_transaction(session: Session) -> None:
    """Open ``session``'s next transaction for reading only; call before its first statement.

    On SQLite it then waits for no writer (see the module docstring), and any write in it fails
    (``sqlite3.OperationalError``: "attempt to write a readonly database"); the caller commits it
    before it writes. PostgreSQL: a normal transaction (its readers never wait for writers anyway).
    """
    session.connection(execution_options={READ_ONLY: True})


def redoable_transaction(session: Session) -> None:
    """Open ``session``'s next transaction for work that is redone if it is lost: its commit does not
    wait for the disk. Call before its first statement.

    For a worker's own bookkeeping that its lease redoes after a restart (a vision job's claim and
    result). SQLite writes the commit to its WAL without an fsync (``synchronous=NORMAL`` for this
    transaction); PostgreSQL commits it asynchronously (``synchronous_commit`` off). A power cut or a
    crash of the machine (on SQLite not a crash of the process alone: the WAL is in the OS's cache)
    may lose it, with the other such commits since the last durable one; it never tears the
    database. Both databases log commits in order, so the next durable commit (an ingest's, a
    notification's claim) makes every earlier one durable too: an alert is never sent about a
    result that a power cut could still take back. Nothing told to anyone outside (an HTTP answer,
    a paid call's cost) may rest on this commit alone.
    """
    session.connection(execution_options={REDOABLE: True})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with factory() as session, session.begin():
        yield session


def upsert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can end in ON CONFLICT, in the dialect of the session's database.

    SQLite and PostgreSQL spell ``on_conflict_do_nothing``/``do_update`` alike; only the
    ``insert`` they come from differs. Every upsert in the cloud starts here.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(table)
