"""A cloud in this process for the in-process benches: an installer's account, claimed boxes, a gateway."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cloud.models import Role
from cloud.services import accounts

EMAIL, PASSWORD = "bench@example.com", "benchmark-password"


def seed_boxes(api: TestClient, ctx: Any, serials: list[str]) -> tuple[dict[str, str], str]:
    """An installer who registered and claimed a box per serial, and a gateway of theirs: (the owner's
    bearer header, the gateway's token)."""
    api.post("/api/users/", json={"email": EMAIL, "password": PASSWORD})
    with ctx.sessions() as session:
        accounts.set_role(session, EMAIL, Role.INSTALLER)
        session.commit()
    token = api.post("/api/auth/token/", json={"email": EMAIL, "password": PASSWORD}).json()["access_token"]
    owner = {"Authorization": f"Bearer {token}"}
    for serial in serials:
        code = api.post("/api/devices/", json={"serial": serial, "wake_interval_s": 60}, headers=owner)
        api.post("/api/devices/claim/", json={"claim_code": code.json()["claim_code"]}, headers=owner)
    return owner, api.post("/api/gateways/", json={"name": "b"}, headers=owner).json()["gateway_token"]
