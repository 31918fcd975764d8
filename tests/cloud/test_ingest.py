"""POST /api/device/capture/ and the capture endpoints."""

import base64
import hashlib
import io

from PIL import Image
from sqlalchemy import func, select

from cloud.models import AnalysisJob, Capture
from tests.cloudkit import b64, capture_body, jpeg_bytes, new_account, new_device


def _setup(api):
    alice = new_account(api, "alice@example.com")
    return alice, new_device(api, alice, "box-1")


def _count(ctx, model) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_capture_is_saved_stored_and_queued(api, cloud_ctx):
    alice, box = _setup(api)
    image = jpeg_bytes(640, 480, seed=3)
    response = api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id="box-1-0001",
                                                                   battery_voltage=3.81), headers=box.headers)
    assert response.status_code == 200
    assert response.json() == {"status": "saved", "capture_id": "box-1-0001", "analysis_queued": True}

    sha = hashlib.sha256(image).hexdigest()
    assert cloud_ctx.images.path(sha).read_bytes() == image
    assert _count(cloud_ctx, AnalysisJob) == 1

    capture = api.get("/api/captures/box-1-0001", headers=alice.headers).json()
    assert (capture["width"], capture["height"], capture["battery_voltage"]) == (640, 480, 3.81)
    assert capture["analysis"]["status"] == "queued"
    original = api.get(capture["image_url"], headers=alice.headers)
    assert original.headers["content-type"] == "image/jpeg" and original.content == image
    thumb = Image.open(io.BytesIO(api.get(capture["thumbnail_url"], headers=alice.headers).content))
    assert max(thumb.size) <= cloud_ctx.settings.thumbnail_side

    device = api.get("/api/devices/box-1/", headers=alice.headers).json()
    assert device["battery_voltage"] == 3.81 and device["status"] == "online"


def test_same_capture_id_twice_is_one_capture_and_same_answer(api, cloud_ctx):
    _, box = _setup(api)
    body = capture_body("box-1", capture_id="box-1-dup")
    first = api.post("/api/device/capture/", json=body, headers=box.headers)
    second = api.post("/api/device/capture/", json=body, headers=box.headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert _count(cloud_ctx, Capture) == 1 and _count(cloud_ctx, AnalysisJob) == 1


def test_seed_clients_without_capture_id_are_idempotent_too(api, cloud_ctx):
    _, box = _setup(api)
    body = capture_body("box-1", jpeg_bytes(seed=9))
    first = api.post("/api/device/capture/", json=body, headers=box.headers).json()
    second = api.post("/api/device/capture/", json=body, headers=box.headers).json()
    assert first["capture_id"] == second["capture_id"]
    assert _count(cloud_ctx, Capture) == 1


def test_capture_id_of_another_device_is_409(api):
    alice, box = _setup(api)
    other = new_device(api, alice, "box-2")
    api.post("/api/device/capture/", json=capture_body("box-1", capture_id="shared-id"), headers=box.headers)
    clash = api.post("/api/device/capture/", json=capture_body("box-2", capture_id="shared-id"), headers=other.headers)
    assert clash.status_code == 409


def test_unix_timestamp_and_data_url_are_accepted(api):
    _, box = _setup(api)
    body = capture_body("box-1", timestamp=1_763_000_000)
    body["image"] = "data:image/jpeg;base64," + body["image"]
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200


def test_captures_page_newest_first(api, clock):
    alice, box = _setup(api)
    for n in range(5):
        api.post("/api/device/capture/", json=capture_body("box-1", jpeg_bytes(seed=n), capture_id=f"c{n}"),
                 headers=box.headers)
        clock.advance(60)
    page1 = api.get("/api/devices/box-1/captures/", params={"limit": 2}, headers=alice.headers).json()
    assert [c["capture_id"] for c in page1["items"]] == ["c4", "c3"]
    page2 = api.get("/api/devices/box-1/captures/", params={"limit": 2, "cursor": page1["next_cursor"]},
                    headers=alice.headers).json()
    page3 = api.get("/api/devices/box-1/captures/", params={"limit": 2, "cursor": page2["next_cursor"]},
                    headers=alice.headers).json()
    assert [c["capture_id"] for c in page2["items"]] == ["c2", "c1"]
    assert [c["capture_id"] for c in page3["items"]] == ["c0"] and page3["next_cursor"] is None
    bad = api.get("/api/devices/box-1/captures/", params={"cursor": "%%%"}, headers=alice.headers)
    assert bad.status_code == 422


def test_delete_capture_removes_row_and_unshared_file(api, cloud_ctx):
    alice, box = _setup(api)
    image = jpeg_bytes(seed=42)
    sha = hashlib.sha256(image).hexdigest()
    api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id="a"), headers=box.headers)
    api.post("/api/device/capture/", json=capture_body("box-1", image, capture_id="b"), headers=box.headers)
    assert api.delete("/api/captures/a", headers=alice.headers).status_code == 204
    assert cloud_ctx.images.path(sha).exists(), "still used by capture b"
    assert api.delete("/api/captures/b", headers=alice.headers).status_code == 204
    assert not cloud_ctx.images.path(sha).exists()
    assert api.get("/api/captures/b", headers=alice.headers).status_code == 404
    assert _count(cloud_ctx, AnalysisJob) == 0


