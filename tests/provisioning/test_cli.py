"""`mailcam provision`: registration (live cloud), broker logins, config.json, flashing the virtual board."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from mcam import config as fw_config
from typer.testing import CliRunner

from provisioning import mosquitto as broker_auth
from provisioning.cli import provision_app
from provisioning.firmware import FIRMWARE_DIR
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


def test_config_carries_the_clouds_release_key_for_firmware_updates(tmp_path):
    """Without the key a device takes no update; a key that is not 64 hex digits is refused."""
    out = tmp_path / "config.json"
    base = ["config", "mb-0001", "--ssid", "Home", "--broker-host", "192.168.1.10", "--out", str(out)]
    key = "AB" * 32
    result = runner.invoke(provision_app, [*base, "--ota-key", key])
    assert result.exit_code == 0, result.output
    assert fw_config.load(str(out))["ota"]["key"] == key.lower()
    assert runner.invoke(provision_app, base).exit_code == 0
    assert fw_config.load(str(out))["ota"]["key"] is None
    short = runner.invoke(provision_app, [*base, "--ota-key", "ab" * 31])
    assert short.exit_code == 1 and "ota.key" in short.output



def write_config(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"serial": "mb-0001", "wifi": {"ssid": "Home"}, "broker": {"host": "10.0.0.2"}}))
    return path


@pytest.mark.micropython
def test_flash_copies_everything_in_one_session_checks_hashes_and_resets(tmp_path):
    """Regression: `flash` started one mpremote process per file and was never run against anything
    that speaks the raw REPL (a fake mpremote logged its arguments)."""
    from hil_tests.pty_board import PtyBoard

    config_path = write_config(tmp_path)
    flash_dir = tmp_path / "flash"
    with PtyBoard(flash_dir) as board:
        (flash_dir / "lib" / "mcam").mkdir(parents=True)
        (flash_dir / "lib" / "mcam" / "cycle.py").write_text("stale = True\n")  # would shadow cycle.mpy
        result = runner.invoke(provision_app, ["flash", "--port", board.port, "--config", str(config_path)])
        assert result.exit_code == 0, result.output
        assert "every SHA-256 matches on the board" in result.output
        assert board.wait_boots(1, 30)  # reset: the firmware ran its first wake
    modules = sorted(p.name for p in (flash_dir / "lib" / "mcam").iterdir())
    assert "cycle.mpy" in modules and "protocol.mpy" in modules and "cycle.py" not in modules
    assert all(name.endswith(".mpy") for name in modules)
    assert json.loads((flash_dir / "config.json").read_text()) == json.loads(config_path.read_text())
    assert (flash_dir / "boot.py").read_bytes() == (FIRMWARE_DIR / "boot.py").read_bytes()


def test_flash_refuses_an_invalid_config_before_touching_the_board(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"serial": "mb-1"}')
    result = runner.invoke(provision_app, ["flash", "--port", "/dev/ttyUSB0", "--config", str(bad)])
    assert result.exit_code == 1
    assert "invalid config" in result.output


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
