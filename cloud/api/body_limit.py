"""A cap on request bodies, enforced before anything parses them (a pure ASGI middleware).

Without it a client could make the server buffer any amount: FastAPI reads a JSON body whole
before a dependency checks the token. Two guards, both answering the JSON ``413``
``{"error": "request_too_large", "detail", "max_bytes"}`` (``image_too_large`` on the capture route,
whose body is essentially the image, as the handler itself says for a too-large image):

- a declared ``Content-Length`` over the route's cap is refused on the headers alone;
- a streamed (chunked) body is counted as it arrives, and reading stops at the cap.

Routes that carry an image (base64 in JSON) get a cap a little over 4/3 of the image
limit; every other route a small one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    """Raised from ``receive`` to unwind the app once the cap is passed (caught below)."""


@dataclass(frozen=True)
class Cap:
    max_bytes: int
    error: str = "request_too_large"


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: Cap, routes: Mapping[str, Cap]) -> None:
        self.app = app
        self.default = default
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.routes.get(scope["path"], self.default)
        limit = cap.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, cap)
            return

        received = 0
        exceeded = False
        response_started = False

        async def guarded_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _TooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # the app's answer to the unwinding (FastAPI turns it into a 400): ours is sent below
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _TooLarge:
            pass
        if exceeded and not response_started:
            await _refuse(send, cap)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11) refuses a malformed length before we see it
    return None


async def _refuse(send: Send, cap: Cap) -> None:
    detail = f"the request body exceeds {cap.max_bytes} bytes"
    body = json.dumps({"error": cap.error, "detail": detail, "max_bytes": cap.max_bytes}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # The rest of the body is not read: the connection cannot be reused.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
