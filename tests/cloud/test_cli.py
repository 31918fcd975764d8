"""The cloud's admin commands: `mailcam migrate` and `mailcam set-tier`."""

from sqlalchemy import select
from typer.testing import CliRunner

from cloud.models import User
from cloud.services import accounts
from mailcam.cli import app
from tests.cloudkit import new_account

runner = CliRunner()


def test_migrate_creates_the_schema(tmp_path):
    env = {"MAILCAM_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(app, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "schema up to date" in result.output
    assert (tmp_path / "data" / "mailcam.db").exists()


def test_set_tier_makes_a_user_premium(api, cloud_ctx, database_url):
    new_account(api, "alice@example.com")
    env = {"MAILCAM_DATABASE_URL": database_url}
    result = runner.invoke(app, ["set-tier", "Alice@example.com", "premium"], env=env)
    assert result.exit_code == 0, result.output
    with cloud_ctx.sessions() as session:
        user = session.scalar(select(User))
        assert accounts.effective_tier(user, cloud_ctx.clock.now()).value == "premium"

    assert runner.invoke(app, ["set-tier", "nobody@example.com", "premium"], env=env).exit_code == 1
    bad = runner.invoke(app, ["set-tier", "alice@example.com", "gold"], env=env)
    assert bad.exit_code == 2 and "free" in bad.output
