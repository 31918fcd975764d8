"""Malformed requests get a clear 4xx JSON error and change nothing."""

import base64
import io

import pytest
from PIL import Image
from sqlalchemy import func, select

from cloud.models import Capture, Device
from tests.cloudkit import b64, capture_body, jpeg_bytes, new_account, new_device


@pytest.fixture
def box(api):
    alice = new_account(api, "alice@example.com")
    return new_device(api, alice, "box-1")


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(out, "PNG")
    return out.getvalue()


def _captures(ctx) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(Capture))


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("not base64 at all!!", 422, "invalid_image"),
        (b64(_png()), 422, "invalid_image"),
        (b64(jpeg_bytes()[:-400]), 422, "invalid_image"),
        (b64(b"\xff\xd8\xff\xe0 garbage that only starts like a JPEG"), 422, "invalid_image"),
        (b64(jpeg_bytes(16, 16)), 422, "invalid_image"),
        ("", 422, "invalid_image"),
    ],
    ids=["bad-base64", "png", "truncated-jpeg", "fake-jpeg", "too-small", "empty"],
)
def test_bad_images_are_rejected(api, cloud_ctx, box, image, status, code):
    body = capture_body("box-1")
    body["image"] = image
    response = api.post("/api/device/capture/", json=body, headers=box.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["detail"]
    assert _captures(cloud_ctx) == 0


def test_fifty_megabyte_image_is_413(api, cloud_ctx, box):
    body = capture_body("box-1")
    body["image"] = base64.b64encode(b"\xff\xd8" + b"\0" * (50 * 1024 * 1024)).decode()
    response = api.post("/api/device/capture/", json=body, headers=box.headers)
    assert response.status_code == 413 and response.json()["error"] == "image_too_large"
    assert _captures(cloud_ctx) == 0


def test_malformed_json_is_422(api, box):
    response = api.post("/api/device/capture/", content=b"{not json", headers={**box.headers,
                                                                              "content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("field,value", [("trigger_type", "sometimes"), ("battery_voltage", "high"),
                                         ("timestamp", "yesterday"), ("serial_number", "../../etc"),
                                         ("capture_id", "x" * 200), ("unexpected", 1)])
def test_bad_fields_are_422(api, cloud_ctx, box, field, value):
    response = api.post("/api/device/capture/", json=capture_body("box-1", **{field: value}), headers=box.headers)
    assert response.status_code == 422, response.text
    assert _captures(cloud_ctx) == 0


def test_unknown_serial_wrong_token_no_token(api, cloud_ctx, box):
    gateway_like = api.post("/api/device/capture/", json=capture_body("no-such-box"), headers=box.headers)
    assert gateway_like.status_code == 403
    wrong = api.post("/api/device/capture/", json=capture_body("box-1"), headers={"Authorization": "Bearer mcd_nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "not_authenticated"
    missing = api.post("/api/device/capture/", json=capture_body("box-1"))
    assert missing.status_code == 401
    assert _captures(cloud_ctx) == 0
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(Device.last_seen_at)) is None


def test_user_token_cannot_post_captures_and_device_token_cannot_trigger(api, box):
    alice_token = api.post("/api/auth/token/", json={"email": "alice@example.com",
                                                     "password": "correct horse battery"}).json()["access_token"]
    as_user = api.post("/api/device/capture/", json=capture_body("box-1"),
                       headers={"Authorization": f"Bearer {alice_token}"})
    assert as_user.status_code == 401
    as_device = api.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=box.headers)
    assert as_device.status_code == 401


def test_unknown_route_and_method_are_json(api):
    assert api.get("/api/nope").json()["error"] == "not_found"
    assert api.put("/api/device/capture/").status_code == 405
