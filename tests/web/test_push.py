"""The dashboard as an installable PWA that shows push alerts, in headless Chromium.

A real push service is out of reach offline, so the push is handed to the service worker through
the DevTools protocol (``ServiceWorker.deliverPushMessage``) with the payload the server builds.
Tapping is a ``notificationclick`` dispatched in the worker on the shown notification (headless
Chromium has no notification centre to tap in): the handler runs as for a tap, minus the user
activation a real tap gives (window focus)."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import select

from cloud.models import Capture
from cloud.notify import links, webpush
from cloud.notify.base import OutgoingMessage
from tests.web.conftest import WAIT_MS, open_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.db]

NOTIFICATIONS = "navigator.serviceWorker.ready.then((r) => r.getNotifications())" \
                ".then((ns) => ns.map((n) => ({title: n.title, body: n.body, image: n.image, actions: n.actions})))"
TAP = """async (action) => {
  const [notification] = await self.registration.getNotifications();
  self.dispatchEvent(new NotificationEvent("notificationclick", { notification, action }));
}"""


@pytest.fixture
def push_page(browser, live):
    context = browser.new_context(base_url=live.url, timezone_id="UTC", locale="en-GB")
    context.grant_permissions(["notifications"], origin=live.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_manifest_is_valid_and_its_icons_load(http: httpx.Client):
    response = http.get("/manifest.webmanifest")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["name"] and manifest["display"] == "standalone" and manifest["start_url"].startswith("/")
    sizes = set()
    for icon in manifest["icons"]:
        image = Image.open(io.BytesIO(http.get(icon["src"]).content))
        assert f"{image.width}x{image.height}" == icon["sizes"] and image.format == "PNG"
        sizes.add(image.width)
    assert {192, 512} <= sizes  # what browsers ask of an installable app
    assert "/manifest.webmanifest" in http.get("/").text
    assert http.get("/sw.js").headers["content-type"].startswith("text/javascript")


def _shown(page, count: int, wait_ms: int = WAIT_MS) -> list[dict]:
    """The notifications the worker shows, once there are ``count`` (polled with a deadline)."""
    deadline = time.monotonic() + wait_ms / 1000
    while True:
        shown = page.evaluate(NOTIFICATIONS)
        if len(shown) == count or time.monotonic() > deadline:
            return shown
        page.wait_for_timeout(50)


def _push(page, cdp, origin: str, registration: str, message: OutgoingMessage) -> list[dict]:
    """Deliver ``message`` as the push service would (DevTools stands in for it) and return the one
    notification the worker shows. DevTools' deliverPushMessage answers before the worker has the message,
    and about once in ten runs here the worker never got it; the alert's tag makes a repeat replace the
    notification, never add one, so a delivery that shows nothing within a few seconds is sent again."""
    data = json.dumps(webpush.payload(message))
    for _ in range(3):
        cdp.send("ServiceWorker.deliverPushMessage", {"origin": origin, "registrationId": registration, "data": data})
        shown = _shown(page, 1, wait_ms=5_000)
        if shown:
            return shown
    return shown


def _registration_id(cdp, scope_url: str) -> str:
    found: dict[str, str] = {}

    def seen(event: dict) -> None:
        for reg in event["registrations"]:
            if reg["scopeURL"] == scope_url and not reg["isDeleted"]:
                found["id"] = reg["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + WAIT_MS / 1000
    while "id" not in found and time.monotonic() < deadline:
        cdp.send("Runtime.evaluate", {"expression": "1"})  # lets the event loop deliver CDP events
    assert "id" in found, "the service worker registration was not reported"
    return found["id"]


def test_a_pushed_alert_shows_with_its_photo_and_tapping_it_opens_the_capture(push_page, home, live, http):
    page = push_page
    box = home.mailbox("box-1", "Front gate")
    capture_id = home.capture(box, 1)
    open_dashboard(page, home)
    expect(page.get_by_role("heading", name="My mailboxes")).to_be_visible()
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)") == f"{live.url}/sw.js"
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    # The walk-through offers push on this device (nothing subscribed yet).
    expect(page.get_by_role("button", name="Notify me on this device")).to_be_visible()

    with home.ctx.sessions() as session:
        pk = session.scalar(select(Capture.id).where(Capture.capture_id == capture_id))
    image = links.thumbnail_path(home.ctx.settings.secret_key, pk, now=home.ctx.clock.now(), ttl_s=3600)
    message = OutgoingMessage(
        notification_id=1, kind="mail_arrived", event_key="mail_arrived:delivery:x", title="Mail in Front gate",
        body="2 letters", data={"device_serial": "box-1", "capture_id": capture_id}, created_at=datetime.now(UTC),
        address="", extras={"image": image, "take_photo": "1"})
    cdp = page.context.new_cdp_session(page)
    registration = _registration_id(cdp, f"{live.url}/")
    [shown] = _push(page, cdp, live.url, registration, message)
    assert shown["title"] == "Mail in Front gate" and shown["body"] == "2 letters"
    assert shown["image"] == f"{live.url}{image}"
    assert [a["action"] for a in shown["actions"]] == ["take-photo"]
    photo = http.get(shown["image"])  # no bearer token: the signed link alone
    assert photo.status_code == 200 and photo.content[:2] == b"\xff\xd8"

    [worker] = page.context.service_workers
    worker.evaluate(TAP, "")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", name="Photo taken")).to_be_visible()
    expect(page).to_have_url(f"{live.url}/#/mailbox/box-1")
    assert _shown(page, 0) == []  # tapping closes it

    # The same alert again, tapped on its "Take a photo now" action: the mailbox is asked for a photo.
    page.keyboard.press("Escape")
    assert len(_push(page, cdp, live.url, registration, message)) == 1
    worker.evaluate(TAP, "take-photo")
    expect(page.get_by_text("Requested — the mailbox will answer on its next wake")).to_be_visible()
    expect(page).to_have_url(f"{live.url}/#/mailbox/box-1")
    triggers = http.get("/api/devices/box-1/triggers/", headers=home.account.headers).json()
    assert len(triggers) == 1


def test_other_apps_are_added_tested_and_removed_from_the_notifications_page(page, home):
    from tests.notify.fakes import FakeHttp, Reply

    home.ctx.settings.notify.outbound_allow = ["127.0.0.0/8"]  # the local receiver stands in for a LAN Gotify
    with FakeHttp(lambda seen: Reply(200, {})) as receiver:
        open_dashboard(page, home, "#/notifications")
        expect(page.get_by_role("heading", name="Other apps")).to_be_visible()
        url = f"json://mailcam:app-secret-93@127.0.0.1:{receiver.server.server_address[1]}/alerts"
        page.get_by_label("App link (Apprise URL)").fill(url)
        page.get_by_role("button", name="Add app").click()
        expect(page.get_by_text("Added json://")).to_be_visible()
        assert "app-secret-93" not in page.content()  # shown masked, never in full
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_text("Sent to json://")).to_be_visible()
        assert receiver.requests("/alerts")[0].json()["title"] == "mailcam test"
        page.get_by_role("button", name="Remove").click()
        expect(page.get_by_text("gets no more alerts")).to_be_visible()
        expect(page.get_by_role("button", name="Send test")).to_have_count(0)