def test_other_users_cannot_see_or_delete_my_capture(api):
    _, box = _setup(api)
    mallory = new_account(api, "mallory@example.com")
    api.post("/api/device/capture/", json=capture_body("box-1", capture_id="mine"), headers=box.headers)
    for method, path in (("get", "/api/captures/mine"), ("get", "/api/captures/mine/image"),
                         ("get", "/api/captures/mine/thumbnail"), ("delete", "/api/captures/mine")):
        assert getattr(api, method)(path, headers=mallory.headers).status_code == 404


def test_base64_image_helper_roundtrip():
    assert base64.b64decode(b64(b"\xff\xd8abc")) == b"\xff\xd8abc"


def test_capture_stamped_by_an_unset_clock_is_stored_at_its_receive_time_and_marked(api, clock):
    """An ESP32 whose RTC lost power stamps 2000-01-01: expected the receive time, marked an estimate;
    before, the capture was stored as taken in 2000 (and sorted as the oldest photo of the mailbox)."""
    alice, box = _setup(api)
    body = capture_body("box-1", capture_id="box-1-unset", timestamp="2000-01-01T00:00:42Z")
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
    capture = api.get("/api/captures/box-1-unset", headers=alice.headers).json()
    assert capture["taken_at_uncertain"] is True
    assert capture["taken_at"] == capture["received_at"]
    assert capture["taken_at"].startswith(clock.now().date().isoformat())


def test_capture_the_gateway_marked_keeps_its_time_and_the_mark(api):
    alice, box = _setup(api)
    api.post("/api/device/capture/", json=capture_body("box-1", capture_id="box-1-est", timestamp=1_790_000_000,
                                                       time_uncertain=True), headers=box.headers)
    api.post("/api/device/capture/", json=capture_body("box-1", jpeg_bytes(seed=5), capture_id="box-1-ok",
                                                       timestamp=1_790_000_000), headers=box.headers)
    marked = api.get("/api/captures/box-1-est", headers=alice.headers).json()
    sure = api.get("/api/captures/box-1-ok", headers=alice.headers).json()
    assert marked["taken_at_uncertain"] is True and sure["taken_at_uncertain"] is False
    assert marked["taken_at"].startswith("2026-09-21") and sure["taken_at"] == marked["taken_at"]


def test_telemetry_stamped_by_an_unset_clock_keeps_no_2000_timestamp(api, cloud_ctx):
    from cloud.models import Telemetry

    _, box = _setup(api)
    for stamp in ("2000-01-01T00:01:00Z", "2026-09-21T12:00:00Z"):
        response = api.post("/api/device/telemetry/", json={"serial_number": "box-1", "battery_voltage": 3.9,
                                                            "timestamp": stamp}, headers=box.headers)
        assert response.status_code == 200
    with cloud_ctx.sessions() as session:
        reported = [r.reported_at for r in session.scalars(select(Telemetry).order_by(Telemetry.id))]
    assert reported[0] is None and reported[1].year == 2026


def test_telemetry_through_a_gateway_is_recorded_before_the_answer_and_refused_for_others(api, cloud_ctx):
    """The telemetry route runs its work in one worker-thread call (as the capture route): the same
    answers, the report committed before the 200, the gateway marked as heard from."""
    from cloud.models import Gateway, Telemetry

    alice, _ = _setup(api)
    gateway = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    headers = {"Authorization": f"Bearer {gateway}"}
    report = {"serial_number": "box-1", "battery_voltage": 3.81, "rssi": -67, "wake_reason": "door",
              "timestamp": "2026-09-21T12:00:00Z"}
    response = api.post("/api/device/telemetry/", json=report, headers=headers)
    assert response.status_code == 200 and response.json() == {"status": "recorded"}
    with cloud_ctx.sessions() as session:
        rows = list(session.scalars(select(Telemetry)))
        seen = session.scalar(select(Gateway.last_seen_at))
    assert [(r.battery_voltage, r.rssi, r.wake_reason) for r in rows] == [(3.81, -67, "door")]
    assert seen is not None
    box = api.get("/api/devices/box-1", headers=alice.headers).json()
    assert (box["battery_voltage"], box["rssi"], box["status"]) == (3.81, -67, "online")

    unknown = api.post("/api/device/telemetry/", json={**report, "serial_number": "box-9"}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    bad = api.post("/api/device/telemetry/", json=report, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    malformed = api.post("/api/device/telemetry/", json={**report, "battery_voltage": "high"}, headers=headers)
    assert malformed.status_code == 422
    with cloud_ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Telemetry)) == 1  # the refused wrote nothing
