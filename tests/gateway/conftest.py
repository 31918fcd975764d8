"""Gateway fixtures: the real cloud under uvicorn (stoppable on a fixed port), an account with a gateway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.brokers import Mosquitto, free_port
from tests.cloudkit import Account, LiveServer, new_account, new_device
from tests.gateway.kit import GatewayProcess


@dataclass
class Cloud:
    """The cloud app on a fixed port; `down()` / `up()` stop and start it (same database)."""

    ctx: object
    port: int = field(default_factory=free_port)
    server: LiveServer | None = None
    started: bool = False
    account: Account | None = None
    gateway_token: str = ""
    serials: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        from cloud.app import create_app

        app = create_app(ctx=self.ctx)
        try:
            server = LiveServer(app, port=self.port)
        except OSError:
            # The port free_port() found was taken since (another socket of the machine's got it first).
            # Only on the first start: a restart must keep its address, which the gateway was given.
            if self.started:
                raise
            server = LiveServer(app)
            self.port = server.port
        self.server = server.__enter__()
        self.started = True

    def down(self) -> None:
        if self.server:
            self.server.__exit__(None, None, None)
            self.server = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def add_device(self, serial: str) -> None:
        with self.client() as client:
            new_device(client, self.account, serial)
        self.serials.append(serial)

    def capture_counts(self) -> dict[str, int]:
        """capture_id → number of rows in the cloud database."""
        from cloud.models import Capture

        with self.ctx.sessions() as session:
            rows = session.execute(select(Capture.capture_id, func.count()).group_by(Capture.capture_id)).all()
        return dict(rows)

    def device(self, serial: str):
        from cloud.models import Device

        with self.ctx.sessions() as session:
            device = session.scalar(select(Device).where(Device.serial == serial))
            session.expunge(device)
            return device


@pytest.fixture
def cloud(cloud_ctx) -> Iterator[Cloud]:
    """The live cloud with one account, two devices and a registered gateway."""
    c = Cloud(ctx=cloud_ctx)
    c.up()
    with c.client() as client:
        c.account = new_account(client, f"gw-{uuid.uuid4().hex[:6]}@example.com")
        reg = client.post("/api/gateways/", json={"name": "home"}, headers=c.account.headers)
        assert reg.status_code == 201, reg.text
        c.gateway_token = reg.json()["gateway_token"]
    suffix = uuid.uuid4().hex[:6]
    for name in ("A", "B"):
        c.add_device(f"mbx{name}-{suffix}")
    yield c
    c.down()


def gateway_env(cloud: Cloud, broker: Mosquitto, **extra: object) -> dict[str, str]:
    env = {
        "cloud_url": cloud.url,
        "token": cloud.gateway_token,
        "broker_host": broker.host,
        "broker_port": broker.port,
        "client_id": f"gw-{uuid.uuid4().hex[:8]}",
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1.0,
        "trigger_wait_s": 2,
        "housekeeping_s": 0.5,
        "sqlite_synchronous": "NORMAL",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return {k: str(v) for k, v in env.items()}


@pytest.fixture
def gateway_proc(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Collects gateway subprocesses started by a test and stops them all afterwards."""
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        proc.stop()
