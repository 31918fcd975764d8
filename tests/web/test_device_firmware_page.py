"""The mailbox page's firmware card (issue 14 item 4) in real headless Chromium against the real app:
the running version and the update's state as the mailbox reports it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.cloud.test_firmware import PUBLIC, release_file
from tests.cloudkit import make_settings
from tests.web.conftest import open_dashboard

pytestmark = pytest.mark.browser


@pytest.fixture
def cloud_settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, firmware_public_key=PUBLIC)


def test_firmware_card_shows_download_progress_and_a_rollback_with_its_reason(page, home):
    box = home.mailbox("box-1", name="Front gate")
    headers = home.account.headers
    up = home.http.post(
        "/api/firmware/releases",
        content=release_file("2.0.0"),
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert up.status_code == 201, up.text
    rid = up.json()["release_id"]
    assert (
        home.http.post(
            "/api/firmware/rollouts", json={"version": "2.0.0", "serials": ["box-1"]}, headers=headers
        ).status_code
        == 201
    )
    home.telemetry(
        box,
        firmware_version="1.0.0",
        firmware_update={"release_id": rid, "version": "2.0.0", "state": "downloading", "percent": 40},
    )
    open_dashboard(page, home, "#/mailbox/box-1")
    card = page.locator("section", has=page.get_by_role("heading", name="Firmware"))
    expect(card).to_contain_text("Running 1.0.0")
    expect(card).to_contain_text("Version 2.0.0: downloading, 40%")

    home.telemetry(
        box,
        firmware_version="1.0.0",
        firmware_update={
            "release_id": rid,
            "version": "2.0.0",
            "state": "rolled_back",
            "reason": "no complete wake in 3 boots: RuntimeError('boom')",
        },
    )
    page.reload()
    expect(card.get_by_role("alert")).to_contain_text("rolled back by the mailbox: no complete wake in 3 boots")
