"""The openai provider through the real openai SDK against a local fake server."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from cloud.vision.openai_provider import RESPONSE_SCHEMA
from mailcam import scenes
from tests.vision.fake_openai import EMPTY, GOOD, Reply


def test_good_answer_is_stored_with_tokens_and_cost(openai_env, fake_openai):
    env = openai_env()
    capture_id = env.capture(scenes.render("package", 1))
    assert env.run() == 1

    result = env.analysis(capture_id)
    assert result["status"] == "done" and result["source"] == "model"
    assert result["mail_detected"] is True and result["confidence"] == 0.93
    assert result["categories"]["letter"] == 2 and result["package_present"] is True
    assert result["package_damage"] == "minor" and result["image_quality"] == "ok"
    assert result["provider"] == "openai" and result["model"] == "gpt-4o"

    (request,) = fake_openai.requests
    assert fake_openai.problems == []
    body = request["body"]
    assert body["model"] == "gpt-4o"
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert body["response_format"]["json_schema"]["schema"] == RESPONSE_SCHEMA
    assert body["response_format"]["json_schema"]["strict"] is True
    image_part = body["messages"][1]["content"][1]["image_url"]
    assert image_part["detail"] == "low"
    jpeg = base64.b64decode(image_part["url"].removeprefix("data:image/jpeg;base64,"))
    sent = Image.open(io.BytesIO(jpeg))
    assert max(sent.size) <= 512 and not sent.info.get("exif")

    (op,) = env.operations()
    assert (op.kind, op.provider, op.model, op.status) == ("call", "openai", "gpt-4o", "ok")
    assert (op.prompt_tokens, op.completion_tokens) == (205, 60)
    assert op.cost_usd == pytest.approx((205 * 2.5 + 60 * 10) / 1e6)
    assert env.sink.kinds().count("analysis_completed") == 1
    event = next(e for e in env.sink.events if e.kind == "analysis_completed")
    assert event.data["capture_id"] == capture_id and event.data["package_damage"] == "minor"
    assert event.data["device_serial"] == "box-1" and event.key.startswith(f"analysis:{capture_id}:")


def test_model_and_detail_and_base_url_are_settings(openai_env, fake_openai):
    env = openai_env(openai_model="llava:13b", local_models=["llava:13b"], openai_detail="high")
    capture_id = env.capture(scenes.render("letters", 2))
    env.run()
    assert fake_openai.requests[0]["body"]["model"] == "llava:13b"
    assert fake_openai.image_details() == ["high"]
    result = env.analysis(capture_id)
    assert result["model"] == "llava:13b"
    (op,) = env.operations()
    assert op.cost_usd == 0.0  # a model declared local is priced at 0


def test_markdown_wrapped_answer_is_accepted(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.text("Here you go:\n```json\n" + __import__("json").dumps(EMPTY) + "\n```"))
    capture_id = env.capture(scenes.render("empty", 3))
    env.run()
    result = env.analysis(capture_id)
    assert result["status"] == "done" and result["mail_detected"] is False
    assert len(fake_openai.requests) == 1


def test_missing_optional_fields_get_defaults(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.json({"mail_detected": True, "confidence": 0.8, "counts": {"package": 1}}))
    capture_id = env.capture(scenes.render("package", 4))
    env.run()
    result = env.analysis(capture_id)
    assert result["status"] == "done" and result["package_present"] is True
    assert result["image_quality"] == "ok" and result["package_damage"] == "none"


def test_broken_json_gets_one_repair_turn(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.text('{"mail_detected": true, "confidence": 0.9'), Reply.json(GOOD))
    capture_id = env.capture(scenes.render("letters", 5))
    env.run()
    assert env.analysis(capture_id)["status"] == "done"
    assert len(fake_openai.requests) == 2
    repair = fake_openai.requests[1]["body"]["messages"]
    assert repair[-2]["role"] == "assistant" and "could not be used" in repair[-1]["content"]
    assert [op.status for op in env.operations()] == ["ok", "ok"]


def test_unusable_after_repair_fails_and_is_never_no_mail(openai_env, fake_openai):
    env = openai_env()
    fake_openai.push(Reply.text("I see a mailbox."), Reply.json({"confidence": 0.5}))
    capture_id = env.capture(scenes.render("letters", 6))
    env.run()
    result = env.analysis(capture_id)
    assert result["status"] == "failed" and result["mail_detected"] is None
    assert "mail_detected" in result["error"]
    assert env.sink.kinds().count("analysis_failed") == 1
    ops = env.operations()
    assert len(ops) == 2 and ops[-1].status == "error"


def test_rate_limit_and_server_errors_are_retried(openai_env, fake_openai):
    env = openai_env(retry_attempts=3)
    fake_openai.push(Reply.error(429, headers={"retry-after": "0"}), Reply.error(500))
    capture_id = env.capture(scenes.render("package", 7))
    env.run()
    assert env.analysis(capture_id)["status"] == "done"
    statuses = [(op.status, op.error) for op in env.operations()]
    assert statuses[0][0] == "error" and "429" in statuses[0][1]
    assert statuses[1][0] == "error" and "500" in statuses[1][1]
    assert statuses[2] == ("ok", None)


def test_timeout_is_retried_then_requeued_then_failed(openai_env, fake_openai, clock):
    env = openai_env(openai_timeout_s=0.2, retry_attempts=2, max_attempts=2, job_backoff_initial_s=30)
    fake_openai.default = Reply.json(GOOD, delay_s=1.0)
    capture_id = env.capture(scenes.render("letters", 8))
    env.run()
    (job,) = env.jobs()
    assert job.status == "pending" and job.attempts == 1 and "timed out" in job.last_error
    assert env.analysis(capture_id)["status"] == "queued"
    assert env.run() == 0  # not due yet

    clock.advance(60)
    env.run()
    (job,) = env.jobs()
    assert job.status == "dead" and job.attempts == 2
    result = env.analysis(capture_id)
    assert result["status"] == "failed" and "timed out" in result["error"]
    ops = env.operations()
    assert len(ops) == 4 and all(op.error == "timeout" for op in ops)


def test_fallback_answers_when_primary_fails(openai_env, fake_openai):
    env = openai_env(fallback_provider="offline", retry_attempts=2)
    fake_openai.default = Reply.error(503)
    capture_id = env.capture(scenes.render("package", 9))
    env.run()
    result = env.analysis(capture_id)
    assert result["status"] == "done" and result["provider"] == "offline"
    # The offline fallback on an uncalibrated box gives no verdict rather than a guess.
    assert result["mail_detected"] is None and "503" in result["error"]
    assert [op.provider for op in env.operations()] == ["openai", "openai", "offline"]


def test_reanalysis_with_stronger_model_is_logged(openai_env, fake_openai):
    env = openai_env()
    capture_id = env.capture(scenes.render("letters", 10))
    env.run()
    response = env.api.post(f"/api/captures/{capture_id}/reanalyse", json={"model": "gpt-4.1", "detail": "high"},
                            headers=env.owner.headers)
    assert response.status_code == 202, response.text
    fake_openai.push(Reply.json(EMPTY))
    env.run()
    assert fake_openai.requests[-1]["body"]["model"] == "gpt-4.1"
    assert fake_openai.image_details() == ["low", "high"]
    result = env.analysis(capture_id)
    assert result["model"] == "gpt-4.1" and result["mail_detected"] is False
    assert [op.model for op in env.operations()] == ["gpt-4o", "gpt-4.1"]
