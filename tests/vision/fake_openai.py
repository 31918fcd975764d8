"""A local stand-in for the OpenAI chat completions API (a remote service, so a fake is fair).

It speaks ``POST /v1/chat/completions``, checks what the SDK sent (model, the image as a JPEG
data URL with a ``detail``, the JSON-schema response format), records every request, and
replies from a script: good JSON, fenced JSON, broken JSON, HTTP errors, or a slow reply.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.brokers import free_port

GOOD = {
    "mail_detected": True,
    "confidence": 0.93,
    "description": "Two letters and a small parcel.",
    "counts": {"letter": 2, "package": 1, "magazine": 0, "flyer": 0, "postcard": 0},
    "package_present": True,
    "package_damage": "minor",
    "package_damage_confidence": 0.7,
    "image_quality": "ok",
}
EMPTY = {
    "mail_detected": False,
    "confidence": 0.95,
    "description": "The mailbox is empty.",
    "counts": {"letter": 0, "package": 0, "magazine": 0, "flyer": 0, "postcard": 0},
    "package_present": False,
    "package_damage": "none",
    "package_damage_confidence": 0.0,
    "image_quality": "ok",
}


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int = 85 + 120
    completion_tokens: int = 60

    @classmethod
    def json(cls, data: dict, **kw: Any) -> Reply:
        return cls(content=json.dumps(data), **kw)

    @classmethod
    def text(cls, text: str, **kw: Any) -> Reply:
        return cls(content=text, **kw)

    @classmethod
    def error(cls, status: int, **kw: Any) -> Reply:
        return cls(status=status, **kw)


class FakeOpenAI:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.script: queue.Queue[Reply] = queue.Queue()
        self.default = Reply.json(GOOD)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # header and body go out in separate writes

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                try:
                    fake._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        for reply in replies:
            self.script.put(reply)

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _check(self, path: str, body: dict) -> None:
        if path != "/v1/chat/completions":
            self.problems.append(f"unexpected path {path}")
        messages = body.get("messages") or []
        images = [
            part["image_url"]
            for m in messages if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image_url"
        ]
        if not body.get("model"):
            self.problems.append("no model")
        # One image, or two on a calibrated device: the box empty first, then the new photo.
        if len(images) not in (1, 2):
            self.problems.append(f"expected one or two images, got {len(images)}")
            return
        for image in images:
            url = image.get("url", "")
            if not url.startswith("data:image/jpeg;base64,"):
                self.problems.append("image is not a JPEG data URL")
            elif not base64.b64decode(url.split(",", 1)[1]).startswith(b"\xff\xd8"):
                self.problems.append("image is not a JPEG")
            if image.get("detail") not in ("low", "high", "auto"):
                self.problems.append("no detail")
        fmt = body.get("response_format") or {}
        if fmt.get("type") != "json_schema" or "schema" not in fmt.get("json_schema", {}):
            self.problems.append("no json_schema response_format")

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length", 0))
        body = json.loads(handler.rfile.read(length) or b"{}")
        self.requests.append({"path": handler.path, "body": body, "headers": dict(handler.headers)})
        self._check(handler.path, body)
        try:
            reply = self.script.get_nowait()
        except queue.Empty:
            reply = self.default
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            payload = {"error": {"message": f"scripted {reply.status}", "type": "server_error", "code": None}}
        else:
            payload = {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "unknown"),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            }
        data = json.dumps(payload).encode()
        handler.send_response(reply.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def images_per_request(self) -> list[int]:
        return [
            sum(1 for m in r["body"]["messages"] if isinstance(m.get("content"), list)
                for part in m["content"] if part.get("type") == "image_url")
            for r in self.requests
        ]

    def image_details(self) -> list[str]:
        return [
            part["image_url"]["detail"]
            for r in self.requests for m in r["body"]["messages"] if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image_url"
        ]
