"""Vision fixtures: an app context with chosen vision settings, a device, and a fake OpenAI server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud.app import create_app
from cloud.context import AppContext
from cloud.events import Event
from cloud.models import AIOperation, AnalysisJob
from cloud.vision.worker import process_pending
from mailcam.mailboxes import Item, Mailbox, Wake
from tests.cloudkit import Account, OwnedDevice, capture_body, make_settings, new_account, new_device
from tests.vision.fake_openai import FakeOpenAI

FAST_RETRIES = {"retry_wait_initial_s": 0.001, "retry_wait_max_s": 0.005}


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, session, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@dataclass
class VisionEnv:
    ctx: AppContext
    api: TestClient
    owner: Account
    device: OwnedDevice
    sink: RecordingSink
    counter: list[int] = field(default_factory=lambda: [0])

    def capture(self, image: bytes, capture_id: str | None = None, serial: str | None = None) -> str:
        self.counter[0] += 1
        capture_id = capture_id or f"{self.device.serial}-{self.counter[0]:05d}"
        body = capture_body(serial or self.device.serial, image, capture_id=capture_id,
                            timestamp=self.ctx.clock.now().isoformat())
        response = self.api.post("/api/device/capture/", json=body, headers=self.device.headers)
        assert response.status_code == 200, response.text
        return capture_id

    def analysis(self, capture_id: str) -> dict:
        response = self.api.get(f"/api/captures/{capture_id}", headers=self.owner.headers)
        assert response.status_code == 200, response.text
        return response.json()["analysis"]

    def calibrate(self, capture_id: str, account: Account | None = None) -> dict:
        """Say "the mailbox is empty in this photo" (as the owner, or the given account)."""
        response = self.api.post(f"/api/captures/{capture_id}/reference",
                                 headers=(account or self.owner).headers)
        assert response.status_code == 201, response.text
        return response.json()

    def run(self, limit: int | None = None) -> int:
        return process_pending(self.ctx, limit)

    def shoot(self, box: Mailbox, items: list[Item], wake: int) -> str:
        """Half an hour on, the device photographs ``box`` holding ``items`` and the photo is analysed."""
        self.ctx.clock.advance(timedelta(minutes=30))
        capture_id = self.capture(box.frame(items, Wake(wake)))
        self.run()
        return capture_id

    def operations(self) -> list[AIOperation]:
        with self.ctx.sessions() as session:
            return list(session.scalars(select(AIOperation).order_by(AIOperation.id)))

    def jobs(self) -> list[AnalysisJob]:
        with self.ctx.sessions() as session:
            return list(session.scalars(select(AnalysisJob).order_by(AnalysisJob.id)))

    def now(self) -> datetime:
        return self.ctx.clock.now()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def make_env(tmp_path, database_url, clock) -> Iterator[Callable[..., VisionEnv]]:
    """Build the app with the given vision settings; owner alice with device box-1."""
    opened: list[tuple[TestClient, AppContext]] = []

    def build(**vision) -> VisionEnv:
        settings = make_settings(tmp_path, database_url, vision={**FAST_RETRIES, **vision})
        ctx = AppContext.build(settings, clock=clock)
        sink = RecordingSink()
        ctx.add_event_sink(sink)
        client = TestClient(create_app(ctx=ctx))
        client.__enter__()
        opened.append((client, ctx))
        owner = new_account(client, "alice@example.com")
        device = new_device(client, owner, "box-1")
        return VisionEnv(ctx=ctx, api=client, owner=owner, device=device, sink=sink)

    yield build
    for client, ctx in opened:
        client.__exit__(None, None, None)
        ctx.engine.dispose()


@pytest.fixture
def openai_env(make_env, fake_openai) -> Callable[..., VisionEnv]:
    """An env whose primary provider is the real openai SDK pointed at the fake server."""

    def build(**vision) -> VisionEnv:
        values = {
            "provider": "openai",
            "openai_base_url": fake_openai.base_url,
            "openai_api_key": "test-key",
            "openai_timeout_s": 2.0,
            "fallback_provider": "none",
            **vision,
        }
        return make_env(**values)

    return build
