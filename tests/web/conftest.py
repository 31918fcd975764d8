"""Fixtures for the dashboard tests: the real app under uvicorn and Debian's headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from cloud import events
from cloud.app import create_app
from cloud.context import AppContext
from cloud.events import DomainEvent
from cloud.models import Analysis, AnalysisStatus, Capture, Device
from cloud.vision.pipeline import RESULT_FIELDS
from tests.cloudkit import Account, LiveServer, OwnedDevice, capture_body, jpeg_bytes, new_account, new_device

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
# Generous deadlines: CI machines run other suites at the same time; a passing wait returns at once.
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module (each test gets its own context).

    Not per session: Playwright's sync API keeps an event loop running in this thread while it is
    started, and then any later test here that calls `asyncio.run` fails.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def live(cloud_ctx: AppContext) -> Iterator[LiveServer]:
    """The real app (migrated, workers off) on a free port."""
    with LiveServer(create_app(ctx=cloud_ctx)) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10, verify=False) as client:  # plain http: skip loading CAs
        yield client


@pytest.fixture
def page(browser, live: LiveServer):
    """A fresh browser context (empty localStorage) on the dashboard's origin."""
    context = browser.new_context(
        base_url=live.url, timezone_id="UTC", locale="en-GB", viewport={"width": 1200, "height": 900}
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@dataclass
class Home:
    """A homeowner with mailboxes, seeded through the real HTTP API."""

    http: httpx.Client
    ctx: AppContext
    account: Account
    password: str = PASSWORD

    def mailbox(self, serial: str, name: str | None = None) -> OwnedDevice:
        device = new_device(self.http, self.account, serial)
        if name:
            r = self.http.patch(f"/api/devices/{serial}/", json={"name": name}, headers=self.account.headers)
            assert r.status_code == 200, r.text
        return device

    def capture(self, device: OwnedDevice, n: int, **extra) -> str:
        capture_id = f"{device.serial}-{n:04d}"
        body = capture_body(device.serial, jpeg_bytes(seed=n), capture_id=capture_id, **extra)
        r = self.http.post("/api/device/capture/", json=body, headers=device.headers)
        assert r.status_code == 200, r.text
        self.ctx.clock.advance(60)  # history is ordered by arrival
        return capture_id

    def telemetry(self, device: OwnedDevice, **fields) -> None:
        body = {"serial_number": device.serial, **fields}
        r = self.http.post("/api/device/telemetry/", json=body, headers=device.headers)
        assert r.status_code == 200, r.text

    def analyse(self, capture_id: str, **result) -> None:
        """Record a vision result directly (the vision worker is off in tests), with the event the
        vision pipeline emits in the same transaction (the dashboard hears of it on its live feed)."""
        with self.ctx.sessions() as session:
            analysis = session.scalar(
                select(Analysis)
                .join(Capture, Analysis.capture_pk == Capture.id)
                .where(Capture.capture_id == capture_id)
            )
            analysis.status = result.pop("status", AnalysisStatus.DONE)
            for field, value in result.items():
                setattr(analysis, field, value)
            capture = session.get(Capture, analysis.capture_pk)
            device = session.get(Device, capture.device_id)
            done = {
                "capture_id": capture_id,
                "device_serial": device.serial,
                "analysis_kind": "initial",
                "status": analysis.status.value,
                **{name: getattr(analysis, name) for name in RESULT_FIELDS},
                "provider": analysis.provider,
                "model": analysis.model,
                "source": analysis.source,
                "error": analysis.error,
                "previous_mail_detected": None,
                "previous_package_present": None,
            }
            failed = analysis.status == AnalysisStatus.FAILED
            events.emit(
                self.ctx.events,
                session,
                DomainEvent.ANALYSIS_FAILED if failed else DomainEvent.ANALYSIS_COMPLETED,
                done,
                user_id=device.owner_id,
                device_id=device.id,
                capture_pk=capture.id,
                key=f"analysis:{capture_id}:test",
            )
            session.commit()


@pytest.fixture
def home(http: httpx.Client, cloud_ctx: AppContext) -> Home:
    return Home(http, cloud_ctx, new_account(http, "alice@example.com", PASSWORD, name="Alice"))


def log_in(page, email: str = "alice@example.com", password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def open_dashboard(page, home: Home, where: str = "#/") -> None:
    """Open the dashboard already signed in as ``home`` (its API token in localStorage, as after a login)."""
    page.goto("/#/login")
    page.evaluate("token => localStorage.setItem('mailcam.token', token)", home.account.token)
    page.goto(f"/{where}")


def wait_answered(page, path: str, count: int) -> None:
    """Wait until the page has read ``count`` whole answers from ``path`` (its resource timing entries).

    A freshly opened dashboard loads each view twice: once on its own, and again when the live stream
    has subscribed (its "reset": nothing changed in between is missed). A test that changes the server's
    state right after opening must wait for that second load, or it may answer with the new state."""
    page.wait_for_function(
        """([path, count]) => performance.getEntriesByType("resource")
             .filter((entry) => new URL(entry.name).pathname === path).length >= count""",
        arg=[path, count],
    )


@contextmanager
def held_requests(page, pattern: str) -> Iterator[list]:
    """Hold the page's requests matching ``pattern`` (they wait, unanswered) until the block ends.

    For a test that must see what the page does *before* a live refresh lands: the refresh a pushed
    event starts is held, so it cannot race the user's click the test is about."""
    held: list = []
    released = False

    def hold(route) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route(pattern, hold)
    try:
        yield held
    finally:
        released = True
        for route in held:
            route.continue_()
        page.unroute(pattern, hold)
