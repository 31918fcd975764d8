"""The whole app under uvicorn with its background services: a manual photo reaches a webhook."""

from __future__ import annotations

import time

import httpx

from cloud.app import create_app
from cloud.context import AppContext
from cloud.notify.webhook import verify
from tests.cloudkit import LiveServer, capture_body, make_settings, new_account, new_device
from tests.notify.fakes import FakeHttp, Reply


def test_live_app_delivers_a_signed_webhook_for_a_fulfilled_trigger(tmp_path, database_url, clock):
    settings = make_settings(tmp_path, database_url, run_workers=True, run_scheduler=False)
    settings.notify.worker_poll_interval_s = 0.05
    settings.vision.worker_poll_interval_s = 0.05
    settings.notify.outbound_allow = ["127.0.0.0/8"]  # the fake receiver's address
    ctx = AppContext.build(settings, clock=clock)
    try:
        with FakeHttp(lambda seen: Reply(200, {})) as receiver, LiveServer(create_app(ctx=ctx)) as server, \
                httpx.Client(base_url=server.url, timeout=10) as client:
            alice = new_account(client, "alice@example.com")
            box = new_device(client, alice, "box-1")
            hook = client.post("/api/notifications/webhooks/", headers=alice.headers,
                               json={"url": receiver.url + "/ha"}).json()
            trigger = client.post("/api/device/trigger/", headers=alice.headers, json={"device_serial": "box-1"})
            body = capture_body("box-1", capture_id="box-1-m", trigger_type="manual",
                                trigger_id=trigger.json()["trigger_id"])
            assert client.post("/api/device/capture/", json=body, headers=box.headers).status_code == 200
            deadline = time.monotonic() + 20
            while not (fulfilled := [h for h in receiver.requests("/ha") if h.json()["event"] == "trigger_fulfilled"]):
                assert time.monotonic() < deadline, [h.json()["event"] for h in receiver.requests("/ha")]
                time.sleep(0.05)
            hit = fulfilled[0]
            assert verify(hook["secret"], hit.headers["x-mailcam-timestamp"], hit.body,
                          hit.headers["x-mailcam-signature"], now=clock.now().timestamp())
            log = client.get("/api/notifications/", headers=alice.headers).json()["items"]
            assert any(i["kind"] == "trigger_fulfilled" and i["channel"] == "webhook" for i in log)
    finally:
        ctx.engine.dispose()
