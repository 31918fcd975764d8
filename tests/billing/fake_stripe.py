"""A local stand-in for the Stripe API (a remote service, so a fake is fair), for the real ``stripe`` SDK.

It speaks what mailcam calls: ``POST /v1/checkout/sessions`` and ``POST /v1/billing_portal/sessions``,
form-encoded as the SDK sends them (``line_items[0][price]=…``). Like Stripe it refuses a request
without the secret key (401) or with a missing or unknown parameter value (400, Stripe's error
JSON), records every request, and answers with the session object whose ``url`` is a page of this
server (``/c/pay/<id>``, ``/p/session/<id>``), so a browser can follow it.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from tests.brokers import free_port

API_KEY = "sk_test_fake_mailcam"
PRICES = {"price_monthly_test": "month", "price_yearly_test": "year"}


@dataclass
class Recorded:
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    port: int = field(default_factory=free_port)
    requests: list[Recorded] = field(default_factory=list)
    fail_with: int | None = None  # answer every API call with this HTTP status (a Stripe outage)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.requests.clear()
        self.fail_with = None

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(6))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # the pages a browser is sent to
                if self.path.startswith(("/c/pay/", "/p/session/")):
                    title = "Fake Stripe Checkout" if self.path.startswith("/c/") else "Fake Stripe customer portal"
                    self._send(200, f"<!doctype html><title>{title}</title><h1>{title}</h1>", "text/html")
                else:
                    self._send(404, json.dumps({"error": {"type": "invalid_request_error", "message": "no page"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                fake.requests.append(Recorded(self.path, form, {k.lower(): v for k, v in self.headers.items()}))
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._error(401, "Invalid API Key provided", None, "authentication_error")
                elif fake.fail_with:
                    self._error(fake.fail_with, "Stripe is having a bad day", None, "api_error")
                elif self.path == "/v1/checkout/sessions":
                    self._checkout(form)
                elif self.path == "/v1/billing_portal/sessions":
                    self._portal(form)
                else:
                    self._error(404, f"Unrecognized request URL (POST: {self.path})", None)

            def _error(self, status: int, message: str, param: str | None, kind: str = "invalid_request_error"):
                error = {"type": kind, "message": message, **({"param": param} if param else {})}
                self._send(status, json.dumps({"error": error}))

            def _checkout(self, form: dict[str, str]) -> None:
                for param in ("mode", "success_url", "cancel_url", "line_items[0][price]"):
                    if not form.get(param):
                        return self._error(400, f"Missing required param: {param}.", param)
                if form["line_items[0][price]"] not in PRICES:
                    return self._error(400, f"No such price: '{form['line_items[0][price]']}'", "line_items[0][price]")
                if form.get("customer") and form.get("customer_email"):
                    return self._error(
                        400, "You may only specify one of these parameters: customer, customer_email.", "customer"
                    )
                session_id = "cs_test_" + secrets.token_hex(12)
                self._send(
                    200,
                    json.dumps(
                        {
                            "id": session_id,
                            "object": "checkout.session",
                            "mode": form["mode"],
                            "client_reference_id": form.get("client_reference_id"),
                            "customer": form.get("customer"),
                            "customer_email": form.get("customer_email"),
                            "success_url": form["success_url"],
                            "cancel_url": form["cancel_url"],
                            "status": "open",
                            "payment_status": "unpaid",
                            "url": f"{fake.url}/c/pay/{session_id}",
                        }
                    ),
                )

            def _portal(self, form: dict[str, str]) -> None:
                if not form.get("customer"):
                    return self._error(400, "Missing required param: customer.", "customer")
                session_id = "bps_" + secrets.token_hex(12)
                self._send(
                    200,
                    json.dumps(
                        {
                            "id": session_id,
                            "object": "billing_portal.session",
                            "customer": form["customer"],
                            "return_url": form.get("return_url"),
                            "url": f"{fake.url}/p/session/{session_id}",
                        }
                    ),
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-stripe", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
