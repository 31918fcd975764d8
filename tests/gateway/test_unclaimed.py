"""Issue 15: a mailbox that sends before its owner claims it, through the owner's gateway (a real
Mosquitto, the gateway as a subprocess, the real cloud): nothing is dropped, and the owner sees the
gateway's state in the cloud."""

from __future__ import annotations

import uuid

import pytest

from tests.cloudkit import grant_installer, jpeg_bytes, new_account
from tests.gateway.conftest import gateway_env
from tests.gateway.kit import GatewayProcess, Publisher, wait_until

pytestmark = pytest.mark.slow


def test_photos_sent_before_the_claim_are_held_reported_and_delivered_on_the_claim(
    tmp_path, cloud, mosquitto, gateway_proc
):
    serial = f"late-{uuid.uuid4().hex[:6]}"
    with cloud.client() as client:
        installer = new_account(client, f"fitter-{serial}@example.com")
        grant_installer(client, installer)
        registered = client.post("/api/devices/", json={"serial": serial}, headers=installer.headers)
        assert registered.status_code == 201
    gateway = GatewayProcess(tmp_path / "gw", env=gateway_env(cloud, mosquitto, devices_refresh_s=1))
    gateway_proc.append(gateway)
    gateway.start()

    device = Publisher(mosquitto.host, mosquitto.port)
    try:
        capture_id = device.capture(serial, jpeg_bytes(seed=7), chunk_size=2048)
    finally:
        device.close()

    def reported() -> dict | None:
        with cloud.client() as client:
            (row,) = client.get("/api/gateways/", headers=cloud.account.headers).json()
        return row if row["held"] == 1 else None

    status = wait_until(reported, 20, "the gateway reports the held photo")
    assert status["state"] == "online" and status["broker_connected"] is True
    assert status["backlog"] == 0 and status["dead_letters"] == 0
    assert capture_id not in cloud.capture_counts()  # not the owner's yet: kept at the gateway

    with cloud.client() as client:
        claim = client.post(
            "/api/devices/claim/", json={"claim_code": registered.json()["claim_code"]}, headers=cloud.account.headers
        )
        assert claim.status_code == 200
    wait_until(lambda: cloud.capture_counts().get(capture_id) == 1, 20, "the held photo reaches the cloud")
    with cloud.client() as client:
        page = client.get(f"/api/devices/{serial}/captures/", headers=cloud.account.headers).json()
    assert [c["capture_id"] for c in page["items"]] == [capture_id]
