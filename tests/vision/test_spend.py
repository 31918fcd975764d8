"""AI spend: only priced models are called, and budgets hold per device and per owner."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.vision.base import AnalyseRequest, ProviderError
from cloud.vision.config import VisionSettings
from cloud.vision.openai_provider import OpenAIProvider
from mailcam import scenes
from tests.cloudkit import capture_body, new_device


def test_reanalysis_with_a_model_that_has_no_price_is_refused(openai_env, fake_openai):
    """Expected: a 422 naming the allowed models, nothing queued or called.
    Happened: ``o1-pro`` was accepted, called, and its cost logged as $0.0."""
    env = openai_env()
    capture_id = env.capture(scenes.render("letters", 3))
    env.run()
    calls_before = len(fake_openai.requests)

    refused = env.api.post(f"/api/captures/{capture_id}/reanalyse", json={"model": "o1-pro"},
                           headers=env.owner.headers)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error"] == "invalid_request" and body["model"] == "o1-pro"
    assert "gpt-4o" in body["allowed_models"] and "o1-pro" not in body["allowed_models"]
    assert [job.kind for job in env.jobs()] == ["initial"]
    env.run()
    assert len(fake_openai.requests) == calls_before

    priced = env.api.post(f"/api/captures/{capture_id}/reanalyse", json={"model": "gpt-4o-mini"},
                          headers=env.owner.headers)
    assert priced.status_code == 202


def test_the_provider_refuses_to_call_a_model_without_a_price(fake_openai):
    """Expected: no request for an unpriced model, whoever asks. Happened: it was called and priced at $0."""
    settings = VisionSettings(provider="openai", openai_base_url=fake_openai.base_url, openai_api_key="k")
    provider = OpenAIProvider(settings)
    with pytest.raises(ProviderError, match="no price"):
        provider.analyse(AnalyseRequest(image=scenes.render("letters", 1), device_id=1, model="o1-pro"))
    assert fake_openai.requests == []


def test_an_unpriced_configured_model_is_refused_at_startup_unless_declared_local():
    with pytest.raises(ValidationError, match="no price"):
        VisionSettings(provider="openai", openai_model="o1-pro")
    local = VisionSettings(provider="openai", openai_model="llava:13b", local_models=["llava:13b"])
    assert local.openai_model == "llava:13b"


def test_the_owners_monthly_cap_holds_across_devices(openai_env, fake_openai):
    """Expected: a per-owner monthly cap, so more devices do not mean more budget.
    Happened: budgets were per device only; a second device started a fresh budget."""
    # One call costs ~0.0011 USD at gpt-4o prices: the owner's cap is reached after one.
    env = openai_env(monthly_budget_usd=1.0, user_monthly_budget_usd=0.001)
    first = env.capture(scenes.render("letters", 5))
    env.run()
    assert env.analysis(first)["source"] == "model"

    box2 = new_device(env.api, env.owner, "box-2")
    body = capture_body("box-2", scenes.render("package", 6), capture_id="box-2-1",
                        timestamp=env.now().isoformat())
    assert env.api.post("/api/device/capture/", json=body, headers=box2.headers).status_code == 200
    env.run()
    assert len(fake_openai.requests) == 1
    second = env.analysis("box-2-1")
    assert second["source"] == "budget" and second["provider"] == "offline"

    refused = env.api.post("/api/captures/box-2-1/reanalyse", json={}, headers=env.owner.headers)
    assert refused.status_code == 429 and "owner" in refused.json()["detail"]
