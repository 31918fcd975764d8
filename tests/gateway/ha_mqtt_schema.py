"""Home Assistant's MQTT discovery schema, per platform: a fixture of the documented keys.

Not Home Assistant's own validators: the `homeassistant` package that still installs on our Python
(3.11) is 2024.3.3, and current releases need Python 3.13. The keys below are transcribed from Home
Assistant core's source (home-assistant/core, ``homeassistant/components/mqtt/``: ``config.py``
``MQTT_BASE_SCHEMA``/``MQTT_RO_SCHEMA``, ``schemas.py`` ``MQTT_ENTITY_COMMON_SCHEMA``,
``MQTT_ENTITY_DEVICE_INFO_SCHEMA``, ``MQTT_ORIGIN_INFO_SCHEMA`` and the availability schemas, and each
platform's ``_PLATFORM_SCHEMA_BASE``/``DISCOVERY_SCHEMA`` in ``binary_sensor.py``, ``sensor.py``,
``button.py``, ``image.py``, ``event.py``), read 2026-11-30, and from the MQTT integration's
documentation (discovery topic format). Home Assistant's discovery schemas drop unknown keys
silently (``extra=vol.REMOVE_EXTRA``), so a misspelt key would simply do nothing there: ``check``
refuses any key outside the platform's schema.

Cross-check, by hand (2026-11-30, not in the suite: it needs its own virtualenv): every payload of
``gateway.homeassistant.discovery`` passed the ``DISCOVERY_SCHEMA`` of Home Assistant 2024.3.3's own
``homeassistant.components.mqtt.<platform>`` modules; the only key that release drops is
``default_entity_id`` (added in 2025.10; older releases name the entities after the device).
"""

from __future__ import annotations

import re
from typing import Any

# MQTT_BASE_SCHEMA
_BASE = {"qos", "encoding", "group"}
# MQTT_AVAILABILITY_SCHEMA (single + list forms)
_AVAILABILITY = {
    "availability_topic",
    "availability_template",
    "payload_available",
    "payload_not_available",
    "availability_mode",
    "availability",
}
# MQTT_ENTITY_COMMON_SCHEMA
_COMMON = _AVAILABILITY | {
    "device",
    "entity_picture",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "default_entity_id",
    "object_id",
    "message_expiry_interval",
    "unique_id",
    "visible_by_default",
}
_RO = {"state_topic", "value_template"}  # MQTT_RO_SCHEMA (state_topic required)

PLATFORMS: dict[str, dict[str, set[str]]] = {
    "binary_sensor": {
        "required": {"state_topic"},
        "allowed": _BASE
        | _COMMON
        | _RO
        | {"device_class", "expire_after", "force_update", "name", "off_delay", "payload_off", "payload_on"},
    },
    "sensor": {
        "required": {"state_topic"},
        "allowed": _BASE
        | _COMMON
        | _RO
        | {
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "name",
            "options",
            "suggested_display_precision",
            "state_class",
            "unit_of_measurement",
        },
    },
    "button": {
        "required": {"command_topic"},
        "allowed": _BASE
        | _COMMON
        | {"command_template", "command_topic", "device_class", "name", "payload_press", "retain"},
    },
    "image": {
        "required": set(),  # but exactly one of image_topic / url_topic (validate_topic_required)
        "allowed": _BASE
        | _COMMON
        | {"content_type", "name", "url_topic", "image_topic", "image_encoding", "url_template"},
    },
    "device_automation": {  # device_trigger.py TRIGGER_DISCOVERY_SCHEMA (not an entity: no unique_id)
        "required": {"automation_type", "device", "subtype", "topic", "type"},
        "allowed": _BASE
        | {"automation_type", "device", "origin", "payload", "subtype", "topic", "type", "value_template"},
    },
    "event": {
        "required": {"state_topic", "event_types"},
        "allowed": _BASE | _COMMON | _RO | {"device_class", "name", "event_types"},
    },
}

