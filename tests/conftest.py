"""Shared fixtures: real brokers and databases, never mocks of our own code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import Mosquitto
from tests.objectstore import MotoServer


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of this test session on a free port (use a unique topic or serial per test)."""
    broker = Mosquitto(workdir=tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test alone, for tests that stop or restart it."""
    broker = Mosquitto(workdir=tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    """moto's standalone S3 server (a stand-in for a real object store), one per test session."""
    server = MotoServer().start()
    yield server
    server.stop()


# --- databases -------------------------------------------------------------

from tests.databases import PostgresDatabase, SqliteTemplate, postgres_admin_url  # noqa: E402


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def _postgres() -> Iterator[PostgresDatabase | None]:
    admin = postgres_admin_url()
    if admin is None:
        yield None
        return
    database = PostgresDatabase(admin)
    yield database
    database.drop()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template, _postgres) -> str:
    """An empty, migrated database for this test: PostgreSQL if configured, else SQLite."""
    if _postgres is not None:
        _postgres.truncate()
        return _postgres.url
    return _sqlite_template.fresh(tmp_path / "mailcam.db")


@pytest.fixture
def clock():
    """A controllable clock starting at the real now (tokens and TTLs behave as in life)."""
    from datetime import UTC, datetime

    from cloud.clock import ManualClock

    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def cloud_settings(tmp_path: Path, database_url: str):
    from tests.cloudkit import make_settings

    return make_settings(tmp_path, database_url)


@pytest.fixture
def cloud_ctx(cloud_settings, clock):
    from cloud.context import AppContext

    ctx = AppContext.build(cloud_settings, clock=clock)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def cloud_app(cloud_ctx):
    from cloud.app import create_app

    return create_app(ctx=cloud_ctx)


@pytest.fixture
def api(cloud_app):
    """A TestClient on the real app (lifespan run: schema upgrade, no background workers)."""
    from fastapi.testclient import TestClient

    with TestClient(cloud_app) as client:
        yield client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `-m db` selects every test that touches the cloud database (run again on PostgreSQL in CI).
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
