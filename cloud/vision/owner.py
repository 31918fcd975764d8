"""Owner-facing vision actions and reports: re-analysis, feedback, usage, accuracy."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from cloud import wakeups
from cloud.context import AppContext
from cloud.errors import Conflict, NotFound, RateLimited, ValidationFailed
from cloud.jobs import JobState
from cloud.models import (
    AIBudgetNotice,
    AIOperation,
    Analysis,
    AnalysisFeedback,
    AnalysisJob,
    AnalysisStatus,
    Capture,
    Device,
    User,
)
from cloud.vision import references, schemas
from cloud.vision.pipeline import budget_exhausted, month_of
from cloud.vision.pricing import UnpricedModel, allowed_models, price_for


def request_reanalysis(
    session: Session, ctx: AppContext, capture: Capture, device: Device, options: schemas.ReanalyseIn
) -> AnalysisJob:
    """Queue a re-analysis (409 while one is pending, 429 past the per-capture limit or the budget)."""
    s = ctx.settings.vision
    analysis = capture.analysis
    if analysis is None or analysis.status in (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING):
        raise Conflict("the capture is still being analysed", capture_id=capture.capture_id)
    jobs = list(session.scalars(select(AnalysisJob).where(AnalysisJob.capture_pk == capture.id,
                                                         AnalysisJob.kind == "reanalyse")))
    if any(job.status in (JobState.PENDING, JobState.RUNNING) for job in jobs):
        raise Conflict("a re-analysis is already queued", capture_id=capture.capture_id)
    if len(jobs) >= s.max_reanalyses_per_capture:
        raise RateLimited("re-analysis limit reached for this capture", capture_id=capture.capture_id,
                          limit=s.max_reanalyses_per_capture)
    now = ctx.clock.now()
    provider = options.provider or s.provider
    if provider != "offline":
        try:
            price_for(s, options.model or s.openai_model)
        except UnpricedModel as exc:
            raise ValidationFailed(str(exc), model=exc.model, allowed_models=allowed_models(s)) from exc
        reason = budget_exhausted(session, s, device.id, device.owner_id, month_of(now))
        if reason:
            raise RateLimited(reason, capture_id=capture.capture_id, budget_usd=s.monthly_budget_usd,
                              user_budget_usd=s.user_monthly_budget_usd)
    job = AnalysisJob(
        capture_pk=capture.id,
        status=JobState.PENDING,
        kind="reanalyse",
        options=options.model_dump(exclude_none=True),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    wakeups.mark(session, wakeups.VISION)
    return job


def record_feedback(
    session: Session, ctx: AppContext, user: User, capture: Capture, body: schemas.FeedbackIn
) -> schemas.FeedbackPublic:
    analysis: Analysis | None = capture.analysis
    if analysis is None or analysis.status != AnalysisStatus.DONE:
        raise Conflict("only a finished analysis can be judged", capture_id=capture.capture_id)
    now = ctx.clock.now()
    true_mail = body.mail_detected
    if true_mail is None and analysis.mail_detected is not None:
        true_mail = analysis.mail_detected if body.correct else not analysis.mail_detected
    row = session.scalar(select(AnalysisFeedback).where(AnalysisFeedback.capture_pk == capture.id))
    if row is None:
        row = AnalysisFeedback(capture_pk=capture.id, user_id=user.id, created_at=now)
        session.add(row)
    row.provider, row.model, row.source = analysis.provider, analysis.model, analysis.source
    row.predicted_mail = analysis.mail_detected
    row.correct = body.correct
    row.true_mail_detected = true_mail
    row.true_package_present = body.package_present
    row.true_categories = body.categories.model_dump() if body.categories else None
    row.note = body.note
    row.updated_at = now
    session.flush()
    if not body.correct and true_mail is False:  # "wrong — it was empty": the photo shows the box empty
        device = session.get(Device, capture.device_id)
        assert device is not None
        try:
            image = ctx.images.read(capture.image_sha256)
        except FileNotFoundError as exc:
            raise NotFound("the image file is gone", capture_id=capture.capture_id) from exc
        references.add(session, device, image, "feedback", now, capture=capture)
    elif true_mail is True:  # there was mail: never keep this frame as "empty"
        references.forget_capture(session, capture)
    return schemas.FeedbackPublic(
        capture_id=capture.capture_id, correct=row.correct, provider=row.provider, model=row.model,
        predicted_mail=row.predicted_mail, true_mail_detected=row.true_mail_detected,
        true_package_present=row.true_package_present, true_categories=row.true_categories, note=row.note,
        updated_at=row.updated_at,
    )


def usage(session: Session, ctx: AppContext, user: User, month: str) -> schemas.UsageOut:
    op = AIOperation
    is_call = op.kind == "call"
    remote = is_call & (op.provider != "offline")

    def count(condition) -> object:  # noqa: ANN001
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    rows = session.execute(
        select(
            op.device_id,
            count(remote),
            count(remote & (op.status != "ok")),
            count(is_call & (op.provider == "offline")),
            func.coalesce(func.sum(op.prompt_tokens), 0),
            func.coalesce(func.sum(op.completion_tokens), 0),
            func.coalesce(func.sum(op.cost_usd), 0.0),
            count(op.kind == "cache"),
            count(op.kind == "unchanged"),
            count(op.kind == "budget"),
            count(op.kind == "prefilter"),
        )
        .where(op.user_id == user.id, op.month == month)
        .group_by(op.device_id)
    ).all()
    by_device = {row[0]: row[1:] for row in rows}
    devices = list(session.scalars(select(Device).where(Device.owner_id == user.id).order_by(Device.serial)))
    extra_ids = [d for d in by_device if d not in {dev.id for dev in devices} and d is not None]
    devices += list(session.scalars(select(Device).where(Device.id.in_(extra_ids)))) if extra_ids else []
    notices = set(session.scalars(select(AIBudgetNotice.device_id).where(AIBudgetNotice.month == month)))
    budget = ctx.settings.vision.monthly_budget_usd
    out = []
    for device in devices:
        values = by_device.get(device.id, (0,) * 10)
        out.append(
            schemas.DeviceUsage(
                device_serial=device.serial, month=month,
                model_calls=int(values[0]), failed_calls=int(values[1]), offline_analyses=int(values[2]),
                prompt_tokens=int(values[3]), completion_tokens=int(values[4]), cost_usd=round(float(values[5]), 6),
                cache_hits=int(values[6]), unchanged_skips=int(values[7]), budget_skips=int(values[8]),
                prefilter_skips=int(values[9]),
                budget_usd=budget, budget_reached=device.id in notices,
            )
        )
    return schemas.UsageOut(
        month=month,
        devices=out,
        total_cost_usd=round(sum(d.cost_usd for d in out), 6),
        total_model_calls=sum(d.model_calls for d in out),
    )


def accuracy(session: Session, user: User) -> schemas.AccuracyOut:
    tallies: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in session.scalars(select(AnalysisFeedback).where(AnalysisFeedback.user_id == user.id)):
        t = tallies[row.provider or "unknown"]
        t["feedback"] += 1
        t["correct"] += int(row.correct)
        if row.predicted_mail is not None and row.true_mail_detected is not None:
            key = {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}
            t[key[(row.predicted_mail, row.true_mail_detected)]] += 1
    return schemas.AccuracyOut(
        providers=[
            schemas.ProviderAccuracy(
                provider=name, feedback=t["feedback"], correct=t["correct"],
                accuracy=round(t["correct"] / t["feedback"], 4) if t["feedback"] else None,
                true_positive=t["tp"], false_positive=t["fp"], false_negative=t["fn"], true_negative=t["tn"],
            )
            for name, t in sorted(tallies.items())
        ]
    )
