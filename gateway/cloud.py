"""The gateway's link to the cloud API (httpx, async), with typed errors.

Errors::

    CloudError
    ├── Retryable     connection errors, timeouts, 5xx, 401/408/425/429, and any 4xx that is not the
    │   │             cloud's own JSON error: try again later, keep the item
    │   ├── Unreachable   no connection at all (refused, no route, name not resolved): every other
    │   │                 request would fail the same way right now
    │   └── RouteMissing  the cloud's 404 for a path it has no route for (a deploy, an older cloud)
    └── Rejected      a 4xx carrying the cloud's own error body: the cloud refuses this item for good
                      (reason = the body's "error"; the item is quarantined with its bytes, replayable)

Why only the cloud's own errors are final: anything between the gateway and the cloud (a reverse
proxy's HTML 413, a load balancer's 404 while the cloud is being deployed, a captive portal's 400)
says nothing about the item, and the device deleted its copy long ago. The cloud's errors have one
shape (cloud/errors.py): ``application/json`` with ``{"error": code, "detail": message}``. Even
that shape is retried for codes that describe the moment, not the item: authentication, rate
limits, and a 404 for a route that does not exist (yet) during a deploy (FastAPI's "Not Found").
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.cloudformat import capture_body
from gateway.spool import CAPTURE, DELIVERED, TELEMETRY, Upload

RETRYABLE_STATUS = {401, 408, 425, 429}
TRANSIENT_CODES = {"not_authenticated", "rate_limited", "method_not_allowed"}
ROUTE_MISSING = ("not_found", "Not Found")  # FastAPI's answer for a path it has no route for


def cloud_error(response: httpx.Response) -> tuple[str, str] | None:
    """(code, detail) when the response carries the cloud's own error body, else None."""
    if response.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return _error_of(body)


def _error_of(body: Any) -> tuple[str, str] | None:
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not isinstance(body.get("detail"), str):
        return None
    return body["error"], body["detail"]


class CloudError(Exception):
    """Any failure talking to the cloud."""


class Retryable(CloudError):
    """Temporary: keep the item and retry with backoff."""


class Unreachable(Retryable):
    """No connection to the cloud could be made: not about this item, about the moment."""


