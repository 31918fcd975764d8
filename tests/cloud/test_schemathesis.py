"""Property-based run of schemathesis against the app's own OpenAPI schema.

With a logged-in user, a device token and a gateway token: no 5xx, no status code the document
does not state, no response that breaks its schema, and no schema-valid request rejected (so the
document states what the server enforces: time zones, E.164, URL schemes, cursor format, ids).
"""

import ipaddress

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi import unregister_string_format

from cloud.netguard import is_public
from cloud.notify.schemas import WEBHOOK_URL_FORMAT
from tests.cloudkit import b64, capture_body, jpeg_bytes, new_account, new_device

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    content_type_conformance,
]
# Bodies only a library can judge: whether an Apprise URL names a service is Apprise's parse, which
# no JSON Schema pattern states (a 422 says so in words); every other check still applies.
# A firmware release file is judged by its Ed25519 signature and hashes: no schema states a valid one.
LIBRARY_PARSED = {("POST", "/api/notifications/apprise/targets/"), ("POST", "/api/firmware/releases")}
# These end the credentials the run uses (log out, new password, token rotation, gateway revocation,
# deleting the device):
# they run last, so every other operation is exercised while the tokens still work.
CREDENTIAL_ENDING = {
    ("DELETE", "/api/auth/token/"),
    ("DELETE", "/api/auth/tokens/"),
    ("POST", "/api/users/me/password/"),
    ("POST", "/api/devices/{serial}/token/"),
    ("DELETE", "/api/devices/{serial}/token/"),
    ("DELETE", "/api/devices/{serial}/"),
    ("POST", "/api/gateways/{gateway_id}/token/"),
    ("DELETE", "/api/gateways/{gateway_id}/"),
}


def _webhook_urls() -> st.SearchStrategy[str]:
    """Values of the schema's "webhook-url" format: URLs whose host the default outbound policy allows.
    The pattern states the shape; which hosts are public depends on DNS, so hypothesis is told here
    (what is refused, and in which words, is tests/notify/test_netguard.py's)."""
    ipv4 = st.ip_addresses(v=4).filter(is_public).map(str)
    # Global unicast (2000::/3), with is_public removing its special ranges (6to4 around a private address, …).
    ipv6 = st.integers(0x2000 << 112, (0x4000 << 112) - 1).map(ipaddress.IPv6Address).filter(is_public)
    name = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).map("{}.example.com".format)
    host = st.one_of(ipv4, ipv6.map("[{}]".format), name)
    return st.builds(
        "{}://{}{}{}{}".format,
        st.sampled_from(["http", "https"]),
        st.sampled_from(["", "user:secret@"]),
        host,
        st.one_of(st.just(""), st.integers(1, 65535).map(":{}".format)),
        st.from_regex(r"([/?#][!-~]{0,40})?", fullmatch=True),
    )


@pytest.fixture
def api_schema(api):
    """The schema of the live test app, with a user, a device and a gateway to act as."""
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    gateway = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    api.post("/api/device/capture/", json=capture_body("box-1", capture_id="known-capture"), headers=box.headers)
    schemathesis.openapi.format(WEBHOOK_URL_FORMAT, _webhook_urls())
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    schema.tokens = {"user": alice.headers, "device": box.headers, "gateway": {"Authorization": f"Bearer {gateway}"}}
    yield schema
    unregister_string_format(WEBHOOK_URL_FORMAT)


def _headers_for(schema, case) -> dict:
    path = case.operation.path
    if path == "/api/events/" and case.operation.method.upper() == "GET":
        return {}  # an authorised event stream never ends (tests/cloud/test_live.py reads it); its ticket is checked
    if path in ("/api/device/capture/", "/api/device/telemetry/"):
        return schema.tokens["device"]
    if path.startswith("/api/gateway/"):
        return schema.tokens["gateway"]
    return schema.tokens["user"]


def _prepare(case) -> None:
    path = case.operation.path
    if path in ("/api/gateway/triggers/", "/api/gateway/states/") and case.query:
        case.query["wait"] = 0  # a long-poll would only slow the run down
    if path == "/api/device/capture/" and isinstance(case.body, dict) and "image" in case.body:
        # The schema says "base64 JPEG" (contentMediaType image/jpeg); hypothesis cannot make one.
        case.body["image"] = b64(jpeg_bytes(seed=len(str(case.body))))


def test_api_has_no_server_errors_and_matches_its_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 15
    operations.sort(key=lambda op: (op.method.upper(), op.path) in CREDENTIAL_ENDING)

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  phases=[Phase.explicit, Phase.generate])
        def check(case) -> None:
            _prepare(case)
            key = (case.operation.method.upper(), case.operation.path)
            checks = [c for c in CHECKS if c is not positive_data_acceptance] if key in LIBRARY_PARSED else CHECKS
            case.call_and_validate(headers=_headers_for(api_schema, case), checks=checks)

        check()
