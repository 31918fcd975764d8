"""Property-based run of schemathesis against the app's own OpenAPI schema: no 5xx, no schema violations."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.cloudkit import capture_body, new_account, new_device


@pytest.fixture
def api_schema(api):
    """The schema of the live test app, with a user, a device and a gateway to act as."""
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    gateway = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    api.post("/api/device/capture/", json=capture_body("box-1", capture_id="known-capture"), headers=box.headers)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    schema.tokens = {"user": alice.headers, "device": box.headers, "gateway": {"Authorization": f"Bearer {gateway}"}}
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _headers_for(case) -> dict:
    tokens = case.operation.schema.tokens
    path = case.operation.path
    if path in ("/api/device/capture/", "/api/device/telemetry/"):
        return tokens["device"]
    if path.startswith("/api/gateway/"):
        return tokens["gateway"]
    return tokens["user"]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_has_no_server_errors_and_matches_its_schema(case):
    if case.operation.path == "/api/gateway/triggers/" and case.query:
        case.query["wait"] = 0  # a long-poll would only slow the run down
    case.call_and_validate(
        headers=_headers_for(case),
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
