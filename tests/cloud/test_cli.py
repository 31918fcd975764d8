"""The cloud's admin commands: `mailcam migrate`, `mailcam set-tier` and `mailcam set-role`."""

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


def test_set_role_lets_an_account_register_devices_and_takes_it_back(api, database_url):
    alice = new_account(api, "alice@example.com")
    env = {"MAILCAM_DATABASE_URL": database_url}
    assert api.post("/api/devices/", json={"serial": "box-a"}, headers=alice.headers).status_code == 403
    result = runner.invoke(app, ["set-role", "Alice@example.com", "installer"], env=env)
    assert result.exit_code == 0 and "installer" in result.output, result.output
    assert api.post("/api/devices/", json={"serial": "box-a"}, headers=alice.headers).status_code == 201
    assert runner.invoke(app, ["set-role", "alice@example.com", "homeowner"], env=env).exit_code == 0
    assert api.post("/api/devices/", json={"serial": "box-b"}, headers=alice.headers).status_code == 403
    assert api.get("/api/devices/box-a/", headers=alice.headers).status_code == 200  # what was registered stays

    assert runner.invoke(app, ["set-role", "nobody@example.com", "installer"], env=env).exit_code == 1
    bad = runner.invoke(app, ["set-role", "alice@example.com", "admin"], env=env)
    assert bad.exit_code == 2 and "installer" in bad.output
