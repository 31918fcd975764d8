"""Property-based run of schemathesis against the app's own OpenAPI schema: no 5xx, no schema violations."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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


def _headers_for(schema, case) -> dict:
    path = case.operation.path
    if path in ("/api/device/capture/", "/api/device/telemetry/"):
        return schema.tokens["device"]
    if path.startswith("/api/gateway/"):
        return schema.tokens["gateway"]
    return schema.tokens["user"]


def test_api_has_no_server_errors_and_matches_its_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            if case.operation.path == "/api/gateway/triggers/" and case.query:
                case.query["wait"] = 0  # a long-poll would only slow the run down
            case.call_and_validate(
                headers=_headers_for(api_schema, case),
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        check()
