"""The device page's history (issue 16 item 3): the owner's calendar days, deliveries, wakes, the battery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud.clock import ManualClock
from cloud.models import DeliveryEvent, Device, Telemetry
from tests.cloudkit import new_account, new_device

NOW = datetime(2026, 3, 30, 10, 0, tzinfo=UTC)  # the Monday after Europe's spring change: Sunday had 23 hours


@pytest.fixture
def clock():
    return ManualClock(NOW)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _device_id(ctx, serial: str) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(Device.id).where(Device.serial == serial))


def _add(ctx, rows) -> None:
    with ctx.sessions() as session:
        session.add_all(rows)
        session.commit()


def _history(api, account, serial="box-1", **params):
    response = api.get(f"/api/devices/{serial}/history", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _seed_a_weekend(ctx, serial: str) -> None:
    device_id = _device_id(ctx, serial)
    wakes = [
        ("2026-03-28T23:30", None, 1000),  # Berlin: Sunday 00:30 (CET)
        ("2026-03-29T21:30", None, 2000),  # Berlin: Sunday 23:30 (CEST)
        ("2026-03-29T22:30", None, 4000),  # Berlin: Monday 00:30
        ("2026-03-30T09:00", "2026-03-27T12:00", 8000),  # forwarded late: it happened on Friday
    ]
    _add(
        ctx,
        [
            Telemetry(
                device_id=device_id,
                received_at=_utc(received),
                reported_at=reported and _utc(reported),
                battery_voltage=3.9,
                awake_ms=ms,
            )
            for received, reported, ms in wakes
        ],
    )
    deliveries = [
        ("2026-03-29T07:10", "arrived"),
        ("2026-03-29T07:40", "more"),
        ("2026-03-29T08:05", "arrived"),
        ("2026-03-29T15:00", "collected"),
    ]
    _add(ctx, [DeliveryEvent(device_id=device_id, kind=kind, at=_utc(at)) for at, kind in deliveries])


def test_days_wakes_and_delivery_times_are_the_owners_calendar(api, cloud_ctx):
    berliner = new_account(api, "anna@example.com", timezone="Europe/Berlin")
    new_device(api, berliner, "box-1")
    _seed_a_weekend(cloud_ctx, "box-1")

    seen = _history(api, berliner, days=3)
    assert seen["timezone"] == "Europe/Berlin"
    assert seen["daily"] == {
        "day": ["2026-03-28", "2026-03-29", "2026-03-30"],
        "deliveries": [0, 3, 0],
        "wakes": [0, 2, 1],
        "awake_s": [0.0, 3.0, 4.0],
    }
    times = seen["delivery_times"]
    assert (times["typical"], times["usual_from"], times["usual_to"]) == ("09:40", "09:25", "09:52")
    assert times["by_hour"][9] == 2 and times["by_hour"][10] == 1 and sum(times["by_hour"]) == 3

    api.patch("/api/users/me/", json={"timezone": "UTC"}, headers=berliner.headers).raise_for_status()
    in_utc = _history(api, berliner, days=3)
    assert in_utc["daily"]["wakes"] == [1, 2, 0] and in_utc["daily"]["awake_s"] == [1.0, 6.0, 0.0]
    assert in_utc["delivery_times"]["typical"] == "07:40"


def test_a_new_mailbox_has_empty_days_and_no_battery_date(api):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    seen = _history(api, alice)
    assert seen["days"] == 28 and len(seen["daily"]["day"]) == 28 and seen["daily"]["day"][-1] == "2026-03-30"
    assert seen["daily"]["deliveries"] == [0] * 28 and seen["daily"]["wakes"] == [0] * 28
    assert seen["battery"]["points"] == [] and seen["battery"]["threshold_v"] == 3.45
    assert seen["battery"]["forecast"]["status"] == "none"
    assert seen["battery"]["forecast"]["reason"] == "no battery readings yet"
    assert seen["delivery_times"] == {"by_hour": [0] * 24, "typical": None, "usual_from": None, "usual_to": None}


def test_battery_points_and_a_replace_by_date_then_none_after_a_battery_change(api, cloud_ctx):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    device_id = _device_id(cloud_ctx, "box-1")
    hours = 10 * 24  # ten days of hourly wakes, falling 0.02 V a day to 3.70 V now
    _add(
        cloud_ctx,
        [
            Telemetry(
                device_id=device_id,
                received_at=NOW - timedelta(hours=hours - k),
                battery_voltage=round(3.9 - 0.02 * k / 24 + (0.01 if k % 2 else -0.01), 3),
            )
            for k in range(hours)
        ],
    )
    seen = _history(api, alice, days=14)
    points = seen["battery"]["points"]
    assert len(points) == 120  # two-hour medians (14 days in at most 240 points)
    assert points == sorted(points) and 3.69 <= points[-1][1] <= 3.72
    forecast = seen["battery"]["forecast"]
    assert forecast["status"] == "projected"
    truth = NOW + timedelta(days=12.5)  # (3.70 - 3.45) / 0.02
    assert datetime.fromisoformat(forecast["earliest"]) <= truth <= datetime.fromisoformat(forecast["latest"])
    assert abs(datetime.fromisoformat(forecast["date"]) - truth) < timedelta(days=1)

    _add(
        cloud_ctx,
        [
            Telemetry(device_id=device_id, received_at=NOW + timedelta(hours=k), battery_voltage=4.15)
            for k in range(1, 13)
        ],
    )
    cloud_ctx.clock.advance(timedelta(hours=12))
    swapped = _history(api, alice, days=14)["battery"]["forecast"]
    assert swapped["status"] == "none" and "battery change" in swapped["reason"]
    assert abs(datetime.fromisoformat(swapped["change_at"]) - NOW) < timedelta(hours=4)


def test_history_of_someone_elses_mailbox_is_404_and_days_are_bounded(api):
    alice, mallory = new_account(api, "alice@example.com"), new_account(api, "mallory@example.com")
    new_device(api, alice, "box-1")
    assert api.get("/api/devices/box-1/history", headers=mallory.headers).status_code == 404
    assert api.get("/api/devices/nope/history", headers=alice.headers).status_code == 404
    for days in (0, 91, "week"):
        response = api.get("/api/devices/box-1/history", params={"days": days}, headers=alice.headers)
        assert response.status_code == 422 and response.json()["error"] == "invalid_request"
    assert api.get("/api/devices/box-1/history").status_code == 401


def test_a_round_across_midnight_is_typical_at_midnight_not_at_noon():
    from cloud.services.device_history import delivery_times

    night = [datetime(2026, 3, d, h, m) for d, h, m in ((1, 23, 50), (2, 0, 10), (3, 0, 20), (4, 23, 40))]
    times = delivery_times(night)
    assert (times.typical, times.usual_from, times.usual_to) == ("00:00", "23:48", "00:12")
