"""Issue 15: the gateway from the dashboard, and the owner's grant to the installer, in headless Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.conftest import open_dashboard

pytestmark = pytest.mark.browser


def test_add_a_gateway_see_its_token_and_command_once_watch_it_and_revoke_it(page, home):
    open_dashboard(page, home, "#/gateways")
    page.get_by_label("Name").fill("Garage Pi")
    page.get_by_role("button", name="Add a gateway").click()

    panel = page.locator("section", has=page.get_by_role("heading", name="Gateway “Garage Pi” added"))
    expect(panel).to_contain_text("shown only once")
    token = panel.get_by_label("Token").inner_text().strip()
    assert re.fullmatch(r"mcg_[A-Za-z0-9_-]+", token)
    command = panel.get_by_label("Start it on the gateway box").inner_text().strip()
    assert command == f"MAILCAM_GATEWAY_CLOUD_URL={home.http.base_url} MAILCAM_GATEWAY_TOKEN={token} mailcam gateway"
    expect(panel.get_by_label("/etc/systemd/system/mailcam-gateway.service")).to_contain_text(
        "EnvironmentFile=/etc/mailcam/gateway.env"
    )
    card = page.locator(".gateway-card", has_text="Garage Pi")
    expect(card).to_contain_text("Not connected yet")
    # Only now use the token: its first call marks the gateway seen, and the list may be drawn after it.
    gateway = {"Authorization": f"Bearer {token}"}
    assert home.http.get("/api/gateway/devices/", headers=gateway).status_code == 200  # the token shown works
    report = {"backlog": 3, "backlog_oldest_s": 42, "held": 1, "dead_letters": 0, "broker_connected": True}
    assert home.http.post("/api/gateway/status/", json=report, headers=gateway).status_code == 204
    page.reload()
    expect(card).to_contain_text("Online")
    expect(card).to_contain_text("Waiting to upload 3 (oldest 42 s)")
    expect(card).to_contain_text("Held until a mailbox is claimed 1")
    assert token not in page.content()  # shown once: gone after a reload

    card.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status").filter(has_text="is revoked")).to_be_visible()
    expect(page.locator(".gateway-card")).to_have_count(0)
    assert home.http.get("/api/gateway/devices/", headers=gateway).status_code == 401  # refused at once


def test_the_owner_lets_the_installer_look_and_takes_it_back(page, home):
    home.mailbox("box-1", name="Front gate")
    open_dashboard(page, home, "#/mailbox/box-1")
    allow = page.get_by_label("Let the installer who set up this mailbox see it")
    expect(allow).not_to_be_checked()
    allow.check()
    expect(page.get_by_text("The installer can see this mailbox.")).to_be_visible()
    device = home.http.get("/api/devices/box-1/", headers=home.account.headers).json()
    assert device["installer_access"] is True
    allow.uncheck()
    expect(page.get_by_text("The installer can no longer see this mailbox.")).to_be_visible()
    assert home.http.get("/api/devices/box-1/", headers=home.account.headers).json()["installer_access"] is False
