"""The gateway's settings (gateway/settings.py): MAILCAM_GATEWAY_* variables, arguments over them,
refused values, and no pydantic-settings in the service's process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from tests.gateway.kit import REPO


def test_settings_come_from_mailcam_gateway_variables_in_any_case(monkeypatch):
    monkeypatch.setenv("MAILCAM_GATEWAY_BROKER_PORT", "1884")
    monkeypatch.setenv("mailcam_gateway_broker_host", "broker.lan")
    monkeypatch.setenv("MAILCAM_GATEWAY_Token", "mcg_secret")
    monkeypatch.setenv("MAILCAM_GATEWAY_SQLITE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("MAILCAM_GATEWAY_VALIDATE_DEVICES", "false")
    monkeypatch.setenv("MAILCAM_GATEWAY_DATA_DIR", "/var/lib/gw")
    monkeypatch.setenv("MAILCAM_GATEWAY_BROKER_USERNAME", "")
    monkeypatch.setenv("MAILCAM_GATEWAY_NO_SUCH_SETTING", "ignored")
    monkeypatch.setenv("MAILCAM_BROKER_PORT", "9")  # another prefix: not ours
    settings = GatewaySettings()
    assert (settings.broker_port, settings.broker_host, settings.sqlite_synchronous) == (1884, "broker.lan", "NORMAL")
    assert settings.token is not None and settings.token.get_secret_value() == "mcg_secret"
    assert "mcg_secret" not in repr(settings)
    assert settings.validate_devices is False
    assert settings.data_dir == Path("/var/lib/gw") and settings.db_path == Path("/var/lib/gw/gateway.db")
    assert settings.broker_username == ""
    assert settings.keepalive_s == 30 and settings.mqtt_process == "auto"  # the defaults


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("MAILCAM_GATEWAY_BROKER_PORT", "1884")
    monkeypatch.setenv("MAILCAM_GATEWAY_CLIENT_ID", "from-env")
    settings = GatewaySettings(broker_port=1999)
    assert (settings.broker_port, settings.client_id) == (1999, "from-env")


@pytest.mark.parametrize(("variables", "arguments"), [
    ({"MAILCAM_GATEWAY_BROKER_PORT": "not a port"}, {}),
    ({"MAILCAM_GATEWAY_SQLITE_SYNCHRONOUS": "OFF"}, {}),
    ({"MAILCAM_GATEWAY_KEEPALIVE_S": "2"}, {}),
    ({"MAILCAM_GATEWAY_DEVICE_PARTIAL_QUOTA_BYTES": "2048"}, {"max_image_bytes": 4096}),
    ({}, {"homeassistant_prefix": "not/valid/"}),
])
def test_a_bad_value_is_refused(monkeypatch, variables, arguments):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        GatewaySettings(**arguments)


def test_the_gateway_process_reads_its_settings_without_pydantic_settings():
    """Memory (issue 18): pydantic-settings and what it imports (its CLI, cloud secret stores, dotenv,
    argparse: ~1.3 MB) for reading a few environment variables."""
    script = ("import sys, gateway.__main__; from gateway.settings import GatewaySettings; GatewaySettings(); "
              "print(sorted(m for m in sys.modules if m.startswith('pydantic_settings')))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
