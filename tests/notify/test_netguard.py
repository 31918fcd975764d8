"""Webhooks cannot reach the server's own network (SSRF), at save time and at send time.

Found in review: ``http://127.0.0.1:…``, ``http://169.254.169.254/…``, ``http://0:…`` and
``http://2130706433:…`` were accepted and called, and the delivery log showed raw transport
errors (it read like a port scanner). Local receivers here run on 127.0.0.1, so tests that
need them put 127.0.0.0/8 on the allow-list (``MAILCAM_NOTIFY__OUTBOUND_ALLOW``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from cloud import netguard
from cloud.notify import outbox
from cloud.notify.base import OutgoingMessage, PermanentFailure
from cloud.notify.webhook import WebhookChannel
from tests.notify.conftest import add_webhook, emit, fast_account, notifications
from tests.notify.fakes import FakeHttp, Reply

REFUSED = [
    "http://127.0.0.1:8123/hook",
    "http://127.1:8123/hook",
    "http://0:8123/hook",
    "http://0.0.0.0:8123/hook",
    "http://2130706433:8123/hook",
    "http://0x7f000001:8123/hook",
    "http://localhost:8123/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.10/hook",
    "http://100.64.0.1/hook",  # CGNAT
    "http://224.0.0.1/hook",  # multicast
    "http://240.0.0.1/hook",  # reserved
    "http://255.255.255.255/hook",
    "http://[::1]:8123/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, mapped
    "http://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 around 169.254.169.254
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[ff02::1]/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_default_policy_refuses_private_targets_at_save_time(api, cloud_ctx, url):
    """Expected: 422 with a reason. Before: every one of these was saved (201) and later called."""
    alice = fast_account(cloud_ctx, "alice@example.com")
    response = api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url})
    assert response.status_code == 422, (url, response.text)
    assert response.json()["error"] == "invalid_request" and "not allowed" in response.json()["detail"]


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "http://8.8.8.8/hook", "http://[2001:4860::8888]/"])
def test_public_targets_are_accepted(api, cloud_ctx, url):
    alice = fast_account(cloud_ctx, "alice@example.com")
    assert api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url}).status_code == 201


@pytest.mark.parametrize("url", ["http://[:::::]/hook", "http://[1.2.3.4]/hook", "http://[12345::1]/hook"])
def test_a_bracketed_host_that_is_no_ipv6_address_is_refused_in_words(api, cloud_ctx, url):
    """The URL pattern admits bracketed hosts so that netguard judges IPv6 literals itself.
    Expected: 422 saying the host is not valid, nothing saved. Before: urlsplit's ValueError
    escaped the save-time check (a 500)."""
    alice = fast_account(cloud_ctx, "alice@example.com")
    response = api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url})
    assert response.status_code == 422, (url, response.text)
    assert response.json()["error"] == "invalid_request" and "not a valid" in response.json()["detail"]
    assert api.get("/api/notifications/webhooks/", headers=alice.headers).json() == []


def test_the_allow_list_lets_a_lan_home_assistant_in_and_nothing_else(api, cloud_ctx):
    cloud_ctx.settings.notify.outbound_allow = ["192.168.1.0/24", "homeassistant.local"]
    alice = fast_account(cloud_ctx, "alice@example.com")
    for url in ("http://192.168.1.10:8123/api/webhook/x", "http://homeassistant.local:8123/api/webhook/x"):
        assert api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url}).status_code == 201
    for url in ("http://192.168.2.10/x", "http://169.254.169.254/x", "http://127.0.0.1/x"):
        assert api.post("/api/notifications/webhooks/", headers=alice.headers, json={"url": url}).status_code == 422


@pytest.fixture
def receiver():
    with FakeHttp(lambda seen: Reply(200, {})) as fake:
        yield fake


def _event(nctx, owner):
    from cloud.events import DomainEvent, Event

    emit(nctx, Event(DomainEvent.AI_BUDGET_REACHED, user_id=owner.user_id, key="budget:1"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0"])
def test_send_time_check_refuses_a_stored_private_target_with_a_clean_reason(nctx, owner, receiver, host):
    """A target saved before the check (or a name that changed since) is refused when sending.
    Expected: nothing reaches the receiver; the log says why in words. Before: the request was sent."""
    nctx.settings.notify.outbound_allow = []  # the default
    port = receiver.server.server_address[1]
    add_webhook(nctx, owner, f"http://{host}:{port}/hook")
    _event(nctx, owner)
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="webhook")
    assert receiver.requests() == []
    assert row.delivery == "failed"
    assert "not allowed" in row.last_error
    assert "127.0.0.1" not in row.last_error and "Errno" not in row.last_error and "Error" not in row.last_error


def test_transport_errors_are_reported_in_words_not_echoed(nctx, owner):
    """Expected: a refused connection reads "could not connect". Before: "ConnectError: [Errno 111] …"."""
    import socket

    nctx.settings.notify.outbound_allow = ["127.0.0.0/8"]
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    add_webhook(nctx, owner, f"http://127.0.0.1:{port}/hook")
    _event(nctx, owner)
    outbox.deliver_due(nctx)
    [row] = notifications(nctx, channel="webhook")
    assert row.delivery == "pending"
    assert row.last_error == "could not connect to the webhook"


def _message(url: str) -> OutgoingMessage:
    return OutgoingMessage(notification_id=1, kind="mail_arrived", event_key="k", title="t", body="b", data={},
                           created_at=datetime.now(UTC), address=url, extras={"secret": "whsec_x"})


class FakeDns:
    """Stands in for DNS (a remote service): fixed answers per name, and a count of lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise netguard.NameNotResolved(host)
        return self.answers[host]


