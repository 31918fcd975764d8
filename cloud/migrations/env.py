"""Alembic environment: the migrations are the schema."""

from __future__ import annotations

from alembic import context

from cloud.db import make_engine
from cloud.models import Base

config = context.config
target_metadata = Base.metadata


def _connectable():
    connection = config.attributes.get("connection")
    if connection is not None:
        return connection
    from cloud.settings import Settings

    return make_engine(Settings().resolved_database_url)


def run_migrations_online() -> None:
    connectable = _connectable()
    if hasattr(connectable, "connect"):
        with connectable.connect() as connection:
            _run(connection)
        connectable.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
