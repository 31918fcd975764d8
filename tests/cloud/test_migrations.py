"""The Alembic migrations are the schema: they must build exactly what the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from cloud import migrate
from cloud.db import make_engine
from cloud.models import Base


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ; write a migration for: {diff}"
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url):
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)  # already at head: a no-op, not an error
        assert "captures" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
