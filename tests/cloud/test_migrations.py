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


def test_0016_live_moves_analysis_jobs_to_the_job_toolkits_states_and_back(cloud_ctx):
    """Rows queued or failed before the upgrade read pending and dead after it; running and done
    stay; a downgrade gives the old words back."""
    from alembic import command
    from sqlalchemy import text

    from tests.cloud.test_wakeups import store_capture
    from tests.notify.conftest import make_owner

    owner = make_owner(cloud_ctx)
    for n in range(4):
        store_capture(cloud_ctx, owner.serial, n)
    config = migrate.alembic_config()

    def migrate_to(revision: str, move) -> None:
        with cloud_ctx.engine.begin() as connection:
            config.attributes["connection"] = connection
            move(config, revision)

    def statuses() -> list[str]:
        with cloud_ctx.engine.connect() as connection:
            return list(connection.execute(text("SELECT status FROM analysis_jobs ORDER BY id")).scalars())

    migrate_to("0015_roles", command.downgrade)
    assert statuses() == ["queued"] * 4
    with cloud_ctx.engine.begin() as connection:
        for job_id, old in zip(range(1, 5), ["queued", "running", "done", "failed"], strict=True):
            connection.execute(text("UPDATE analysis_jobs SET status = :s WHERE id = :i"), {"s": old, "i": job_id})
    migrate_to("head", command.upgrade)
    assert statuses() == ["pending", "running", "done", "dead"]
    migrate_to("0015_roles", command.downgrade)
    assert statuses() == ["queued", "running", "done", "failed"]
    migrate_to("head", command.upgrade)


def test_0017_outbox_states_moves_notifications_to_job_states_with_an_outcome_and_back(cloud_ctx):
    """The outbox's old words become a job state plus what happened to the message
    (held: pending + held, sending: running, sent/skipped: done, failed/unknown: dead), and a
    downgrade gives the old words back."""
    from alembic import command
    from sqlalchemy import text

    from tests.notify.conftest import make_owner

    owner = make_owner(cloud_ctx)
    config = migrate.alembic_config()

    def migrate_to(revision: str, move) -> None:
        with cloud_ctx.engine.begin() as connection:
            config.attributes["connection"] = connection
            move(config, revision)

    def rows(columns: str) -> list[tuple]:
        with cloud_ctx.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(f"SELECT {columns} FROM notifications ORDER BY id"))]

    old_words = ["pending", "held", "sending", "sent", "failed", "skipped", "unknown"]
    migrate_to("0016_live", command.downgrade)
    with cloud_ctx.engine.begin() as connection:
        for n, word in enumerate(old_words):
            connection.execute(text(
                "INSERT INTO notifications (user_id, kind, event_key, channel, recipient, title, body, data, status,"
                " attempts, next_attempt_at, created_at) VALUES (:user, 'mail_arrived', :key, 'console', 'console',"
                " 'Mail', 'Two letters', '{}', :status, 1, :now, :now)"),
                {"user": owner.user_id, "key": f"mail_arrived:{n}", "status": word, "now": cloud_ctx.clock.now()})
    migrate_to("head", command.upgrade)
    assert rows("status, outcome") == [("pending", None), ("pending", "held"), ("running", None), ("done", "sent"),
                                       ("dead", "failed"), ("done", "skipped"), ("dead", "unknown")]
    migrate_to("0016_live", command.downgrade)
    assert [status for (status,) in rows("status")] == old_words
    migrate_to("head", command.upgrade)
