"""The mailbox page's life charts (issue 16 item 3) in real headless Chromium against the real app."""

from __future__ import annotations

import io
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import expect
from sqlalchemy import select

from cloud.models import DeliveryEvent, Device, Telemetry
from tests.web.conftest import open_dashboard

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("MAILCAM_TEST_ARTIFACTS", tempfile.gettempdir()))


def _seed_ten_days(ctx, serial: str) -> None:
    """Hourly wakes falling 0.02 V a day to 3.70 V now; a delivery most mornings around 10:00 UTC."""
    now = ctx.clock.now()
    with ctx.sessions() as session:
        device_id = session.scalar(select(Device.id).where(Device.serial == serial))
        session.add_all(
            Telemetry(
                device_id=device_id,
                received_at=now - timedelta(hours=240 - k),
                awake_ms=1500,
                battery_voltage=round(3.9 - 0.02 * k / 24 + (0.01 if k % 2 else -0.01), 3),
            )
            for k in range(240)
        )
        morning = now.replace(hour=10, minute=0, second=0) - timedelta(days=1)
        session.add_all(
            DeliveryEvent(device_id=device_id, kind="arrived", at=morning - timedelta(days=d, minutes=7 * d))
            for d in range(0, 9, 2)
        )
        session.commit()


def test_life_charts_draw_the_battery_with_its_threshold_and_date_and_the_daily_bars(page, home):
    box = home.mailbox("box-1", name="Front gate")
    _seed_ten_days(home.ctx, box.serial)
    served = home.http.get("/api/devices/box-1/history", params={"days": 28}, headers=home.account.headers).json()

    open_dashboard(page, home, "#/mailbox/box-1")
    card = page.locator("section", has=page.get_by_role("heading", name="Mailbox life"))
    expect(card).to_contain_text("Replace or charge by about")
    battery = card.get_by_role("img", name="Battery voltage", exact=False)
    line = battery.locator("polyline.battery-line")
    expect(line).to_have_count(1)
    assert len(line.get_attribute("points").split()) == len(served["battery"]["points"]) >= 80  # 3-hour medians
    expect(battery.locator("line.threshold")).to_have_count(1)
    expect(battery.locator("rect.forecast-range")).to_have_count(1)
    expect(card.get_by_role("img", name="Deliveries per day").locator("rect")).to_have_count(28)
    expect(card.get_by_role("img", name="Deliveries by hour of the day").locator("rect")).to_have_count(24)
    expect(card.get_by_role("img", name="Wakes per day").locator("rect")).to_have_count(28)
    expect(card).to_contain_text("Mail usually comes around 09:")
    # The threshold line sits at 3.45 V on the chart: below the whole battery line.
    threshold_y = battery.locator("line.threshold").bounding_box()["y"]
    assert line.bounding_box()["y"] + line.bounding_box()["height"] < threshold_y

    shot = card.screenshot(path=str(ARTIFACTS / "mailcam-device-life.png"))
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width > 600 and image.height > 400
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20  # drawn, not a blank card
    assert max(ImageStat.Stat(image).stddev) > 10

    card.get_by_label("Show").select_option("7 days")
    expect(card.get_by_role("img", name="Deliveries per day").locator("rect")).to_have_count(7)


def test_a_new_mailbox_says_why_there_is_no_date_yet(page, home):
    home.mailbox("box-1", name="Front gate")
    open_dashboard(page, home, "#/mailbox/box-1")
    card = page.locator("section", has=page.get_by_role("heading", name="Mailbox life"))
    expect(card).to_contain_text("No replace-by date yet: no battery readings yet.")
    expect(card).to_contain_text("Too few deliveries yet")
    expect(card.get_by_role("img", name="Battery voltage", exact=False).locator("line.threshold")).to_have_count(1)
    expect(card.get_by_role("img", name="Battery voltage", exact=False).locator("polyline")).to_have_count(0)
