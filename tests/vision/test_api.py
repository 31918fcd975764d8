"""The vision endpoints: usage, re-analysis, feedback and accuracy."""

from __future__ import annotations

from datetime import timedelta

from mailcam import scenes
from tests.cloudkit import new_account, new_device
from tests.vision.fake_openai import EMPTY, Reply


def test_usage_counts_calls_tokens_cost_and_skips_per_device_and_month(openai_env, fake_openai, clock):
    env = openai_env()
    image = scenes.render("letters", 1)
    env.capture(image)
    env.capture(image)  # exact duplicate
    env.run()
    month = env.now().strftime("%Y-%m")
    usage = env.api.get(f"/api/usage?month={month}", headers=env.owner.headers)
    assert usage.status_code == 200
    body = usage.json()
    (box,) = body["devices"]
    assert box["device_serial"] == "box-1" and box["month"] == month
    assert (box["model_calls"], box["cache_hits"], box["prompt_tokens"], box["completion_tokens"]) == (1, 1, 205, 60)
    assert box["cost_usd"] > 0 and body["total_cost_usd"] == box["cost_usd"] and body["total_model_calls"] == 1

    earlier = (env.now() - timedelta(days=40)).strftime("%Y-%m")
    (old,) = env.api.get(f"/api/usage?month={earlier}", headers=env.owner.headers).json()["devices"]
    assert old["model_calls"] == 0 and old["cost_usd"] == 0


def test_usage_is_only_the_callers(openai_env):
    env = openai_env()
    env.capture(scenes.render("letters", 2))
    env.run()
    bob = new_account(env.api, "bob@example.com")
    assert env.api.get("/api/usage", headers=bob.headers).json()["devices"] == []
    assert env.api.get("/api/usage").status_code == 401


def test_usage_rejects_a_bad_month(make_env):
    env = make_env()
    for bad in ("2026-13", "26-01", "2026-1", "now"):
        response = env.api.get(f"/api/usage?month={bad}", headers=env.owner.headers)
        assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_reanalyse_rules(openai_env, fake_openai):
    env = openai_env(max_reanalyses_per_capture=1)
    capture_id = env.capture(scenes.render("letters", 3))
    url = f"/api/captures/{capture_id}/reanalyse"
    busy = env.api.post(url, json={}, headers=env.owner.headers)
    assert busy.status_code == 409  # still queued
    env.run()

    bob = new_account(env.api, "bob@example.com")
    assert env.api.post(url, json={}, headers=bob.headers).status_code == 404
    assert env.api.post(url, json={"detail": "ultra"}, headers=env.owner.headers).status_code == 422
    assert env.api.post(url, json={"model": "x; rm -rf"}, headers=env.owner.headers).status_code == 422

    assert env.api.post(url, json={"detail": "high"}, headers=env.owner.headers).status_code == 202
    assert env.api.post(url, json={}, headers=env.owner.headers).status_code == 409  # one already queued
    env.run()
    again = env.api.post(url, json={}, headers=env.owner.headers)
    assert again.status_code == 429 and again.json()["error"] == "rate_limited"
    ops = env.operations()
    assert [op.detail for op in ops] == ["low", "high"]


def test_reanalyse_is_refused_past_the_budget(openai_env):
    env = openai_env(monthly_budget_usd=0.0001)
    capture_id = env.capture(scenes.render("package", 4))
    env.run()
    response = env.api.post(f"/api/captures/{capture_id}/reanalyse", json={}, headers=env.owner.headers)
    assert response.status_code == 429 and "budget" in response.json()["detail"]
    offline = env.api.post(f"/api/captures/{capture_id}/reanalyse", json={"provider": "offline"},
                           headers=env.owner.headers)
    assert offline.status_code == 202


def test_feedback_and_accuracy_per_provider(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.json(EMPTY))
    first = env.capture(scenes.render("letters", 5))  # the model wrongly says empty
    second = env.capture(scenes.render("package", 6))
    env.run()
    wrong = env.api.post(f"/api/captures/{first}/feedback", json={"correct": False}, headers=env.owner.headers)
    assert wrong.status_code == 200
    assert wrong.json()["true_mail_detected"] is True and wrong.json()["provider"] == "openai"
    right = env.api.post(f"/api/captures/{second}/feedback",
                         json={"correct": True, "categories": {"letter": 2, "package": 1}},
                         headers=env.owner.headers)
    assert right.status_code == 200
    # Feedback can be changed: the last word counts.
    env.api.post(f"/api/captures/{second}/feedback", json={"correct": True, "note": "spot on"},
                 headers=env.owner.headers)

    (openai_acc,) = env.api.get("/api/vision/accuracy", headers=env.owner.headers).json()["providers"]
    assert openai_acc == {
        "provider": "openai", "feedback": 2, "correct": 1, "accuracy": 0.5,
        "true_positive": 1, "false_positive": 0, "false_negative": 1, "true_negative": 0,
    }


def test_feedback_needs_a_finished_analysis_and_a_valid_body(make_env):
    env = make_env()
    capture_id = env.capture(scenes.render("letters", 7))
    url = f"/api/captures/{capture_id}/feedback"
    assert env.api.post(url, json={"correct": True}, headers=env.owner.headers).status_code == 409
    env.run()
    assert env.api.post(url, json={}, headers=env.owner.headers).status_code == 422
    assert env.api.post(url, json={"correct": True, "categories": {"letter": -1}},
                        headers=env.owner.headers).status_code == 422
    assert env.api.post(url, json={"correct": True, "surprise": 1}, headers=env.owner.headers).status_code == 422
    assert env.api.post("/api/captures/nope/feedback", json={"correct": True},
                        headers=env.owner.headers).status_code == 404


def test_offline_prefilter_spares_the_model_dark_and_surely_empty_frames(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.json(EMPTY))
    first = env.capture(scenes.render("empty", 8))  # uncalibrated: never pre-filtered as empty, the model is asked
    env.run()
    env.calibrate(first)
    dark = env.capture(scenes.render("dark", 8))
    empty_again = env.capture(scenes.render("empty", 9, light=0.9))
    env.run()
    assert len(fake_openai.requests) == 1
    assert env.analysis(dark)["source"] == "prefilter" and env.analysis(dark)["image_quality"] == "too_dark"
    assert env.analysis(empty_again)["source"] == "prefilter" and env.analysis(empty_again)["mail_detected"] is False
    mail = env.capture(scenes.render("letters", 10))
    env.run()
    assert len(fake_openai.requests) == 2 and env.analysis(mail)["source"] == "model"
    (box,) = env.api.get("/api/usage", headers=env.owner.headers).json()["devices"]
    assert box["prefilter_skips"] == 2 and box["model_calls"] == 2


def test_other_devices_of_other_owners_are_not_mixed_up(openai_env, fake_openai):
    env = openai_env()
    bob = new_account(env.api, "bob@example.com")
    bobs_box = new_device(env.api, bob, "box-2")
    image = scenes.render("package", 11)
    env.capture(image)
    env.run()
    env.device, env.owner = bobs_box, bob
    theirs = env.capture(image, serial="box-2")
    env.run()
    assert env.analysis(theirs)["source"] == "model"  # no cache across devices
    assert len(fake_openai.requests) == 2
