"""Remote settings: the owner's desired settings of a device (versioned) and what the device reports.

The desired values are checked with the device's own rules (``mcam.config.with_settings`` over a
config of defaults), so a value the firmware would refuse is a 422 here. The device may still refuse
one that depends on its own config.json (e.g. ``door.level`` on a device without a door pin); it
says why in telemetry (``cfge``), shown next to the desired settings.

Each change gets the next version; the gateway publishes a version once, retained, on the device's
``settings`` topic. When the device reports that version in effect (``cfgv``), its wake interval
is the desired one, and "offline" (``devices.is_online``) measures against it.
"""

from __future__ import annotations

import json
from typing import Any

from mcam import config
from sqlalchemy.orm import Session

from cloud.errors import ValidationFailed
from cloud.models import Device

# A config.json as the firmware would load it (defaults + the keys it requires): the base the
# desired settings are checked against.
_BASE = config.parse(json.dumps({"serial": "check", "wifi": {"ssid": "check"}, "broker": {"host": "check"}}))


def check(values: dict[str, Any]) -> None:
    """ValidationFailed (422) naming the first value the device's rules refuse."""
    try:
        config.with_settings(_BASE, values)
    except config.ConfigError as exc:
        raise ValidationFailed(str(exc)) from None


def _whole(value: Any) -> Any:
    """900.0 → 900: JSON (and JSON Schema's "integer") does not tell them apart; the firmware's rules do."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def set_desired(session: Session, device: Device, values: dict[str, Any]) -> None:
    """The device's desired settings become ``values``; a change gets the next version."""
    values = {path: _whole(value) for path, value in values.items()}
    check(values)
    if device.settings_version is not None and device.settings_desired == values:
        return  # nothing changed: no new version for the gateway to publish
    device.settings_desired = dict(values)
    device.settings_version = (device.settings_version or 0) + 1
    session.flush()


def on_report(device: Device, applied_version: int | None, error: str | None) -> None:
    """The device's telemetry: the version in effect and why the newest one was refused (if so)."""
    if applied_version is None and error is None:
        return  # a device (or gateway) that does not speak remote settings yet
    device.settings_applied_version = applied_version
    device.settings_error = error[:200] if error else None
    desired = device.settings_desired or {}
    if applied_version is not None and applied_version == device.settings_version and "wake_interval_s" in desired:
        device.wake_interval_s = desired["wake_interval_s"]
