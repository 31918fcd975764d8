"""What the cloud's logs may not contain."""

import logging

import httpx

from cloud.app import create_app


def test_outgoing_request_urls_are_not_logged(cloud_ctx, caplog):
    """Expected: no outgoing URL at INFO (webhook URLs carry secrets in their path).
    Happened: httpx logged ``HTTP Request: POST https://hooks.example/…/SECRET "HTTP/1.1 200 OK"``."""
    create_app(ctx=cloud_ctx)
    caplog.set_level(logging.INFO)
    secret_url = "https://hooks.example.com/services/T000/B000/very-secret-path-token"
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        assert client.post(secret_url, json={}).status_code == 200
    assert "very-secret-path-token" not in caplog.text
