"""The mailbox page's settings card (issue 14 item 3) in real headless Chromium against the real app."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.web.conftest import open_dashboard

pytestmark = pytest.mark.browser


def test_settings_are_saved_shown_waiting_applied_and_refused(page, home):
    box = home.mailbox("box-1", name="Front gate")
    open_dashboard(page, home, "#/mailbox/box-1")
    card = page.locator("section", has=page.get_by_role("heading", name="Settings"))
    expect(card).to_contain_text("installed with")

    card.get_by_label("JPEG quality").fill("99")
    card.get_by_role("button", name="Save settings").click()
    expect(card.get_by_role("alert")).to_contain_text("quality must be an integer in 2..63")  # the device rule

    card.get_by_label("Wake every").fill("900")
    card.get_by_label("JPEG quality").fill("20")
    card.get_by_label("Flash").select_option("On")
    card.get_by_role("button", name="Save settings").click()
    expect(card).to_contain_text("Version 1 waits for the mailbox's next wake")
    saved = home.http.get("/api/devices/box-1/settings", headers=home.account.headers).json()
    assert saved["desired"] == {"wake_interval_s": 900, "camera.quality": 20, "camera.flash": True}

    home.telemetry(box, settings_version=1)
    page.reload()
    expect(card).to_contain_text("In effect on the mailbox (version 1)")
    expect(card.get_by_label("Wake every")).to_have_value("900")

    home.telemetry(box, settings_version=1, settings_error="ver 2: door.level is not configured on this device")
    page.reload()
    expect(card).to_contain_text("The mailbox refused a change: ver 2: door.level is not configured")
