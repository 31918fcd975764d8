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
from tests.cloudkit import LiveServer, new_account
from tests.gateway.conftest import Cloud, gateway_env
from tests.gateway.kit import GatewayProcess

runner = CliRunner(env={"COLUMNS": "240"})  # rich wraps at the terminal width
WIFI = {"ap_ssid": "Home", "ap_password": "correct-wifi-pw"}


def install_args(serial: str, port: str, cloud: str, token: str, state_dir: Path, *extra: str,
                 wifi_password: str = "correct-wifi-pw", broker_port: int = 1) -> list[str]:
    return ["install", serial, "--port", port, "--ssid", "Home", "--wifi-password", wifi_password,
            "--broker-host", "127.0.0.1", "--broker-port", str(broker_port), "--cloud", cloud, "--token", token,
            "--state-dir", str(state_dir), "--yes", *extra]


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
            token = json.loads((tmp_path / "flash" / "config.json").read_text())["broker"]["password"]
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
        yield server.url, new_account(client, "installer@example.com")


def test_a_wrong_port_is_named_and_nothing_is_registered(tmp_path, live_cloud, cloud_ctx):
    url, installer = live_cloud
    result = runner.invoke(provision_app, install_args("mb-port", "/dev/ttyNOPE0", url, installer.token, tmp_path))
    assert result.exit_code == 1
    assert "stopped at firmware" in result.output and "/dev/ttyNOPE0 does not exist" in result.output
    assert not registered(cloud_ctx, "mb-port")


def test_a_board_that_does_not_answer_is_named_and_nothing_is_registered(tmp_path, live_cloud, cloud_ctx):
    url, installer = live_cloud
    master, slave = os.openpty()  # a serial line with nothing behind it
    try:
        port = os.ttyname(slave)
        result = runner.invoke(provision_app, install_args("mb-mute", port, url, installer.token, tmp_path,
                                                           "--board-timeout", "1"))
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 1
    assert "no MicroPython REPL answered" in result.output and "--micropython" in result.output
    assert not registered(cloud_ctx, "mb-mute")


@pytest.mark.micropython
def test_a_bad_wifi_password_is_found_on_the_board_before_registering(tmp_path, live_cloud, cloud_ctx):
    url, installer = live_cloud
    with PtyBoard(tmp_path / "flash", jpeg=camera_jpeg(), sim=WIFI) as board:
        result = runner.invoke(provision_app, install_args("mb-wifi", board.port, url, installer.token,
                                                           tmp_path / "state", wifi_password="wrong-pw"))
    assert result.exit_code == 1
    assert "stopped at precheck" in result.output
    assert "cannot join 'Home'" in result.output and "password" in result.output
    assert "wrong-pw" not in result.output
    assert not registered(cloud_ctx, "mb-wifi")


@pytest.mark.micropython
def test_a_damaged_copy_fails_the_hash_check_before_registering(tmp_path, live_cloud, cloud_ctx):
    url, installer = live_cloud
    with PtyBoard(tmp_path / "flash", sim=WIFI, corrupt={"lib/mcam/cycle.py"}) as board:
        result = runner.invoke(provision_app, install_args("mb-hash", board.port, url, installer.token,
                                                           tmp_path / "state", "--no-compile"))
    assert result.exit_code == 1
    assert "stopped at firmware" in result.output
    assert "differ from what was sent: lib/mcam/cycle.py" in result.output
    assert not registered(cloud_ctx, "mb-hash")
