"""POST /api/gateway/uploads/: a gateway's captures and telemetry in one request, each item answered as
its own route would answer it, in order, a bad item changing nothing but its own result."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from cloud.models import Capture, Telemetry
from tests.cloudkit import capture_body, jpeg_bytes, new_account, new_device


def _home(api):
    owner = new_account(api, "uploads@example.com")
    box = new_device(api, owner, "up-1")
    other = new_device(api, owner, "up-2")
    token = api.post("/api/gateways/", json={"name": "home"}, headers=owner.headers).json()["gateway_token"]
    return owner, box, other, {"Authorization": f"Bearer {token}"}


def _telemetry(serial: str, **fields) -> dict:
    return {"serial_number": serial, "battery_voltage": 3.7, "rssi": -61, "wake_reason": "door", **fields}


def _count(ctx, model) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_wake_in_one_request_is_stored_as_its_two_requests_would_be(api, cloud_ctx):
    owner, _, _, gateway = _home(api)
    capture = capture_body("up-1", jpeg_bytes(seed=41), capture_id="up-1-0001", battery_voltage=3.7)
    answer = api.post("/api/gateway/uploads/", headers=gateway, json={"items": [
        {"kind": "capture", "body": capture}, {"kind": "telemetry", "body": _telemetry("up-1")}]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [
        {"status": 200, "body": {"status": "saved", "capture_id": "up-1-0001", "analysis_queued": True}},
        {"status": 200, "body": {"status": "recorded"}},
    ]}
    stored = api.get("/api/captures/up-1-0001", headers=owner.headers).json()
    assert stored["analysis"]["status"] == "queued"
    device = api.get("/api/devices/up-1/", headers=owner.headers).json()
    assert device["battery_voltage"] == 3.7 and device["rssi"] == -61
    (gateway_row,) = api.get("/api/gateways/", headers=owner.headers).json()
    assert gateway_row["last_seen_at"] is not None

    again = api.post("/api/gateway/uploads/", headers=gateway, json={"items": [{"kind": "capture", "body": capture}]})
    assert again.json()["results"] == answer.json()["results"][:1]  # idempotent on capture_id, as the route
    assert _count(cloud_ctx, Capture) == 1


def test_a_device_named_by_several_items_is_looked_up_once_per_request(api, cloud_ctx):
    """A wake's capture and report name the same device: the request finds it once (its lookup cost more
    than the report's rows), and each item is still stored as on its own route."""
    from sqlalchemy import event

    owner, _, _, gateway = _home(api)
    lookups: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT devices.id, devices.serial"):
            lookups.append(statement)

    items = [{"kind": "capture", "body": capture_body("up-1", jpeg_bytes(seed=46), capture_id="up-1-0004")},
             {"kind": "telemetry", "body": _telemetry("up-1", rssi=-66)},
             {"kind": "capture", "body": capture_body("up-2", jpeg_bytes(seed=47), capture_id="up-2-0004")},
             {"kind": "telemetry", "body": _telemetry("up-2", rssi=-55)},
             {"kind": "telemetry", "body": _telemetry("up-1", rssi=-64)}]
    event.listen(cloud_ctx.engine, "before_cursor_execute", count)
    try:
        results = api.post("/api/gateway/uploads/", headers=gateway, json={"items": items}).json()["results"]
    finally:
        event.remove(cloud_ctx.engine, "before_cursor_execute", count)
    assert [r["status"] for r in results] == [200] * 5, results
    assert len(lookups) == 2  # one per device
    assert [api.get(f"/api/devices/{s}/", headers=owner.headers).json()["rssi"] for s in ("up-1", "up-2")] == [-64, -55]
    assert _count(cloud_ctx, Capture) == 2 and _count(cloud_ctx, Telemetry) == 3


def test_a_gateway_is_marked_seen_once_a_second_not_once_an_item(api, cloud_ctx, clock):
    """A gateway of a hundred boxes calls ten times a second, two items a call: its last-seen time, shown to
    the minute, was written twice a wake."""
    from sqlalchemy import event

    owner, _, _, gateway = _home(api)
    marks: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("UPDATE gateways SET last_seen_at"):
            marks.append(statement)

    def wake(n: int) -> list[int]:
        items = [{"kind": "capture", "body": capture_body("up-1", jpeg_bytes(seed=60 + n), capture_id=f"up-1-s{n}")},
                 {"kind": "telemetry", "body": _telemetry("up-1")}]
        return [r["status"] for r in api.post("/api/gateway/uploads/", headers=gateway, json={"items": items}).json()[
            "results"]]

    event.listen(cloud_ctx.engine, "before_cursor_execute", count)
    try:
        assert wake(1) == [200, 200] and len(marks) == 1  # the capture marks it; its report, the same second, not
        assert wake(2) == [200, 200] and len(marks) == 1  # nor the next wake within the second
        clock.advance(timedelta(seconds=1))
        assert wake(3) == [200, 200] and len(marks) == 2
    finally:
        event.remove(cloud_ctx.engine, "before_cursor_execute", count)
    (row,) = api.get("/api/gateways/", headers=owner.headers).json()
    assert row["last_seen_at"].replace("Z", "+00:00") == clock.now().isoformat()


