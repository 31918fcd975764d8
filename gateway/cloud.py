"""The gateway's link to the cloud API (httpx, async), with typed errors.

Errors::

    CloudError
    ├── Retryable     connection errors, timeouts, 5xx, 401/408/429: try again later, keep the item
    └── Rejected      other 4xx: the cloud refuses this item for good (reason = the body's "error")
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from gateway.store import CAPTURE, DELIVERED, TELEMETRY, OutboxItem

RETRYABLE_STATUS = {401, 408, 425, 429}


class CloudError(Exception):
    """Any failure talking to the cloud."""


class Retryable(CloudError):
    """Temporary: keep the item and retry with backoff."""


class Rejected(CloudError):
    """Permanent 4xx: dead-letter the item with the cloud's reason."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class CloudClient:
    """Thin async client for the endpoints the gateway uses; use as an async context manager."""

    def __init__(self, *, base_url: str, token: str | None, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout_s), transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            extra = {"timeout": timeout} if timeout is not None else {}
            response = await self._http.request(method, url, **kwargs, **extra)
        except httpx.TransportError as exc:  # connect errors, timeouts, protocol errors
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
            raise Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            raise Rejected(response.status_code, str(body.get("error") or f"http_{response.status_code}"),
                           str(body.get("detail") or response.text[:300]))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:  # a proxy's HTML page, a truncated body: not the cloud's answer
            raise Retryable(f"HTTP {response.status_code} with a body that is not JSON") from exc

    async def send(self, item: OutboxItem, image: bytes | None = None) -> Any:
        """Forward one outbox item (a capture with its `image`); raises Retryable or Rejected."""
        if item.kind == CAPTURE:
            meta = item.meta
            body = {
                "serial_number": item.serial,
                "image": base64.b64encode(image or b"").decode(),
                "trigger_type": meta["trigger_type"],
                "battery_voltage": round(meta["bat_mv"] / 1000.0, 3),
                "timestamp": meta["ts"],
                "capture_id": meta["capture_id"],
                "trigger_id": meta["trigger_id"],
            }
            return await self._request("POST", "/api/device/capture/", json=body)
        if item.kind == TELEMETRY:
            return await self._request("POST", "/api/device/telemetry/", json=item.meta)
        if item.kind == DELIVERED:
            return await self._request("POST", f"/api/gateway/triggers/{item.key}/delivered/")
        raise Rejected(0, "unknown_kind", f"outbox kind {item.kind!r}")

    async def devices(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/api/gateway/devices/")

    async def triggers(self, *, version: str | None, wait: float) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if version:
            params["version"] = version
        return await self._request("GET", "/api/gateway/triggers/", params=params, timeout=wait + 15)
