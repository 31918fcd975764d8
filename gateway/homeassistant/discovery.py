"""Home Assistant MQTT discovery: the topics and the config payloads, as pure functions.

One Home Assistant device per mailbox (linked ``via_device`` to the gateway's own device), one
retained config per entity under ``<prefix>/<component>/<serial>/<object>/config`` (Home Assistant's
documented discovery topic), full key names (no abbreviations, so a reader can check them against
the MQTT integration's documentation). Every entity's ``unique_id`` is ``mailcam_<serial>_<object>``:
stable, so entities survive gateway and Home Assistant restarts with their history and settings.

State lives on our own topics (``mailcam/ha/<serial>/…``), never under ``mailcam/v1/`` (the devices'
protocol): a device's ACL cannot write there, and the gateway's ingest never sees them.

    mailcam/ha/<serial>/mail             ON | OFF                           retained  binary_sensor Mail
    mailcam/ha/<serial>/mail/attributes  {items, categories, confidence, since, package}
    mailcam/ha/<serial>/photo            the latest photo's JPEG (thumbnail) retained  image
    mailcam/ha/<serial>/online           online | offline                   retained  binary_sensor Online
    mailcam/ha/<serial>/state            {battery_voltage, battery_percent, rssi, last_wake, awake_s, pending_captures}
    mailcam/ha/<serial>/photo/press      PRESS (from Home Assistant)                   button Take a photo now
    mailcam/ha/<serial>/photo/result     {result, message, clicks_used, …}  retained  its attributes + sensor
    mailcam/ha/<serial>/delivery         {event_type, at, …}          NOT retained   event Delivery
    mailcam/ha/gateway/<id>/availability online | offline (the gateway's will)  every entity's availability
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROOT = "mailcam/ha"
MANUFACTURER = "mailcam"
MODEL = "Camera mailbox (ESP32-CAM)"
GATEWAY_MODEL = "mailcam edge gateway"
PRESS = "PRESS"
# The event entity's types; "package_arrived" is the one automations usually want.
EVENT_TYPES = ("mail_arrived", "package_arrived", "more_mail", "collected")
_ID = re.compile(r"[^A-Za-z0-9_-]")
_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    """An entity id's object part: lower case letters, digits and single underscores."""
    return _SLUG.sub("_", text.lower()).strip("_")


def gateway_id(client_id: str) -> str:
    """A topic- and id-safe name of the gateway (its MQTT client id, which is unique per broker)."""
    return _ID.sub("_", client_id)[:64] or "gateway"


@dataclass(frozen=True)
class Topics:
    """Our state topics for one mailbox."""

    serial: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.serial}"

    mail = property(lambda self: f"{self.base}/mail")
    mail_attributes = property(lambda self: f"{self.base}/mail/attributes")
    photo = property(lambda self: f"{self.base}/photo")
    online = property(lambda self: f"{self.base}/online")
    state = property(lambda self: f"{self.base}/state")
    press = property(lambda self: f"{self.base}/photo/press")
    press_result = property(lambda self: f"{self.base}/photo/result")
    delivery = property(lambda self: f"{self.base}/delivery")

    @property
    def retained(self) -> tuple[str, ...]:
        """What a removed mailbox leaves behind unless cleared."""
        return (self.mail, self.mail_attributes, self.photo, self.online, self.state, self.press_result)


PRESS_SUBSCRIPTION = f"{ROOT}/+/photo/press"


