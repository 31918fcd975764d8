"""The homeowner's dashboard in real headless Chromium against the real app (uvicorn, SQLite/PostgreSQL)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cloud.models import JobStatus
from tests.web.conftest import log_in

pytestmark = pytest.mark.browser


def _mail(home, capture_id: str) -> None:
    home.analyse(capture_id, mail_detected=True, confidence=0.93, categories={"letters": 2, "packages": 1},
                 description="Two envelopes and a small box", package_present=True)


def test_mailbox_page_shows_latest_photo_and_result(page, home):
    box = home.mailbox("box-1", name="Front gate")
    home.telemetry(box, battery_voltage=3.31, firmware_version="1.4.2", rssi=-61)
    _mail(home, home.capture(box, 1, battery_voltage=3.31))

    log_in(page)
    card = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Front gate"))
    expect(card).to_contain_text("Online")
    expect(card).to_contain_text("low battery")
    expect(card).to_contain_text("1.4.2")
    expect(card).to_contain_text("just now")
    expect(card).to_contain_text("You have mail: 2 letters, 1 package")

    card.get_by_role("link", name="Front gate").click()
    expect(page.get_by_role("heading", level=1, name="Front gate")).to_be_visible()
    latest = page.locator("section", has=page.get_by_role("heading", name="Latest photo"))
    expect(latest).to_contain_text("You have mail: 2 letters, 1 package")
    thumb = latest.get_by_role("img", name=re.compile("Photo taken"))
    expect(thumb).to_have_attribute("src", re.compile("^blob:"))
    assert thumb.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    expect(page.get_by_text("3 of 3 photos left today")).to_be_visible()
    page.screenshot(path="/tmp/dashboard.png", full_page=True)
