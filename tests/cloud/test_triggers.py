"""Manual triggers and click limits: reserve → work → refund, exact under concurrency."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from cloud.app import create_app
from cloud.models import ClickUsage, ManualTrigger, Tier, User
from cloud.scheduler import PeriodicJob, core_jobs, run_once_per_period
from cloud.services import accounts
from tests.cloudkit import LiveServer, capture_body, new_account, new_device


def _trigger(api, account, serial="box-1"):
    return api.post("/api/device/trigger/", json={"device_serial": serial}, headers=account.headers)


def _status(api, account, serial="box-1"):
    return api.get("/api/device/status/", params={"device_serial": serial}, headers=account.headers).json()


def _set_premium(ctx, email):
    with ctx.sessions() as session:
        user = session.scalar(select(User).where(User.email == email))
        accounts.set_tier(session, user, Tier.PREMIUM, ctx.clock.now())
        session.commit()


def test_offline_device_is_queued_202_and_online_is_200(api):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    queued = _trigger(api, alice)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    api.post("/api/device/telemetry/", json={"serial_number": "box-1", "battery_voltage": 3.9}, headers=box.headers)
    triggered = _trigger(api, alice)
    assert triggered.status_code == 200 and triggered.json()["status"] == "triggered"
    assert triggered.json()["clicks_used"] == 2 and triggered.json()["clicks_limit"] == 3


def test_free_tier_gets_three_clicks_then_429_with_reset(api, clock):
    clock.set(datetime(2026, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 in Berlin (CET, UTC+1)
    alice = new_account(api, "alice@example.com", timezone="Europe/Berlin")
    new_device(api, alice, "box-1")
    assert [_trigger(api, alice).status_code for _ in range(3)] == [202, 202, 202]
    refused = _trigger(api, alice)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "click_limit_exceeded"
    assert (body["clicks_used"], body["clicks_limit"]) == (3, 3)
    assert body["reset_at"] == "2026-03-11T00:00:00+01:00"  # next local midnight, with offset
    status = _status(api, alice)
    assert (status["clicks_used_today"], status["clicks_limit"], status["user_tier"]) == (3, 3, "free")

    clock.advance(timedelta(minutes=31))  # past local midnight: a new day
    assert _trigger(api, alice).status_code == 202
    assert _status(api, alice)["clicks_used_today"] == 1


def test_premium_is_unlimited(api, cloud_ctx):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    _set_premium(cloud_ctx, "alice@example.com")
    assert all(_trigger(api, alice).status_code == 202 for _ in range(6))
    status = _status(api, alice)
    assert status["user_tier"] == "premium" and status["clicks_limit"] is None


def test_trigger_for_someone_elses_device_is_404_and_costs_nothing(api, cloud_ctx):
    alice, mallory = new_account(api, "alice@example.com"), new_account(api, "mallory@example.com")
    new_device(api, alice, "box-1")
    assert _trigger(api, mallory).status_code == 404
    assert _trigger(api, mallory, "no-such-box").status_code == 404
    with cloud_ctx.sessions() as session:
        assert session.scalars(select(ClickUsage)).all() == []


def test_manual_capture_fulfils_its_trigger(api):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    trigger_id = _trigger(api, alice).json()["trigger_id"]
    body = capture_body("box-1", capture_id="manual-1", trigger_type="manual", trigger_id=trigger_id)
    assert api.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
    [trigger] = api.get("/api/devices/box-1/triggers/", headers=alice.headers).json()
    assert trigger["status"] == "fulfilled" and trigger["capture_id"] == "manual-1"
    assert trigger["click_refunded"] is False
    assert _status(api, alice)["clicks_used_today"] == 1


def test_double_tap_costs_one_click_for_one_photo(api):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    _trigger(api, alice)
    second = _trigger(api, alice).json()["trigger_id"]
    body = capture_body("box-1", capture_id="manual-2", trigger_type="manual", trigger_id=second)
    api.post("/api/device/capture/", json=body, headers=box.headers)
    triggers = api.get("/api/devices/box-1/triggers/", headers=alice.headers).json()
    assert {t["status"] for t in triggers} == {"fulfilled"}
    assert sorted(t["click_refunded"] for t in triggers) == [False, True]
    assert _status(api, alice)["clicks_used_today"] == 1


def test_expired_trigger_refunds_its_click(api, cloud_ctx, clock):
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    for _ in range(3):
        _trigger(api, alice)
    assert _trigger(api, alice).status_code == 429
    with cloud_ctx.sessions() as session:
        # Move the requests' expiry into the past without leaving the local day.
        for trigger in session.scalars(select(ManualTrigger)):
            trigger.expires_at = clock.now() - timedelta(seconds=1)
        session.commit()
    job = next(j for j in core_jobs(cloud_ctx) if j.name == "expire_triggers")
    assert run_once_per_period(cloud_ctx, job) is True
    triggers = api.get("/api/devices/box-1/triggers/", headers=alice.headers).json()
    assert {t["status"] for t in triggers} == {"expired"} and all(t["click_refunded"] for t in triggers)
    with cloud_ctx.sessions() as session:
        assert sum(row.used for row in session.scalars(select(ClickUsage))) == 0


def test_cancel_refunds_and_a_fulfilled_trigger_cannot_be_refunded(api, cloud_ctx):
    alice = new_account(api, "alice@example.com")
    box = new_device(api, alice, "box-1")
    first = _trigger(api, alice).json()["trigger_id"]
    cancelled = api.post(f"/api/device/trigger/{first}/cancel/", headers=alice.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _status(api, alice)["clicks_used_today"] == 0
    # Cancelling twice refunds once.
    api.post(f"/api/device/trigger/{first}/cancel/", headers=alice.headers)
    assert _status(api, alice)["clicks_used_today"] == 0

    second = _trigger(api, alice).json()["trigger_id"]
    api.post("/api/device/capture/", json=capture_body("box-1", trigger_type="manual", trigger_id=second),
             headers=box.headers)
    late = api.post(f"/api/device/trigger/{second}/cancel/", headers=alice.headers)
    assert late.json()["status"] == "fulfilled"
    assert _status(api, alice)["clicks_used_today"] == 1


def test_expiry_job_runs_once_per_period_across_processes(cloud_ctx, api, clock):
    """Two schedulers (as in two cloud processes) firing in the same period: one run, one refund."""
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    _trigger(api, alice)
    clock.advance(cloud_ctx.settings.trigger_ttl_s + 1)
    job = PeriodicJob("expire_triggers_test", 3600, core_jobs(cloud_ctx)[0].run)
    assert [run_once_per_period(cloud_ctx, job), run_once_per_period(cloud_ctx, job)] == [True, False]
    with cloud_ctx.sessions() as session:
        assert sum(row.used for row in session.scalars(select(ClickUsage))) == 0


def test_twenty_concurrent_clicks_with_three_left_give_three_accepted(cloud_ctx):
    """Regression guard for a read-modify-write race: 20 simultaneous requests must not overspend."""
    with LiveServer(create_app(ctx=cloud_ctx)) as server, httpx.Client(base_url=server.url) as client:
        alice = new_account(client, "alice@example.com")
        new_device(client, alice, "box-1")

        async def fire() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as aclient:
                start = asyncio.Event()

                async def one() -> int:
                    await start.wait()
                    response = await aclient.post("/api/device/trigger/", json={"device_serial": "box-1"},
                                                  headers=alice.headers)
                    return response.status_code

                tasks = [asyncio.create_task(one()) for _ in range(20)]
                await asyncio.sleep(0)
                start.set()
                return await asyncio.gather(*tasks)

        # In a thread of its own: a Playwright test earlier in this worker leaves an event loop running here
        with ThreadPoolExecutor(1) as pool:
            codes = pool.submit(asyncio.run, fire()).result(timeout=120)
        assert sorted(codes).count(202) == 3 and codes.count(429) == 17, codes
        with cloud_ctx.sessions() as session:
            assert session.scalar(select(ClickUsage.used)) == 3
            assert len(session.scalars(select(ManualTrigger)).all()) == 3


def test_cancelling_a_delivered_trigger_gives_no_click_back(api):
    """Expected: once the device has picked up a trigger, cancelling it refunds nothing (the photo still
    comes). Happened: the click was refunded and the photo arrived anyway: a free photo per cancel."""
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    gateway = api.post("/api/gateways/", json={"name": "home"}, headers=alice.headers).json()["gateway_token"]
    trigger_id = _trigger(api, alice).json()["trigger_id"]
    delivered = api.post(f"/api/gateway/triggers/{trigger_id}/delivered/",
                         headers={"Authorization": f"Bearer {gateway}"})
    assert delivered.status_code == 200

    cancelled = api.post(f"/api/device/trigger/{trigger_id}/cancel/", headers=alice.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["click_refunded"] is False
    assert _status(api, alice)["clicks_used_today"] == 1


def test_changing_time_zone_does_not_grant_another_days_clicks(api, clock):
    """Expected: moving the account to a zone where it is already tomorrow keeps today's count.
    Happened: UTC 23:30 → Pacific/Kiritimati (UTC+14, already the next day) gave three fresh clicks at once."""
    clock.set(datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    alice = new_account(api, "alice@example.com")
    new_device(api, alice, "box-1")
    assert [_trigger(api, alice).status_code for _ in range(3)] == [202, 202, 202]
    assert _trigger(api, alice).status_code == 429

    moved = api.patch("/api/users/me/", json={"timezone": "Pacific/Kiritimati"}, headers=alice.headers)
    assert moved.status_code == 200
    assert _trigger(api, alice).status_code == 429
    assert _status(api, alice)["clicks_used_today"] == 3
    # And back again: still today's count, no fresh day either way.
    api.patch("/api/users/me/", json={"timezone": "UTC"}, headers=alice.headers)
    assert _trigger(api, alice).status_code == 429

    clock.advance(timedelta(hours=24, minutes=31))  # the next UTC day: clicks are back
    assert _trigger(api, alice).status_code == 202