DEVICE_KEYS = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_ITEM_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
# Device classes we use, each checked against the platform's enum (BinarySensorDeviceClass, SensorDeviceClass).
DEVICE_CLASSES = {
    "binary_sensor": {"occupancy", "connectivity", "presence", "problem", "battery", "motion", "opening"},
    "sensor": {"voltage", "battery", "signal_strength", "timestamp", "duration", "enum"},
    "button": {"identify", "restart", "update"},
    "device_automation": {  # device_trigger.py TRIGGER_DISCOVERY_SCHEMA (not an entity: no unique_id)
        "required": {"automation_type", "device", "subtype", "topic", "type"},
        "allowed": _BASE
        | {"automation_type", "device", "origin", "payload", "subtype", "topic", "type", "value_template"},
    },
    "event": {"button", "doorbell", "motion"},
}
# Units Home Assistant accepts for these sensor device classes (sensor/const.py DEVICE_CLASS_UNITS).
UNITS = {
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "battery": {"%"},
    "signal_strength": {"dB", "dBm"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
# Discovery topic: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
_TOPIC_ID = r"[a-zA-Z0-9_-]+"
_ENTITY_ID = re.compile(r"^[a-z0-9_]+\.[a-z0-9]+(_[a-z0-9]+)*$")


def discovery_topic_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}/(?P<component>{_TOPIC_ID})/(?:{_TOPIC_ID}/)?{_TOPIC_ID}/config$")


def _valid_topic(value: Any, *, publish: bool) -> bool:
    if not isinstance(value, str) or not value or len(value.encode()) > 65535 or "\0" in value:
        return False
    return not publish or ("+" not in value and "#" not in value)


def check(component: str, payload: dict[str, Any]) -> list[str]:
    """Problems Home Assistant would have with this discovery payload (empty: none)."""
    spec = PLATFORMS.get(component)
    if spec is None:
        return [f"unknown platform {component}"]
    problems = [f"missing {key}" for key in sorted(spec["required"] - payload.keys())]
    problems += [f"unknown key {key}" for key in sorted(payload.keys() - spec["allowed"])]
    if component == "image" and ("image_topic" in payload) == ("url_topic" in payload):
        problems.append("exactly one of image_topic / url_topic")
    if component == "image" and "content_type" in payload and "url_topic" in payload:
        problems.append("content_type with url_topic")
    for key in ("state_topic", "json_attributes_topic", "image_topic", "url_topic", "availability_topic", "topic"):
        if key in payload and not _valid_topic(payload[key], publish=False):
            problems.append(f"bad topic {key}")
    if "command_topic" in payload and not _valid_topic(payload["command_topic"], publish=True):
        problems.append("bad command_topic")
    if "device_class" in payload and payload["device_class"] not in DEVICE_CLASSES.get(component, set()):
        problems.append(f"device_class {payload['device_class']} not valid for {component}")
    if component == "sensor" and payload.get("device_class") in UNITS:
        if payload.get("unit_of_measurement") not in UNITS[payload["device_class"]]:
            problems.append(f"unit {payload.get('unit_of_measurement')} not valid for {payload['device_class']}")
    if "state_class" in payload and payload["state_class"] not in STATE_CLASSES:
        problems.append(f"state_class {payload['state_class']}")
    if payload.get("device_class") == "timestamp" and "state_class" in payload:
        problems.append("a timestamp sensor has no state_class")
    if "entity_category" in payload and payload["entity_category"] not in ENTITY_CATEGORIES:
        problems.append(f"entity_category {payload['entity_category']}")
    if "default_entity_id" in payload and not _ENTITY_ID.match(payload["default_entity_id"]):
        problems.append(f"default_entity_id {payload['default_entity_id']} is not an entity id")
    if "event_types" in payload and not (isinstance(payload["event_types"], list) and payload["event_types"]):
        problems.append("event_types must be a non-empty list")
    device = payload.get("device")
    if device is not None:
        problems += [f"unknown device key {key}" for key in sorted(device.keys() - DEVICE_KEYS)]
        if not (device.get("identifiers") or device.get("connections")):
            problems.append("device without identifiers or connections")
        if component != "device_automation" and "unique_id" not in payload:  # the entity registry needs it
            problems.append("device without unique_id")
    origin = payload.get("origin")
    if origin is not None:
        problems += [f"unknown origin key {key}" for key in sorted(origin.keys() - ORIGIN_KEYS)]
        if "name" not in origin:
            problems.append("origin without name")
    if "availability" in payload and "availability_topic" in payload:
        problems.append("availability and availability_topic are exclusive")
    for item in payload.get("availability", []):
        problems += [f"unknown availability key {key}" for key in sorted(item.keys() - AVAILABILITY_ITEM_KEYS)]
        if "topic" not in item:
            problems.append("availability item without topic")
    return problems