class RouteMissing(Retryable):
    """The cloud has no such route (yet): a deploy in progress, or a cloud older than the gateway."""


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

    async def _send(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        try:
            extra = {"timeout": timeout} if timeout is not None else {}
            return await self._http.request(method, url, **kwargs, **extra)
        except httpx.ConnectError as exc:  # refused, no route, DNS: nothing reached the cloud
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:  # timeouts, protocol errors, a connection dropped mid-way
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc

    async def _request(self, method: str, url: str, *, timeout: float | None = None, raw: bool = False,
                       **kwargs: Any) -> Any:
        response = await self._send(method, url, timeout=timeout, **kwargs)
        if raw:
            _raise_for(response)
            return response.content
        return _answer(response)

    async def send(self, item: Upload, image: bytes | None = None) -> Any:
        """Forward one outbox item (a capture with its `image`); raises Retryable or Rejected."""
        if item.kind == CAPTURE:
            return await self._request("POST", "/api/device/capture/",
                                       json=capture_body(item.serial, item.meta, image or b""))
        if item.kind == TELEMETRY:
            return await self._request("POST", "/api/device/telemetry/", json=item.meta)
        if item.kind == DELIVERED:
            return await self._request("POST", f"/api/gateway/triggers/{item.key}/delivered/")
        raise Rejected(0, "unknown_kind", f"outbox kind {item.kind!r}")

    async def send_many(self, items: list[tuple[Upload, bytes | None]]) -> list[Any]:
        """Forward captures (each with its image) and telemetry in one request; raises Retryable or Rejected
        for the request as a whole, else returns one result per item for `item_answer`."""
        body = {"items": [{"kind": item.kind, "body": capture_body(item.serial, item.meta, image or b"")
                           if item.kind == CAPTURE else item.meta} for item, image in items]}
        answer = await self._request("POST", "/api/gateway/uploads/", json=body)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            raise Retryable("an uploads answer without one result per item")
        return results

    async def report_status(self, body: dict[str, Any]) -> None:
        """Tell the cloud how the spool is doing (`cloudformat.status_body`); its owner sees it."""
        await self._request("POST", "/api/gateway/status/", json=body)

    async def devices(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/api/gateway/devices/")

    async def firmware(self, release_id: int, *, offset: int = 0, length: int | None = None) -> bytes:
        """A release's bundle, or ``length`` bytes of it from ``offset``."""
        params: dict[str, Any] = {"offset": offset}
        if length is not None:
            params["length"] = length
        return await self._request("GET", f"/api/gateway/firmware/{release_id}", params=params, raw=True)

    async def triggers(self, *, version: str | None, wait: float) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if version:
            params["version"] = version
        return await self._request("GET", "/api/gateway/triggers/", params=params, timeout=wait + 15)

    async def states(self, *, version: str | None, wait: float) -> dict[str, Any]:
        """The owner's devices as Home Assistant shows them; long-polls while nothing changed since `version`."""
        params: dict[str, Any] = {"wait": wait}
        if version:
            params["version"] = version
        return await self._request("GET", "/api/gateway/states/", params=params, timeout=wait + 15)

    async def trigger(self, serial: str) -> tuple[int, dict[str, Any]]:
        """Ask for a photo now on the owner's behalf: (200 triggered | 202 queued | 429 click limit, the
        cloud's body). A 429 of the click limit is an answer to show, not a moment to wait out."""
        response = await self._send("POST", f"/api/gateway/devices/{serial}/trigger/")
        error = cloud_error(response)
        if response.status_code == 429 and error is not None and error[0] == "click_limit_exceeded":
            return response.status_code, response.json()
        return response.status_code, _answer(response)

    async def image(self, path: str) -> bytes:
        """The bytes behind a signed image path the cloud gave us (a thumbnail link)."""
        response = await self._send("GET", path)
        _raise_for(response)
        if response.headers.get("content-type", "").split(";")[0].strip() != "image/jpeg":
            raise Retryable(f"HTTP {response.status_code}: not a JPEG")
        return response.content


def _raise_for(response: httpx.Response) -> None:
    """Raise Retryable or Rejected for an error answer (see the module docstring)."""
    if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
        raise Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
    if response.status_code >= 400:
        error = cloud_error(response)
        if error is None:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise Retryable(f"HTTP {response.status_code} ({kind}) from something that is not the cloud's API")
        code, detail = error
        if (code, detail) == ROUTE_MISSING:
            raise RouteMissing(f"HTTP {response.status_code} {code}: {detail[:200]}")
        if code in TRANSIENT_CODES:
            raise Retryable(f"HTTP {response.status_code} {code}: {detail[:200]}")
        raise Rejected(response.status_code, code, detail)


def item_answer(result: Any) -> Any:
    """One item's result of `CloudClient.send_many`, read as `_answer` reads a whole response: the body
    its own route would have answered, or Retryable / Rejected by the same rules."""
    if not isinstance(result, dict) or not isinstance(result.get("status"), int) or not isinstance(
            result.get("body"), dict):
        raise Retryable("an uploads result that is not the cloud's")
    status, body = result["status"], result["body"]
    if status < 400:
        return body
    error = _error_of(body)
    code, detail = error or ("no error body", "")
    if status >= 500 or status in RETRYABLE_STATUS or error is None or code in TRANSIENT_CODES:
        raise Retryable(f"HTTP {status} for an item of a batch, {code}: {detail[:200]}")
    raise Rejected(status, code, detail)


def _answer(response: httpx.Response) -> Any:
    """The cloud's JSON answer, or Retryable / Rejected."""
    _raise_for(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:  # a proxy's HTML page, a truncated body: not the cloud's answer
        raise Retryable(f"HTTP {response.status_code} with a body that is not JSON") from exc
