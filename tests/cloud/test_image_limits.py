"""Image sides are capped at what a mailbox camera produces (``max_image_side``, 2048 px).

Found in review: a small JPEG of 8192x8192 was accepted and then cost +330 MB and 2 CPU-s
to analyse. The side check reads the JPEG header only, before anything is decoded.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cloud.models import Capture
from tests.cloudkit import capture_body, jpeg_bytes, new_account, new_device


@pytest.fixture
def box(api):
    return new_device(api, new_account(api, "alice@example.com"), "box-1")


def _captures(ctx) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(Capture))


def test_image_wider_than_a_camera_frame_is_refused(api, cloud_ctx, box):
    """Expected: 422 invalid_image naming the limit. Before: a 4096 px wide image was stored (200)."""
    wide = jpeg_bytes(4096, 64, quality=30)  # small in bytes, large in pixels
    response = api.post("/api/device/capture/", json=capture_body("box-1", wide), headers=box.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_image"
    assert "2048" in response.json()["detail"]
    assert _captures(cloud_ctx) == 0


def test_a_full_esp32_cam_frame_is_accepted(api, box):
    uxga = jpeg_bytes(1600, 1200, quality=30)  # OV2640's largest frame
    response = api.post("/api/device/capture/", json=capture_body("box-1", uxga), headers=box.headers)
    assert response.status_code == 200, response.text