def serial_of_press(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and f"{parts[0]}/{parts[1]}" == ROOT and parts[3:] == ["photo", "press"]:
        return parts[2]
    return None


def availability_topic(gateway: str) -> str:
    return f"{ROOT}/gateway/{gateway}/availability"


def config_topic(prefix: str, component: str, node: str, obj: str) -> str:
    return f"{prefix}/{component}/{node}/{obj}/config"


@dataclass(frozen=True)
class Mailbox:
    """What the configs need to know of a mailbox (from the cloud's state feed)."""

    serial: str
    name: str
    firmware_version: str | None


def _device(box: Mailbox, gateway: str) -> dict[str, Any]:
    device = {
        "identifiers": [f"mailcam_{box.serial}"],
        "name": box.name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "serial_number": box.serial,
        "via_device": f"mailcam_gateway_{gateway}",
    }
    if box.firmware_version:
        device["sw_version"] = box.firmware_version
    return device


def _origin(sw_version: str) -> dict[str, str]:
    return {"name": "mailcam gateway", "sw_version": sw_version}


def mailbox_configs(box: Mailbox, *, prefix: str, gateway: str, sw_version: str) -> dict[str, dict[str, Any]]:
    """Config topic → payload for every entity of one mailbox (and its "package arrived" device trigger)."""
    t = Topics(box.serial)
    common = {
        "device": _device(box, gateway),
        "origin": _origin(sw_version),
        "availability": [{"topic": availability_topic(gateway)}],
    }

    def entity(component: str, obj: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        payload = {
            "unique_id": f"mailcam_{box.serial}_{obj}",
            "default_entity_id": f"{component}.{slug(f'mailbox_{box.serial}_{obj}')}",
            **fields,
            **common,
        }
        return config_topic(prefix, component, box.serial, obj), payload

    state = t.state
    configs = dict(
        [
            entity(
                "binary_sensor",
                "mail",
                name="Mail",
                device_class="occupancy",
                icon="mdi:mailbox",
                state_topic=t.mail,
                payload_on="ON",
                payload_off="OFF",
                json_attributes_topic=t.mail_attributes,
            ),
            entity("image", "photo", name="Latest photo", image_topic=t.photo, content_type="image/jpeg"),
            entity(
                "binary_sensor",
                "online",
                name="Online",
                device_class="connectivity",
                entity_category="diagnostic",
                state_topic=t.online,
                payload_on="online",
                payload_off="offline",
            ),
            entity(
                "sensor",
                "battery_voltage",
                name="Battery voltage",
                device_class="voltage",
                state_class="measurement",
                unit_of_measurement="V",
                suggested_display_precision=2,
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.battery_voltage }}",
            ),
            entity(
                "sensor",
                "battery",
                name="Battery",
                device_class="battery",
                state_class="measurement",
                unit_of_measurement="%",
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.battery_percent }}",
            ),
            entity(
                "sensor",
                "signal",
                name="Signal strength",
                device_class="signal_strength",
                state_class="measurement",
                unit_of_measurement="dBm",
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.rssi }}",
            ),
            entity(
                "sensor",
                "last_wake",
                name="Last wake",
                device_class="timestamp",
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.last_wake }}",
            ),
            entity(
                "sensor",
                "awake_time",
                name="Awake time",
                device_class="duration",
                state_class="measurement",
                unit_of_measurement="s",
                suggested_display_precision=1,
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.awake_s }}",
            ),
            entity(
                "sensor",
                "pending_captures",
                name="Pending captures",
                icon="mdi:tray-full",
                state_class="measurement",
                entity_category="diagnostic",
                state_topic=state,
                value_template="{{ value_json.pending_captures }}",
            ),
            entity(
                "button",
                "take_photo",
                name="Take a photo now",
                icon="mdi:camera",
                command_topic=t.press,
                payload_press=PRESS,
                json_attributes_topic=t.press_result,
            ),
            entity(
                "sensor",
                "photo_request",
                name="Last photo request",
                icon="mdi:camera-timer",
                state_topic=t.press_result,
                value_template="{{ value_json.result }}",
                json_attributes_topic=t.press_result,
            ),
            entity(
                "event",
                "delivery",
                name="Delivery",
                icon="mdi:package-variant-closed",
                state_topic=t.delivery,
                event_types=list(EVENT_TYPES),
            ),
        ]
    )
    # A device trigger too, for automations made in the UI from the device page ("package arrived").
    configs[config_topic(prefix, "device_automation", box.serial, "package_arrived")] = {
        "automation_type": "trigger",
        "topic": t.delivery,
        "type": "package_arrived",
        "subtype": "mailbox",
        "payload": "package_arrived",
        "value_template": "{{ value_json.event_type }}",
        "device": common["device"],
        "origin": common["origin"],
    }
    return configs


def gateway_config(*, prefix: str, gateway: str, sw_version: str) -> tuple[str, dict[str, Any]]:
    """The gateway's own device (what the mailboxes' ``via_device`` names): one connectivity sensor."""
    topic = availability_topic(gateway)
    return config_topic(prefix, "binary_sensor", f"mailcam_gateway_{gateway}", "online"), {
        "unique_id": f"mailcam_gateway_{gateway}_online",
        "name": "Online",
        "device_class": "connectivity",
        "state_topic": topic,
        "payload_on": "online",
        "payload_off": "offline",
        "device": {
            "identifiers": [f"mailcam_gateway_{gateway}"],
            "name": f"mailcam gateway {gateway}",
            "manufacturer": MANUFACTURER,
            "model": GATEWAY_MODEL,
            "sw_version": sw_version,
        },
        "origin": _origin(sw_version),
    }


def delivery_event(kind: str, package: bool) -> str:
    """The event type of one delivery transition (arrived | more | collected)."""
    if kind == "collected":
        return "collected"
    if package:
        return "package_arrived"
    return "mail_arrived" if kind == "arrived" else "more_mail"
