"""Test databases: SQLite always; PostgreSQL when MAILCAM_TEST_POSTGRES_URL is set.

Each test gets an empty, migrated database: on SQLite a copy of a template
file migrated once per session; on PostgreSQL a database of this session
(uniquely named, so parallel runs never meet) truncated between tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from cloud import migrate
from cloud.db import make_engine

POSTGRES_ENV = "MAILCAM_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


class SqliteTemplate:
    def __init__(self, workdir: Path) -> None:
        self.template = workdir / "template.db"
        engine = make_engine(f"sqlite:///{self.template}")
        migrate.upgrade(engine)
        engine.dispose()

    def fresh(self, path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.template, path)
        return f"sqlite:///{path}"


class PostgresDatabase:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.name = f"mailcam_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        base, _, _ = self.admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"
        engine = make_engine(self.url)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            self.tables = [
                row[0]
                for row in conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename!='alembic_version'")
                )
            ]
        engine.dispose()

    def truncate(self) -> None:
        # A previous test's background thread may still be finishing a query: TRUNCATE then waits for
        # its locks, and PostgreSQL may pick the TRUNCATE as a deadlock victim. Try again.
        engine = create_engine(self.url)
        try:
            for attempt in range(5):
                try:
                    with engine.begin() as conn:
                        if self.tables:
                            conn.execute(text(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE"))
                    return
                except OperationalError:
                    if attempt == 4:
                        raise
        finally:
            engine.dispose()

    def drop(self) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()
