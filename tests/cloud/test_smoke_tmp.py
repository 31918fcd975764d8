from tests.cloudkit import capture_body, new_account, new_device


def test_smoke(api):
    alice = new_account(api, "alice@example.com")
    dev = new_device(api, alice, "box-1")
    r = api.post("/api/device/capture/", json=capture_body("box-1", capture_id="box-1-aaa"), headers=dev.headers)
    assert r.status_code == 200, r.text
    r2 = api.post("/api/device/trigger/", json={"device_serial": "box-1"}, headers=alice.headers)
    assert r2.status_code == 200, r2.text
    s = api.get("/api/device/status/", params={"device_serial": "box-1"}, headers=alice.headers)
    assert s.status_code == 200, s.text
    print(s.json())