def test_a_report_first_then_captures_of_two_devices_are_all_stored(api, cloud_ctx):
    """Any order and mix: the caller is authenticated once, and each item is stored as on its own route."""
    owner, _, _, gateway = _home(api)
    items = [{"kind": "telemetry", "body": _telemetry("up-1", rssi=-70)},
             {"kind": "capture", "body": capture_body("up-1", jpeg_bytes(seed=44), capture_id="up-1-0003")},
             {"kind": "capture", "body": capture_body("up-2", jpeg_bytes(seed=45), capture_id="up-2-0003")},
             {"kind": "telemetry", "body": _telemetry("up-2", rssi=-50)}]
    results = api.post("/api/gateway/uploads/", headers=gateway, json={"items": items}).json()["results"]
    assert [r["status"] for r in results] == [200, 200, 200, 200], results
    assert [api.get(f"/api/devices/{s}/", headers=owner.headers).json()["rssi"] for s in ("up-1", "up-2")] == [-70, -50]
    assert _count(cloud_ctx, Capture) == 2 and _count(cloud_ctx, Telemetry) == 2


def test_a_bad_item_is_its_own_error_and_the_others_are_stored(api, cloud_ctx):
    _, _, _, gateway = _home(api)
    not_a_jpeg = capture_body("up-1", capture_id="up-1-bad")
    not_a_jpeg["image"] = "bm90IGEganBlZw=="
    items = [
        {"kind": "telemetry", "body": _telemetry("up-1", rssi=12)},  # out of range: 422
        {"kind": "capture", "body": not_a_jpeg},  # 422 invalid_image
        {"kind": "telemetry", "body": _telemetry("nobody-9")},  # not the owner's: 404
        {"kind": "telemetry", "body": {"serial_number": ["up-1"]}},  # not even a serial: 422
        {"kind": "capture", "body": capture_body("up-2", jpeg_bytes(seed=42), capture_id="up-2-0001")},
        {"kind": "telemetry", "body": _telemetry("up-2")},
    ]
    answer = api.post("/api/gateway/uploads/", headers=gateway, json={"items": items})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [422, 422, 404, 422, 200, 200]
    assert results[0]["body"]["error"] == "invalid_request" and results[0]["body"]["problems"][0]["loc"] == ["rssi"]
    assert results[1]["body"]["error"] == "invalid_image"
    assert results[2]["body"] == {"error": "not_found", "detail": "unknown device", "device_serial": "nobody-9"}
    assert _count(cloud_ctx, Capture) == 1 and _count(cloud_ctx, Telemetry) == 1


def test_a_failure_for_now_holds_back_the_devices_later_items_only(api, cloud_ctx, monkeypatch):
    _, _, _, gateway = _home(api)
    from cloud.services import telemetry

    real_record = telemetry.record

    def busy_for_up_1(session, ctx, device, report):
        if device.serial == "up-1":
            raise RuntimeError("the database went away")
        return real_record(session, ctx, device, report)

    monkeypatch.setattr(telemetry, "record", busy_for_up_1)
    items = [
        {"kind": "telemetry", "body": _telemetry("up-1")},
        {"kind": "capture", "body": capture_body("up-1", jpeg_bytes(seed=43), capture_id="up-1-0002")},
        {"kind": "telemetry", "body": _telemetry("up-2")},
    ]
    results = api.post("/api/gateway/uploads/", headers=gateway, json={"items": items}).json()["results"]
    assert [r["status"] for r in results] == [500, 503, 200]
    assert results[0]["body"]["error"] == "internal_error"
    assert results[1]["body"]["error"] == "not_attempted"  # up-1's capture must not overtake its report
    assert _count(cloud_ctx, Capture) == 0 and _count(cloud_ctx, Telemetry) == 1


def test_only_a_gateway_may_upload_and_a_bad_request_is_refused_whole(api, cloud_ctx):
    _, box, _, gateway = _home(api)
    one = {"items": [{"kind": "telemetry", "body": _telemetry("up-1")}]}
    assert api.post("/api/gateway/uploads/", json=one).status_code == 401
    assert api.post("/api/gateway/uploads/", json=one, headers={"Authorization": "Bearer mcg_nope"}).status_code == 401
    refused = api.post("/api/gateway/uploads/", json=one, headers=box.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    for bad in ({"items": []}, {"items": [{"kind": "photo", "body": {}}]}, {"items": "x"},
                {"items": [{"kind": "telemetry", "body": {}}] * 33}):
        answer = api.post("/api/gateway/uploads/", json=bad, headers=gateway)
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_request", bad
    assert _count(cloud_ctx, Telemetry) == 0


def test_a_batch_larger_than_one_capture_may_be_is_refused_before_it_is_read(api, cloud_ctx):
    _, _, _, gateway = _home(api)
    limit = cloud_ctx.settings.max_capture_request_bytes
    answer = api.post("/api/gateway/uploads/", headers={**gateway, "Content-Type": "application/json"},
                      content=b'{"items": [' + b" " * limit + b"]}")
    assert answer.status_code == 413 and answer.json()["error"] == "request_too_large"
