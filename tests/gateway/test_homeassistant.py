"""Home Assistant through MQTT discovery: the real gateway (subprocess), the real cloud (uvicorn), a real
Mosquitto; Home Assistant itself is played by an MQTT client that reads what it would read and presses
what it would press.

The discovery payloads are checked against a fixture of Home Assistant's documented keys per platform
(tests/gateway/ha_mqtt_schema.py, transcribed from Home Assistant core's MQTT schemas), not against
Home Assistant's own validators: its current releases do not install on Python 3.11.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from cloud.vision.worker import process_pending
from gateway.homeassistant import discovery
from mailcam import scenes
from tests.cloudkit import capture_body, make_settings
from tests.gateway import ha_mqtt_schema
from tests.gateway.kit import Publisher, wait_until
from tests.gateway.test_end_to_end import start_gateway

pytestmark = pytest.mark.slow
PREFIX = "homeassistant"
ENTITIES = 12  # per mailbox: see gateway/homeassistant/discovery.py
CONFIGS = ENTITIES + 1  # and the "package arrived" device trigger


@pytest.fixture
def cloud_settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, free_clicks_per_day=1)


def retained(broker, topic_filter: str) -> dict[str, bytes]:
    """What a client subscribing now is given as retained under `topic_filter` (empty payloads = nothing)."""
    probe = Publisher(broker.host, broker.port)
    marker = f"mailcam/ha/test-marker/{uuid.uuid4().hex}"
    try:
        probe.subscribe(topic_filter)
        probe.subscribe(marker)
        probe.publish(marker, b"end")  # after the SUBACKs: arrives after every retained message
        wait_until(lambda: any(m.topic == marker for m in probe.received), 10, "the marker")
        return {m.topic: m.payload for m in probe.received if m.retain and m.payload}
    finally:
        probe.close()


class HomeAssistant:
    """Subscribes like Home Assistant's MQTT integration and keeps every message (events are not retained)."""

    def __init__(self, broker) -> None:
        self.client = Publisher(broker.host, broker.port)
        self.lock = threading.Lock()
        self.client.subscribe("mailcam/ha/#")

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            found = [m.payload for m in self.client.received if m.topic == topic]
        return found[-1] if found else None

    def events(self, serial: str) -> list[dict]:
        topic = discovery.Topics(serial).delivery
        return [json.loads(m.payload) for m in list(self.client.received) if m.topic == topic]

    def press(self, serial: str) -> None:
        self.client.publish(discovery.Topics(serial).press, discovery.PRESS.encode())

    def close(self) -> None:
        self.client.close()


def configs_of(broker, serial: str) -> dict[str, dict]:
    found = retained(broker, f"{PREFIX}/+/{serial}/+/config")
    return {topic: json.loads(payload) for topic, payload in found.items()}


def post_capture(cloud, serial: str, image: bytes) -> str:
    capture_id = f"{serial}-{uuid.uuid4().hex[:10]}"
    with cloud.client() as client:
        token = cloud.gateway_token
        response = client.post(
            "/api/device/capture/",
            headers={"Authorization": f"Bearer {token}"},
            json=capture_body(serial, image, capture_id=capture_id, timestamp=cloud.ctx.clock.now().isoformat()),
        )
        assert response.status_code == 200, response.text
    return capture_id


def _package_attributes(payload: bytes | None) -> dict | None:
    """The Mail sensor's attributes once they say a package is in the box, else None."""
    attributes = json.loads(payload) if payload else {}
    return attributes if attributes.get("package") is True else None


