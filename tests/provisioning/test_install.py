"""`mailcam provision install` and `check` against the virtual board (tests/../hil_tests/pty_board.py)
with the real mpremote, a real Mosquitto with per-device logins, the real cloud and the real gateway.

The failures an installer meets at the kitchen table — a wrong port, a board that does not answer,
a bad Wi-Fi password, a damaged copy — each stop the run with a message that says what to do, and
before anything is registered in the cloud.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hil_tests.conftest import camera_jpeg
from hil_tests.pty_board import PtyBoard
from provisioning import mosquitto as broker_auth
from provisioning.cli import provision_app
from tests.brokers import Mosquitto
from tests.cloudkit import LiveServer, grant_installer, new_account
from tests.gateway.conftest import Cloud, gateway_env
from tests.gateway.kit import GatewayProcess

runner = CliRunner(env={"COLUMNS": "240"})  # rich wraps at the terminal width
WIFI = {"ap_ssid": "Home", "ap_password": "correct-wifi-pw"}


def install_args(serial: str, port: str, cloud: str, token: str, state_dir: Path, *extra: str,
                 wifi_password: str = "correct-wifi-pw", broker_port: int = 1) -> list[str]:
    return ["install", serial, "--port", port, "--ssid", "Home", "--wifi-password", wifi_password,
            "--broker-host", "127.0.0.1", "--broker-port", str(broker_port), "--cloud", cloud, "--token", token,
            "--state-dir", str(state_dir), "--yes", *extra]


NO_CLOUD = "http://127.0.0.1:1"  # the failures below come first: had the run gone on, it would stop at register


def assert_nothing_registered(output: str) -> None:
    assert "✓ register" not in output and "│ register" not in output
    assert "cannot reach the cloud" not in output


def registered(cloud_ctx, serial: str) -> bool:
    from cloud.models import Device

    with cloud_ctx.sessions() as session:
        return session.scalar(select(Device.id).where(Device.serial == serial)) is not None


def broker_accepts(host: str, port: int, user: str, password: str) -> bool:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe-" + uuid.uuid4().hex[:6])
    client.username_pw_set(user, password)
    try:
        client.connect(host, port)
        result = {}
        client.on_connect = lambda c, u, flags, reason, props: result.setdefault("rc", reason)
        while "rc" not in result:
            client.loop(timeout=1)
        return not result["rc"].is_failure
    finally:
        client.disconnect()


@pytest.mark.slow
@pytest.mark.micropython
def test_install_takes_a_bare_board_to_a_calibrated_claimed_mailbox_and_check_passes(tmp_path, cloud_ctx):
    release_key = "5e" * 32  # the cloud's firmware release key: the board must trust it and nothing else
    cloud_ctx.settings.firmware_public_key = release_key
    gw_password = "gateway-" + uuid.uuid4().hex
    passwd, acl = tmp_path / "broker" / "mailcam.passwd", tmp_path / "broker" / "mailcam.acl"
    broker_auth.set_password(passwd, broker_auth.GATEWAY_USER, gw_password)
    broker_auth.write_acl(acl)
    broker = Mosquitto(tmp_path / "mosquitto", extra_conf=f"password_file {passwd}\nacl_file {acl}\n").start()
    cloud = Cloud(ctx=cloud_ctx)
    cloud.up()
    gateway = None
    try:
        with cloud.client() as client:
            cloud.account = new_account(client, "diy@example.com")
            grant_installer(client, cloud.account)  # an operator's `mailcam set-role diy@example.com installer`
            cloud.gateway_token = client.post("/api/gateways/", json={"name": "home"},
                                              headers=cloud.account.headers).json()["gateway_token"]
        gateway = GatewayProcess(tmp_path / "gw", env=gateway_env(
            cloud, broker, broker_username=broker_auth.GATEWAY_USER, broker_password=gw_password)).start()
        serial = "mb-" + uuid.uuid4().hex[:8]
        with PtyBoard(tmp_path / "flash", jpeg=camera_jpeg(), sim=WIFI) as board:
            args = install_args(serial, board.port, cloud.url, cloud.account.token, tmp_path / "state", "--claim",
                                "--passwd", str(passwd), "--acl", str(acl), "--broker-port", str(broker.port),
                                "--reload-command", f"kill -HUP {broker.process.pid}",
                                "--watch-user", broker_auth.GATEWAY_USER, "--watch-password", gw_password,
                                "--telemetry-wait", "60", "--calibrate-wait", "60")
            result = runner.invoke(provision_app, args)
            assert result.exit_code == 0, result.output
            for step in ("firmware", "precheck", "register", "claim", "broker-login", "config", "reset",
                         "telemetry", "calibrate", "check"):
                assert f"✓ {step}:" in result.output, step
            assert "every SHA-256 matches on the board" in result.output
            assert "is the empty reference" in result.output
            assert board.boots == 1  # one reset: the first wake is the calibration photo

            with cloud.client() as client:
                device = client.get(f"/api/devices/{serial}/", headers=cloud.account.headers).json()
            assert device["battery_voltage"] == pytest.approx(3.9) and device["last_seen_at"]
            # The device token is the device's broker password: on the board, hashed in the broker's
            # password file, never printed, gone from the installer's state file.
            on_board = json.loads((tmp_path / "flash" / "config.json").read_text())
            assert on_board["ota"]["key"] == release_key  # fetched from the cloud, no copy-paste
            assert "takes signed updates" in result.output
            token = on_board["broker"]["password"]
            assert token.startswith("mcd_")
            assert token not in result.output and "correct-wifi-pw" not in result.output
            assert token not in passwd.read_text()
            assert "device_token" not in json.loads((tmp_path / "state" / f"{serial}.json").read_text())
            assert broker_accepts(broker.host, broker.port, serial, token)
            assert not broker_accepts(broker.host, broker.port, serial, "mcd_guessed")

            again = runner.invoke(provision_app, args)  # resumable: a finished install re-runs as a no-op
            assert again.exit_code == 0, again.output
            assert board.boots == 1

            checked = runner.invoke(provision_app, ["check", "--port", board.port])
            assert checked.exit_code == 0, checked.output
            for name in ("camera", "battery", "wifi", "broker", "time"):
                assert any(line.split("│")[1:3] and name in line and "pass" in line
                           for line in checked.output.splitlines()), (name, checked.output)
            assert f"as {serial}" in checked.output and "••••" in checked.output
            assert token not in checked.output and "correct-wifi-pw" not in checked.output
    finally:
        if gateway:
            gateway.stop()
        cloud.down()
        broker.stop()


@pytest.fixture
def live_cloud(cloud_app):
    with LiveServer(cloud_app) as server, httpx.Client(base_url=server.url) as client:
        installer = new_account(client, "installer@example.com")
        grant_installer(client, installer)
        yield server.url, installer


def test_a_wrong_port_is_named_and_nothing_is_registered(tmp_path):
    result = runner.invoke(provision_app, install_args("mb-port", "/dev/ttyNOPE0", NO_CLOUD, "t", tmp_path))
    assert result.exit_code == 1
    assert "stopped at firmware" in result.output and "/dev/ttyNOPE0 does not exist" in result.output
    assert_nothing_registered(result.output)


def test_a_board_that_does_not_answer_is_named_and_nothing_is_registered(tmp_path):
    master, slave = os.openpty()  # a serial line with nothing behind it
    try:
        port = os.ttyname(slave)
        result = runner.invoke(provision_app, install_args("mb-mute", port, NO_CLOUD, "t", tmp_path,
                                                           "--board-timeout", "1"))
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 1
    assert "no MicroPython REPL answered" in result.output and "--micropython" in result.output
    assert_nothing_registered(result.output)


@pytest.mark.micropython
def test_a_bad_wifi_password_is_found_on_the_board_before_registering(tmp_path):
    with PtyBoard(tmp_path / "flash", jpeg=camera_jpeg(), sim=WIFI) as board:
        result = runner.invoke(provision_app, install_args("mb-wifi", board.port, NO_CLOUD, "t", tmp_path / "state",
                                                           wifi_password="wrong-pw"))
    assert result.exit_code == 1
    assert "stopped at precheck" in result.output
    assert "cannot join 'Home'" in result.output and "password" in result.output
    assert "wrong-pw" not in result.output
    assert_nothing_registered(result.output)


@pytest.mark.micropython
def test_a_damaged_copy_fails_the_hash_check_before_registering(tmp_path):
    with PtyBoard(tmp_path / "flash", sim=WIFI, corrupt={"lib/mcam/cycle.py"}) as board:
        result = runner.invoke(provision_app, install_args("mb-hash", board.port, NO_CLOUD, "t", tmp_path / "state",
                                                           "--no-compile"))
    assert result.exit_code == 1
    assert "stopped at firmware" in result.output
    assert "differ from what was sent: lib/mcam/cycle.py" in result.output
    assert_nothing_registered(result.output)


@pytest.mark.micropython
def test_a_stopped_install_continues_where_it_stopped_without_registering_twice(tmp_path, live_cloud, cloud_ctx):
    url, installer = live_cloud
    broker_files = ["--passwd", str(tmp_path / "b" / "passwd"), "--acl", str(tmp_path / "b" / "acl")]
    with PtyBoard(tmp_path / "flash", jpeg=camera_jpeg(), sim=WIFI) as board:
        args = install_args("mb-resume", board.port, url, installer.token, tmp_path / "state", *broker_files)
        first = runner.invoke(provision_app, [*args, "--reload-command", "false"])
        assert first.exit_code == 1
        assert "stopped at broker-login" in first.output and "Run the same command again" in first.output
        assert registered(cloud_ctx, "mb-resume")

        second = runner.invoke(provision_app, [*args, "--reload-command", "true"])
    assert second.exit_code == 1
    assert "register     │ pass (earlier run)" in second.output  # not registered again (that would be a 409)
    assert "✓ broker-login:" in second.output and "✓ config:" in second.output
    assert "stopped at reset" in second.output and "cannot reach the broker at 127.0.0.1:1" in second.output
    assert json.loads((tmp_path / "flash" / "config.json").read_text())["broker"]["user"] == "mb-resume"


def test_the_claim_sheet_has_the_code_as_text_terminal_qr_png_and_printable_page(tmp_path):
    import io

    from PIL import Image
    from rich.console import Console

    from provisioning.install import claim_url, write_claim_sheet

    out = io.StringIO()
    sheet = write_claim_sheet(tmp_path, "mb-sheet", "https://mailcam.example", "ABCD-EFGH", Console(file=out))
    assert "█" in out.getvalue() or "▀" in out.getvalue()  # the QR code, drawn in the terminal
    with Image.open(sheet.png) as png:
        assert png.width == png.height >= 200
    page = sheet.html.read_text()
    assert "ABCD-EFGH" in page and claim_url("https://mailcam.example", "ABCD-EFGH") in page
    assert "data:image/svg+xml;base64," in page


def test_calibrating_an_unclaimed_mailbox_is_left_pending_with_the_command_for_later(tmp_path, live_cloud):
    """The homeowner's gateway sends an unclaimed mailbox's photo only once it is claimed: the install
    does not fail on that, it names what to run afterwards."""
    import io

    from rich.console import Console

    from provisioning.install import Installer, InstallOptions

    url, installer = live_cloud
    httpx.post(f"{url}/api/devices/", json={"serial": "mb-later"}, headers=installer.headers).raise_for_status()
    opts = InstallOptions(serial="mb-later", port="/dev/null", cloud=url, token=installer.token, ssid="Home",
                          wifi_password="", broker_host="127.0.0.1", state_dir=tmp_path, calibrate_wait_s=0)
    run = Installer(opts, Console(file=io.StringIO()), confirm=lambda q: True)
    run.state.data["reset_at"] = "2026-11-30T02:00:00+00:00"
    run._cloud_step("calibrate", run._calibrate)
    (outcome,) = run.outcomes
    assert outcome.ok is None and outcome.detail.startswith("pending")
    assert "mailcam provision calibrate mb-later --since 2026-11-30T02:00:00+00:00" in outcome.detail
    assert run.state.done("calibrate") is None  # a later run does it


def test_rerunning_a_finished_install_never_erases_the_board_and_prints_the_claim_sheet_again(tmp_path):
    from provisioning.install import CLOUD_STEPS

    state = {"serial": "mb-done", "claim_code": "WXYZ-2345", "done": {step: "ok" for step in CLOUD_STEPS}}
    (tmp_path / "mb-done.json").write_text(json.dumps(state))
    result = runner.invoke(provision_app, install_args("mb-done", "/dev/ttyNOPE0", NO_CLOUD, "t", tmp_path,
                                                       "--micropython", str(tmp_path / "missing.bin")))
    assert result.exit_code == 0, result.output
    assert "not written again" in result.output  # neither esptool nor the board was touched
    assert "WXYZ-2345" in result.output and (tmp_path / "mb-done-claim.png").exists()
