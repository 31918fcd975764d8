"""A cloud in this process for the in-process benches: an installer's account, claimed boxes, a gateway."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cloud.app import create_app
from cloud.models import Role
from cloud.services import accounts
from cloud.settings import Settings

EMAIL, PASSWORD = "bench@example.com", "benchmark-password"


@dataclass(frozen=True)
class BenchCloud:
    api: TestClient
    ctx: Any  # cloud.context.AppContext
    owner: dict[str, str]  # the installer's bearer header
    gateway_token: str


@contextmanager
def cloud_with_boxes(serials: list[str]) -> Iterator[BenchCloud]:
    """A cloud on SQLite in a temporary folder, no background workers or scheduler (the bench runs the
    jobs itself), with an installer who registered and claimed a box per serial, and a gateway of theirs."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(environment="test", data_dir=Path(tmp) / "data", run_workers=False, run_scheduler=False)
        with TestClient(create_app(settings)) as api:
            ctx = api.app.state.ctx
            api.post("/api/users/", json={"email": EMAIL, "password": PASSWORD})
            with ctx.sessions() as session:
                accounts.set_role(session, EMAIL, Role.INSTALLER)
                session.commit()
            token = api.post("/api/auth/token/", json={"email": EMAIL, "password": PASSWORD}).json()["access_token"]
            owner = {"Authorization": f"Bearer {token}"}
            for serial in serials:
                code = api.post("/api/devices/", json={"serial": serial, "wake_interval_s": 60}, headers=owner)
                api.post("/api/devices/claim/", json={"claim_code": code.json()["claim_code"]}, headers=owner)
            gateway_token = api.post("/api/gateways/", json={"name": "b"}, headers=owner).json()["gateway_token"]
            yield BenchCloud(api, ctx, owner, gateway_token)
