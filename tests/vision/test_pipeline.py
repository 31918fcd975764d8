"""The analysis queue: cache, unchanged scenes, budget, leases and restarts, several workers."""

from __future__ import annotations

import io
import sqlite3
import threading

import pytest
from PIL import Image
from sqlalchemy import select

from cloud.jobs import JobState
from cloud.models import AIBudgetNotice, Analysis
from cloud.vision.worker import VisionWorker, claim_next, process_pending
from mailcam import scenes
from tests.vision.fake_openai import EMPTY, GOOD, Reply


def _reencode(jpeg: bytes, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_exact_duplicate_reuses_the_cached_analysis_without_a_call(openai_env, fake_openai):
    env = openai_env()
    image = scenes.render("letters", 1)
    first = env.capture(image)
    env.run()
    second = env.capture(image)
    env.run()
    assert len(fake_openai.requests) == 1
    result = env.analysis(second)
    assert result["source"] == "cache" and result["mail_detected"] == env.analysis(first)["mail_detected"]
    kinds = [(op.kind, op.prompt_tokens, op.cost_usd) for op in env.operations()]
    assert kinds[1] == ("cache", 0, 0.0)


def test_unchanged_scene_reuses_the_previous_result_without_a_call(openai_env, fake_openai):
    env = openai_env()
    image = scenes.render("package", 2)
    env.capture(image)
    env.run()
    again = env.capture(_reencode(image, 70))  # same scene, different bytes
    env.run()
    assert len(fake_openai.requests) == 1
    result = env.analysis(again)
    assert result["source"] == "unchanged" and result["package_present"] is True
    assert [op.kind for op in env.operations()] == ["call", "unchanged"]
    first_event, second_event = [e for e in env.sink.events if e.kind == "analysis_completed"]
    assert first_event.data["previous_mail_detected"] is None
    assert second_event.data["previous_mail_detected"] is True and second_event.data["source"] == "unchanged"


def test_a_changed_scene_is_sent_again(openai_env, fake_openai):
    env = openai_env()
    env.capture(scenes.render("empty", 3))
    fake_openai.push(Reply.json(EMPTY))
    env.run()
    changed = env.capture(scenes.render("package", 3))
    env.run()
    assert len(fake_openai.requests) == 2
    assert env.analysis(changed)["source"] == "model"


def test_unchanged_detection_can_be_switched_off(openai_env, fake_openai):
    env = openai_env(unchanged_phash_distance=-1, dedupe_exact=False)
    image = scenes.render("letters", 4)
    env.capture(image)
    env.capture(image)
    env.run()
    assert len(fake_openai.requests) == 2


def test_over_budget_the_offline_provider_answers_and_the_owner_is_told_once(openai_env, fake_openai):
    env = openai_env(monthly_budget_usd=0.0008)  # one call costs ~0.0011 USD at gpt-4o prices
    env.capture(scenes.render("letters", 5))
    env.run()
    assert env.sink.kinds().count("ai_budget_reached") == 1
    second = env.capture(scenes.render("package", 6))
    third = env.capture(scenes.render("empty", 7))
    env.run()
    assert len(fake_openai.requests) == 1
    result = env.analysis(second)
    # offline on an uncalibrated box: no verdict, no made-up "mail"
    assert result["source"] == "budget" and result["provider"] == "offline" and result["mail_detected"] is None
    assert env.analysis(third)["source"] == "budget"
    assert env.sink.kinds().count("ai_budget_reached") == 1
    with env.ctx.sessions() as session:
        assert len(session.scalars(select(AIBudgetNotice)).all()) == 1
    usage = env.api.get("/api/usage", headers=env.owner.headers).json()
    (device,) = usage["devices"]
    assert device["model_calls"] == 1 and device["budget_skips"] == 2 and device["budget_reached"] is True
    assert device["offline_analyses"] == 2


def test_restarting_the_worker_mid_queue_loses_no_job(make_env, clock):
    env = make_env(lease_timeout_s=60)
    calibration = env.capture(scenes.render("empty", 9))
    env.run()
    env.calibrate(calibration)
    ids = [env.capture(scenes.render(kind, 10 + i)) for i, kind in enumerate(["empty", "letters", "package"])]
    # A worker claims a job and dies before finishing it.
    assert claim_next(env.ctx, "doomed-worker") is not None
    assert env.analysis(ids[0])["status"] == "running"
    # A new worker process starts: the queued jobs run; the dead worker's job waits for its lease.
    assert env.run() == 2
    assert env.analysis(ids[0])["status"] == "running"
    clock.advance(61)
    assert env.run() == 1
    assert [env.analysis(i)["status"] for i in ids] == ["done", "done", "done"]
    assert [env.analysis(i)["mail_detected"] for i in ids] == [False, True, True]
    jobs = env.jobs()
    assert jobs[1].attempts == 2 and all(j.status == JobState.DONE for j in jobs)  # jobs[0]: the calibration photo


def test_a_late_result_from_a_worker_that_lost_its_lease_is_discarded(make_env, clock):
    from cloud.vision.pipeline import VisionPipeline, run_job

    env = make_env(lease_timeout_s=60)
    capture_id = env.capture(scenes.render("letters", 20))
    job_id = claim_next(env.ctx, "slow-worker")
    clock.advance(61)
    assert claim_next(env.ctx, "fresh-worker") == job_id  # lease reclaimed
    assert run_job(VisionPipeline(env.ctx), job_id, "slow-worker") == "lost"
    assert run_job(VisionPipeline(env.ctx), job_id, "fresh-worker") == "done"
    assert env.analysis(capture_id)["status"] == "done"
    assert env.sink.kinds().count("analysis_completed") == 1


def test_several_workers_share_the_queue_without_double_work(make_env):
    env = make_env()
    ids = [env.capture(scenes.render(scenes.KINDS[i % 4], 30 + i)) for i in range(12)]
    counts: list[int] = []

    def worker() -> None:
        counts.append(process_pending(env.ctx))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 12
    assert all(env.analysis(i)["status"] == "done" for i in ids)
    assert env.sink.kinds().count("analysis_completed") == 12
    assert all(job.attempts == 1 for job in env.jobs())


def test_offline_default_judges_against_the_reference_it_was_given(make_env):
    env = make_env()
    assert env.ctx.settings.vision.provider == "offline"
    empty = env.capture(scenes.render("empty", 40))
    env.run()
    assert env.analysis(empty)["mail_detected"] is None  # uncalibrated: no verdict, no guess
    env.calibrate(empty)
    letters = env.capture(scenes.render("letters", 41))
    env.run()
    result = env.analysis(letters)
    assert result["mail_detected"] is True and result["confidence"] > 0.9 and result["provider"] == "offline"
    (usage,) = env.api.get("/api/usage", headers=env.owner.headers).json()["devices"]
    assert usage["offline_analyses"] == 2 and usage["cost_usd"] == 0 and usage["model_calls"] == 0


def test_bad_photos_ask_for_a_retake_instead_of_guessing(make_env):
    env = make_env()
    dark = env.capture(scenes.render("dark", 50))
    blurry = env.capture(scenes.render("blurry", 51))
    env.run()
    assert env.analysis(dark)["image_quality"] == "too_dark"
    assert env.analysis(dark)["mail_detected"] is None  # a black frame is no evidence of an empty box
    assert env.analysis(blurry)["image_quality"] == "blurry"


def test_a_missing_image_file_fails_the_analysis_visibly(make_env):
    env = make_env()
    capture_id = env.capture(scenes.render("letters", 60))
    with env.ctx.sessions() as session:
        analysis = session.scalar(select(Analysis))
        sha = analysis.capture.image_sha256
    env.ctx.images.delete(sha)
    env.run()
    result = env.analysis(capture_id)
    assert result["status"] == "failed" and result["mail_detected"] is None and "missing" in result["error"]
    assert env.sink.kinds().count("analysis_failed") == 1


def test_background_worker_service_drains_the_queue(openai_env, fake_openai):
    env = openai_env(worker_poll_interval_s=0.02)
    capture_id = env.capture(scenes.render("letters", 70))
    fake_openai.default = Reply.json(GOOD)
    worker = VisionWorker(env.ctx)
    worker.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while env.analysis(capture_id)["status"] != "done":
            assert time.monotonic() < deadline, "worker did not analyse the capture"
            time.sleep(0.02)
    finally:
        worker.stop()
    assert env.analysis(capture_id)["provider"] == "openai"


def test_a_capture_deleted_during_the_model_call_leaves_the_call_in_the_log(openai_env, fake_openai):
    env = openai_env(openai_timeout_s=5)
    fake_openai.default = Reply.json(GOOD, delay_s=0.5)
    capture_id = env.capture(scenes.render("letters", 80))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (env.run(), done.set()))
    thread.start()
    import time

    deadline = time.monotonic() + 10
    while not fake_openai.requests:  # the call is in flight
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert env.api.delete(f"/api/captures/{capture_id}", headers=env.owner.headers).status_code == 204
    thread.join(timeout=20)
    assert done.is_set()
    (op,) = env.operations()
    assert op.kind == "call" and op.capture_pk is None and op.cost_usd > 0
    assert env.jobs() == []


def test_a_worker_with_nothing_to_do_does_not_wait_for_a_writer(make_env):
    """Every new job wakes every vision worker and one takes it: the others (and the winner, looking once
    more) found nothing inside a write transaction, queueing behind SQLite's writers to do so."""
    env = make_env()
    if env.ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    env.capture(scenes.render("empty", 4))
    assert env.run() == 1
    other = sqlite3.connect(env.ctx.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (a second replica, the CLI) writing
    looked: list[int | None] = []
    try:
        worker = threading.Thread(target=lambda: looked.append(claim_next(env.ctx, "idle-worker")))
        worker.start()
        worker.join(timeout=10)
        assert looked == [None], "the empty queue was looked at behind the write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
        worker.join()