def test_every_resolved_address_is_checked(receiver):
    """A name with one public and one private address is refused (an attacker picks the answers)."""
    dns = FakeDns({"mixed.example": ["93.184.216.34", "127.0.0.1"]})
    channel = WebhookChannel(now=lambda: datetime.now(UTC), policy=netguard.Policy.from_allow([], resolver=dns))
    try:
        with pytest.raises(PermanentFailure, match="not allowed"):
            channel.send(_message(f"http://mixed.example:{receiver.server.server_address[1]}/hook"))
    finally:
        channel.close()
    assert receiver.requests() == []


def test_the_connection_goes_to_the_checked_address_and_host_stays_the_name(receiver):
    """One lookup per connection, its answer checked and connected to: no second lookup to rebind."""
    port = receiver.server.server_address[1]
    dns = FakeDns({"ha.example": ["127.0.0.1"]})
    policy = netguard.Policy.from_allow(["127.0.0.0/8"], resolver=dns)
    channel = WebhookChannel(now=lambda: datetime.now(UTC), policy=policy)
    try:
        channel.send(_message(f"http://ha.example:{port}/hook"))
    finally:
        channel.close()
    [seen] = receiver.requests("/hook")
    assert seen.headers["host"] == f"ha.example:{port}"
    assert dns.lookups == ["ha.example"]


def test_a_host_on_the_allow_list_may_resolve_anywhere():
    dns = FakeDns({"homeassistant.local": ["192.168.1.20"]})
    policy = netguard.Policy.from_allow(["homeassistant.local"], resolver=dns)
    assert policy.resolve("homeassistant.local", 8123) == ["192.168.1.20"]
    with pytest.raises(netguard.TargetRefused):
        netguard.Policy.from_allow([], resolver=dns).resolve("homeassistant.local", 8123)


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS server on 127.0.0.1 with a certificate for "localhost"; records the SNI it was sent."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from tests.notify.tls import self_signed_localhost

    cert, key = self_signed_localhost(tmp_path)
    seen: dict = {"sni": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen["host"] = self.headers["Host"]
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert, seen
    server.shutdown()
    server.server_close()


def test_tls_to_a_pinned_address_keeps_the_name_for_sni_and_certificate_checks(tls_receiver):
    import ssl

    port, cert, seen = tls_receiver
    dns = FakeDns({"localhost": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    policy = netguard.Policy.from_allow(["127.0.0.0/8"], resolver=dns)
    trust = ssl.create_default_context(cafile=str(cert))
    client, _transport = netguard.guarded_client(policy, timeout_s=5, verify=trust)
    with client:
        assert client.get(f"https://localhost:{port}/").status_code == 204
        assert seen["sni"] == ["localhost"] and seen["host"] == f"localhost:{port}"
        # Same address, another name: the certificate is checked against the name, not the address.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(f"https://other.example:{port}/")