def test_each_mailbox_appears_with_valid_configs_and_follows_the_clouds_delivery_state(
    tmp_path, cloud, mosquitto, gateway_proc
):
    ha = HomeAssistant(mosquitto)
    try:
        gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, homeassistant="true")
        serial, other = cloud.serials
        topics = discovery.Topics(serial)
        wait_until(lambda: len(configs_of(mosquitto, serial)) == CONFIGS, 20, "discovery configs")

        # Retained under <prefix>/<component>/<serial>/<object>/config, each valid for its platform.
        pattern = ha_mqtt_schema.discovery_topic_re(PREFIX)
        configs = configs_of(mosquitto, serial)
        unique_ids = set()
        for topic, payload in configs.items():
            component = pattern.match(topic)["component"]
            assert ha_mqtt_schema.check(component, payload) == [], topic
            assert payload["device"]["identifiers"] == [f"mailcam_{serial}"]
            assert payload["device"]["via_device"].startswith("mailcam_gateway_")
            if component != "device_automation":
                unique_ids.add(payload["unique_id"])
        assert len(unique_ids) == ENTITIES
        components = sorted(pattern.match(t)["component"] for t in configs)
        assert components.count("binary_sensor") == 2 and components.count("sensor") == 7
        assert {"button", "image", "event", "device_automation"} <= set(components)
        gateway_configs = retained(mosquitto, f"{PREFIX}/binary_sensor/+/online/config")
        via = configs[f"{PREFIX}/binary_sensor/{serial}/mail/config"]["device"]["via_device"]
        assert any(json.loads(p)["device"]["identifiers"] == [via] for p in gateway_configs.values())
        assert len(configs_of(mosquitto, other)) == CONFIGS

        # Not judged yet; the gateway is available; the mailbox has not been heard from.
        available = discovery.availability_topic(discovery.gateway_id(gw.env["client_id"]))
        wait_until(lambda: ha.latest(topics.mail) == b"None", 10, "mail state unknown")
        assert retained(mosquitto, available) == {available: b"online"}
        assert ha.latest(topics.online) == b"offline"

        # Calibrate on an empty photo, then a package: the Mail sensor turns on as the cloud decides.
        empty = post_capture(cloud, serial, scenes.render("empty", 41))
        with cloud.client() as client:
            reference = client.post(f"/api/captures/{empty}/reference", headers=cloud.account.headers)
            assert reference.status_code == 201, reference.text
        process_pending(cloud.ctx)
        wait_until(lambda: ha.latest(topics.mail) == b"OFF", 10, "mail off after the empty photo")
        assert ha.events(serial) == []
        post_capture(cloud, serial, scenes.render("package", 41))
        process_pending(cloud.ctx)
        wait_until(lambda: ha.latest(topics.mail) == b"ON", 10, "mail on after the package")
        # The attributes are a message of their own, published just after the state: wait for them too.
        attributes = wait_until(lambda: _package_attributes(ha.latest(topics.mail_attributes)), 10,
                                "the package's attributes")
        assert attributes["confidence"] > 0.5 and attributes["since"]
        assert "package" in attributes["categories"] and isinstance(attributes["items"], list)
        wait_until(lambda: ha.events(serial), 10, "the delivery event")
        assert [e["event_type"] for e in ha.events(serial)] == ["package_arrived"]
        photo = wait_until(lambda: retained(mosquitto, topics.photo).get(topics.photo), 10, "the latest photo")
        assert photo[:2] == b"\xff\xd8"  # a JPEG, retained for Home Assistant's image entity

        # A restart keeps the entities (same retained configs, same unique ids) and fires no event twice.
        gw.stop()
        assert retained(mosquitto, available) == {available: b"offline"}  # unavailable while it is away
        assert {p.get("unique_id") for p in configs_of(mosquitto, serial).values()} - {None} == unique_ids
        gw.start()
        wait_until(lambda: retained(mosquitto, available) == {available: b"online"}, 20, "available again")
        assert {p.get("unique_id") for p in configs_of(mosquitto, serial).values()} - {None} == unique_ids
        assert retained(mosquitto, topics.mail)[topics.mail] == b"ON"
        assert len(ha.events(serial)) == 1
    finally:
        ha.close()


def test_the_photo_button_goes_through_the_clouds_click_limit_and_deleting_a_mailbox_clears_its_configs(
    tmp_path, cloud, mosquitto, gateway_proc
):
    ha = HomeAssistant(mosquitto)
    try:
        gw = start_gateway(tmp_path, cloud, mosquitto, gateway_proc, homeassistant="true")
        serial, other = cloud.serials
        topics = discovery.Topics(serial)
        wait_until(lambda: len(configs_of(mosquitto, serial)) == CONFIGS, 20, "discovery configs")

        ha.press(serial)  # the free tier has one click a day here
        first = json.loads(wait_until(lambda: ha.latest(topics.press_result), 10, "the press's result"))
        assert first["result"] == "queued" and first["clicks_used"] == 1  # the mailbox sleeps: next wake
        with cloud.client() as client:
            made = client.get(f"/api/devices/{serial}/triggers/", headers=cloud.account.headers).json()
        assert [t["trigger_id"] for t in made] == [first["trigger_id"]]

        ha.press(serial)
        refused = wait_until(
            lambda: (r := json.loads(ha.latest(topics.press_result)))["result"] != "queued" and r,
            10,
            "the second press's result",
        )
        assert refused["result"] == "click_limit_exceeded" and refused["http_status"] == 429
        assert refused["clicks_used"] == 1 and refused["clicks_limit"] == 1 and refused["reset_at"]
        assert retained(mosquitto, topics.press_result)[topics.press_result] == ha.latest(topics.press_result)
        with cloud.client() as client:
            assert len(client.get(f"/api/devices/{serial}/triggers/", headers=cloud.account.headers).json()) == 1

        # A broker that lost its retained messages: Home Assistant's birth message brings the configs back.
        mail_config = f"{PREFIX}/binary_sensor/{serial}/mail/config"
        ha.client.publish(mail_config, b"", retain=True)
        assert mail_config not in configs_of(mosquitto, serial)
        ha.client.publish(f"{PREFIX}/status", b"online")
        wait_until(lambda: mail_config in configs_of(mosquitto, serial), 10, "configs republished")

        # The owner deletes the mailbox: its entities go (empty retained configs), the other one's stay.
        with cloud.client() as client:
            assert client.delete(f"/api/devices/{serial}/", headers=cloud.account.headers).status_code == 204
        wait_until(lambda: configs_of(mosquitto, serial) == {}, 15, "configs cleared")
        assert retained(mosquitto, f"{topics.base}/#") == {}  # and its retained states
        assert len(configs_of(mosquitto, other)) == CONFIGS

        # Deleted while the gateway is away: it remembers what it published and clears it when back.
        gw.stop()
        with cloud.client() as client:
            assert client.delete(f"/api/devices/{other}/", headers=cloud.account.headers).status_code == 204
        gw.start()
        wait_until(lambda: configs_of(mosquitto, other) == {}, 15, "the other's configs cleared after the restart")
    finally:
        ha.close()
