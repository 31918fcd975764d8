"""Helpers for tests that need the real cloud: settings, a live server, API shortcuts."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from PIL import Image, ImageDraw

from cloud.settings import Settings


def make_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    values = {
        "environment": "test",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "run_workers": False,
        "run_scheduler": False,
    }
    values.update(overrides)
    return Settings(**values)


def jpeg_bytes(width: int = 320, height: int = 240, *, seed: int = 0, quality: int = 85) -> bytes:
    """A real JPEG whose content depends on ``seed`` (so different seeds give different hashes)."""
    image = Image.new("RGB", (width, height), (40 + seed % 50, 60, 80))
    draw = ImageDraw.Draw(image)
    box = (min(10 + seed % 40, width // 2), min(10, height // 2), width // 2, height // 2)
    draw.rectangle(box, fill=(200, 190 - seed % 90, 170))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def capture_body(serial: str, data: bytes | None = None, **extra) -> dict:
    body = {
        "serial_number": serial,
        "image": b64(data if data is not None else jpeg_bytes()),
        "trigger_type": "automatic",
        "battery_voltage": 3.9,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body.update(extra)
    return body


@dataclass
class Account:
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_account(client: httpx.Client, email: str, password: str = "correct horse battery", **extra) -> Account:
    response = client.post("/api/users/", json={"email": email, "password": password, **extra})
    assert response.status_code == 201, response.text
    login = client.post("/api/auth/token/", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return Account(email, login.json()["access_token"])


@dataclass
class OwnedDevice:
    serial: str
    device_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.device_token}"}


def grant_installer(client: httpx.Client, account: Account) -> None:
    """What an operator does with `mailcam set-role EMAIL installer`, on the cloud behind ``client``
    (an in-process app; a cloud in another process needs the command itself)."""
    from cloud.models import Role
    from cloud.services import accounts

    if client.get("/api/users/me/", headers=account.headers).json()["role"] == Role.INSTALLER:
        return
    ctx = _app_behind(client).state.ctx
    with ctx.sessions() as session:
        assert accounts.set_role(session, account.email, Role.INSTALLER), account.email
        session.commit()


def make_installer(ctx, email: str) -> None:
    """`mailcam set-role EMAIL installer` on the database behind ``ctx`` (for a cloud in another process
    on the same database)."""
    from cloud.models import Role
    from cloud.services import accounts

    with ctx.sessions() as session:
        assert accounts.set_role(session, email, Role.INSTALLER), email
        session.commit()


def _app_behind(client: httpx.Client):
    app = getattr(client, "app", None)  # a TestClient holds its app
    return app if app is not None else LiveServer.serving[str(client.base_url).rstrip("/")]


def new_device(client: httpx.Client, owner: Account, serial: str, **extra) -> OwnedDevice:
    """Register (as installer = owner, made an installer) and claim a device."""
    grant_installer(client, owner)
    reg = client.post("/api/devices/", json={"serial": serial, **extra}, headers=owner.headers)
    assert reg.status_code == 201, reg.text
    claim = client.post("/api/devices/claim/", json={"claim_code": reg.json()["claim_code"]}, headers=owner.headers)
    assert claim.status_code == 200, claim.text
    return OwnedDevice(serial, claim.json()["device_token"])  # claiming replaced the installer's token


class LiveServer:
    """The real app under uvicorn on a free loopback port, in a thread."""

    serving: dict[str, object] = {}  # url → app, so helpers given only an HTTP client can reach its ctx

    def __init__(self, app, port: int | None = None) -> None:
        self.app = app
        # Bound here, not by uvicorn in its thread: a port found free and bound later could be taken in
        # between (CI saw it), and then only the thread knew. Now the bind fails here (OSError), or holds.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart on its old port
        try:
            self.socket.bind(("127.0.0.1", port or 0))
        except OSError:
            self.socket.close()
            raise
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, name="uvicorn",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        LiveServer.serving[self.url] = self.app
        return self

    def drop_connections(self) -> None:
        """Close every open client connection at the TCP level, as a network drop would."""
        # uvicorn's protocol objects (h11 and httptools alike) keep their loop and transport.
        for connection in list(self.server.server_state.connections):
            connection.loop.call_soon_threadsafe(connection.transport.abort)

    def __exit__(self, *exc: object) -> None:
        LiveServer.serving.pop(self.url, None)
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.socket.close()
