"""Discovery payloads and state payloads, without a broker: the fixture of Home Assistant's documented keys
(tests/gateway/ha_mqtt_schema.py) accepts ours and refuses what Home Assistant would ignore or refuse."""

from __future__ import annotations

import copy
import json

import pytest

from gateway.homeassistant import discovery
from gateway.homeassistant.bridge import press_result, states_of
from tests.gateway import ha_mqtt_schema

PREFIX = "homeassistant"


def configs(serial: str = "Box_7-a", firmware: str | None = "1.4.2") -> dict[str, dict]:
    box = discovery.Mailbox(serial, "Front gate", firmware)
    return discovery.mailbox_configs(box, prefix=PREFIX, gateway="gw-1", sw_version="0.1.0")


def component(topic: str) -> str:
    return ha_mqtt_schema.discovery_topic_re(PREFIX).match(topic)["component"]


def test_every_config_is_valid_for_its_platform_and_ids_are_stable_and_distinct():
    first, second = configs("Box_7-a"), configs("box-8", None)
    for topic, payload in {**first, **second}.items():
        assert ha_mqtt_schema.check(component(topic), payload) == [], topic
    assert configs("Box_7-a") == first  # same input, same ids: entities survive restarts
    ids = [p["unique_id"] for p in [*first.values(), *second.values()] if "unique_id" in p]
    assert len(ids) == len(set(ids))
    assert len(ids) == 2 * 12 and all("sw_version" not in p["device"] for p in second.values())
    topic, gateway = discovery.gateway_config(prefix=PREFIX, gateway="gw-1", sw_version="0.1.0")
    assert ha_mqtt_schema.check(component(topic), gateway) == []
    assert gateway["device"]["identifiers"] == [
        first[f"{PREFIX}/binary_sensor/Box_7-a/mail/config"]["device"]["via_device"]
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.update(stat_topic=p.pop("state_topic")), "missing state_topic"),
        (lambda p: p.update(device_class="voltage"), "device_class voltage not valid for binary_sensor"),
        (lambda p: p["device"].update(identifiers=[]), "device without identifiers or connections"),
        (lambda p: p.pop("unique_id"), "device without unique_id"),
        (lambda p: p.update(default_entity_id="binary_sensor.Box-7"), "is not an entity id"),
        (lambda p: p.update(availability_topic="x"), "availability and availability_topic are exclusive"),
    ],
)
def test_the_fixture_refuses_what_home_assistant_would_refuse_or_ignore(change, problem):
    payload = copy.deepcopy(configs()[f"{PREFIX}/binary_sensor/Box_7-a/mail/config"])
    change(payload)
    assert any(problem in p for p in ha_mqtt_schema.check("binary_sensor", payload))


def test_sensor_units_and_image_topics_are_checked():
    sensors = configs()
    voltage = copy.deepcopy(sensors[f"{PREFIX}/sensor/Box_7-a/battery_voltage/config"])
    voltage["unit_of_measurement"] = "%"
    assert "unit % not valid for voltage" in ha_mqtt_schema.check("sensor", voltage)
    image = copy.deepcopy(sensors[f"{PREFIX}/image/Box_7-a/photo/config"])
    image["url_topic"] = "mailcam/ha/Box_7-a/url"
    assert "exactly one of image_topic / url_topic" in ha_mqtt_schema.check("image", image)


def test_delivery_events_and_press_topics():
    assert discovery.delivery_event("arrived", False) == "mail_arrived"
    assert discovery.delivery_event("arrived", True) == "package_arrived"
    assert discovery.delivery_event("more", True) == "package_arrived"
    assert discovery.delivery_event("more", False) == "more_mail"
    assert discovery.delivery_event("collected", False) == "collected"
    assert {discovery.delivery_event(k, p) for k in ("arrived", "more", "collected") for p in (True, False)} == set(
        discovery.EVENT_TYPES
    )
    assert discovery.serial_of_press("mailcam/ha/box-1/photo/press") == "box-1"
    for topic in ("mailcam/ha/box-1/photo", "mailcam/v1/box-1/photo/press", "mailcam/ha/a/b/photo/press"):
        assert discovery.serial_of_press(topic) is None


def test_states_follow_the_clouds_words():
    device = {
        "serial": "box-1",
        "online": False,
        "battery_voltage": None,
        "battery_percent": None,
        "rssi": None,
        "last_seen_at": None,
        "awake_ms": 1250,
        "pending_captures": 0,
        "mail": {"state": None, "since": None, "items": [], "categories": {}, "confidence": None, "package": False},
    }
    t = discovery.Topics("box-1")
    unknown = states_of(device)
    assert unknown[t.mail] == b"None" and unknown[t.online] == b"offline"  # "None": Home Assistant's unknown
    assert json.loads(unknown[t.state])["awake_s"] == 1.25
    device["mail"] = {**device["mail"], "state": "mail", "since": "2026-11-30T08:00:00Z", "confidence": 0.9}
    assert states_of(device)[t.mail] == b"ON"
    refused = press_result(
        429,
        {
            "status": "error",
            "error": "click_limit_exceeded",
            "message": "no manual triggers left today",
            "clicks_used": 3,
            "clicks_limit": 3,
            "reset_at": "2026-12-01T00:00:00",
        },
    )
    assert refused["result"] == "click_limit_exceeded" and refused["clicks_limit"] == 3
    assert press_result(None, None, "the cloud could not be reached")["result"] == "failed"
