"""One analysis job, start to end: cheap answers first, then the model, then the fallback.

    load (short read)  →  read image, pHash         (no transaction open from here ...)
    same SHA-256 analysed before?      → reuse, source "cache", 0 tokens
    pHash close to the previous one?   → reuse, source "unchanged", 0 tokens
    over this month's budget?          → offline answers, source "budget"
    primary provider (tenacity retries on transient errors) → fallback provider
                                      (... to here: never hold a transaction over a model call)
    finish (one transaction, guarded by the job lease): analysis, AI operation log, a learned
    reference, the mailbox's delivery state (delivery.py), budget notice, events.

The offline judgement against the box's empty references is made for every frame (it is cheap):
it is the answer with the offline provider, the pre-filter before a paid call, the reference shown
to the model, and the pixel evidence of "more mail" for the delivery state.

A job whose attempt failed transiently is requeued with backoff until ``max_attempts``; then,
like a permanent failure, it ends ``failed`` with the error recorded and ANALYSIS_FAILED emitted.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, bindparam, func, insert, literal, select, union_all, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from cloud import events
from cloud.context import AppContext
from cloud.db import read_only_transaction, redoable_transaction
from cloud.events import DomainEvent
from cloud.jobs import JobState, JobTable
from cloud.models import (
    AIBudgetNotice,
    AIOperation,
    Analysis,
    AnalysisJob,
    AnalysisStatus,
    Capture,
    Device,
    MailboxState,
)
from cloud.vision import delivery, references
from cloud.vision.base import (
    AnalyseRequest,
    Answer,
    CallRecord,
    ImageQuality,
    InvalidAnswer,
    ProviderError,
    TransientProviderError,
    VisionProvider,
    VisionResult,
)
from cloud.vision.blas import single_threaded_blas
from cloud.vision.change import Picture, dilated, objects_mask, picture, picture_and_hash
from cloud.vision.config import VisionSettings
from cloud.vision.frames import Frames, references_for
from cloud.vision.offline import Judgement, OfflineProvider
from cloud.vision.openai_provider import OpenAIProvider
from cloud.vision.prep import BadImage, phash_distance

log = logging.getLogger("mailcam.vision")
JOBS = JobTable(AnalysisJob)  # the analysis queue (cloud.jobs); claimed in cloud.vision.worker

RESULT_FIELDS = (
    "mail_detected", "confidence", "description", "items", "categories", "package_present",
    "package_damage", "package_damage_confidence", "image_quality",
)


def month_of(when: datetime) -> str:
    return when.strftime("%Y-%m")


class VisionPipeline:
    """What every step of one app context's analyses shares: the vision settings and the providers,
    built once (the OpenAI client is reused across jobs). Kept as ``ctx.vision``; not to be
    confused with ``ctx.engine``, the database engine."""

    def __init__(
        self, ctx: AppContext, *, sleep: Callable[[float], object] | None = None, frames: Frames | None = None
    ) -> None:
        single_threaded_blas()
        self.ctx = ctx
        self.settings: VisionSettings = ctx.settings.vision
        # shared by the process's workers (cloud.vision.worker)
        self.frames = frames or Frames(references=references_for(self.settings.decoded_references_mb))
        self.offline = OfflineProvider(self.settings)
        self._openai: OpenAIProvider | None = None
        self._lock = threading.Lock()
        self.sleep = sleep or threading.Event().wait

    def provider(self, name: str) -> VisionProvider:
        if name == "offline":
            return self.offline
        if name == "openai":
            with self._lock:
                if self._openai is None:
                    self._openai = OpenAIProvider(self.settings)
            return self._openai
        raise ValueError(f"unknown vision provider {name!r}")

    def analyse_with_retries(self, provider: VisionProvider, request: AnalyseRequest) -> Answer:
        """One provider, retried (tenacity, capped randomised backoff, Retry-After honoured) on transient errors."""
        s = self.settings
        calls: list[CallRecord] = []

        def attempt() -> Answer:
            try:
                answer = provider.analyse(request)
            except ProviderError as exc:
                calls.extend(exc.calls)
                raise
            calls.extend(answer.calls)
            answer.calls = calls
            return answer

        def wait(state: RetryCallState) -> float:
            ceiling = min(s.retry_wait_max_s, s.retry_wait_initial_s * 2 ** (state.attempt_number - 1))
            delay = random.uniform(ceiling / 2, ceiling)
            error = state.outcome.exception() if state.outcome else None
            asked = getattr(error, "retry_after", None)
            return min(s.retry_wait_max_s, max(delay, asked or 0.0))

        retrying = Retrying(
            stop=stop_after_attempt(s.retry_attempts),
            wait=wait,
            retry=retry_if_exception_type(TransientProviderError),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except ProviderError as exc:
            exc.calls = calls
            raise


@dataclass
class Plan:
    """What the read phase found, as plain values (no session is open after it)."""

    job_id: int
    kind: str
    options: dict
    attempts: int
    capture_pk: int
    capture_id: str
    image_sha256: str
    device_id: int
    device_serial: str
    user_id: int | None
    month: str
    over_budget: str | None  # why no paid call is allowed this month (device or owner budget), or None
    analysis_status: AnalysisStatus
    taken_at: datetime
    wake_reason: str | None = None
    references: list[references.Reference] = field(default_factory=list)
    mailbox_state: str | None = None  # empty | mail (None: no state yet)
    calibration_requested: bool = False
    previous_image_sha256: str | None = None  # the latest earlier good photo, for "what is new"
    duplicate: dict | None = None
    # The device's previous analysed capture, and its latest one with a usable photo.
    previous: list[dict] = field(default_factory=list)


@dataclass
class Outcome:
    result: VisionResult | None = None
    provider: str | None = None
    model: str | None = None
    source: str | None = None
    phash: str | None = None
    error: str | None = None
    transient: bool = False
    note: str | None = None  # e.g. "openai failed; offline answered"
    operations: list[AIOperation] = field(default_factory=list)
    evidence: delivery.Evidence | None = None
    learn_image: bytes | None = None  # keep this frame as a learned empty reference
    budget_reached: bool = False

    @property
    def spent_money(self) -> bool:
        """A paid model call was made for this job (the offline analyser costs nothing)."""
        return any(op.cost_usd for op in self.operations)


# --- read phase -------------------------------------------------------------------------------


def _result_of(analysis: Any) -> dict:
    """An analysis's result and where it came from (``analysis``: the entity, or a row of its columns)."""
    return {
        **{name: getattr(analysis, name) for name in RESULT_FIELDS},
        "provider": analysis.provider,
        "model": analysis.model,
        "phash": analysis.phash,
        "updated_at": analysis.updated_at,
    }


def spent_usd(session: Session, device_id: int, month: str) -> float:
    total = session.scalar(
        select(func.coalesce(func.sum(AIOperation.cost_usd), 0.0)).where(
            AIOperation.device_id == device_id, AIOperation.month == month
        )
    )
    return float(total or 0.0)


def user_spent_usd(session: Session, user_id: int, month: str) -> float:
    total = session.scalar(
        select(func.coalesce(func.sum(AIOperation.cost_usd), 0.0)).where(
            AIOperation.user_id == user_id, AIOperation.month == month
        )
    )
    return float(total or 0.0)


def budget_exhausted(
    session: Session, settings: VisionSettings, device_id: int, user_id: int | None, month: str
) -> str | None:
    """Why a paid call is refused this month (the device's or its owner's budget is used up), or None."""
    if spent_usd(session, device_id, month) >= settings.monthly_budget_usd:
        return f"this device's monthly AI budget ${settings.monthly_budget_usd:.2f} is used up"
    if user_id is not None and user_spent_usd(session, user_id, month) >= settings.user_monthly_budget_usd:
        return f"the owner's monthly AI budget ${settings.user_monthly_budget_usd:.2f} is used up"
    return None


def _primary(settings: VisionSettings, options: dict | None) -> str:
    """The provider a job asks first: its own option (a re-analysis with another provider), or the setting."""
    return (options or {}).get("provider") or settings.provider


# _plan's reads, built once with bind parameters (every job runs them; building and keying the joined
# selects anew for each job cost more CPU than SQLite spent running them).
# The plan's reads: plain statements on the tables, for the columns the plan keeps. Loading the rows as
# entities (identity map, every column, the ORM's compile of each select) cost more than the reads.
_jobs, _captures, _devices, _analyses, _states = (
    model.__table__.c for model in (AnalysisJob, Capture, Device, Analysis, MailboxState)
)
_PLAN_ROWS = (  # the job, its capture, device and analysis, and the box's state: one joined read, not five
    select(_jobs.id.label("job_id"), _jobs.kind, _jobs.options, _jobs.attempts, _jobs.status.label("job_status"),
           _jobs.locked_by, _captures.id, _captures.capture_id, _captures.image_sha256, _captures.taken_at,
           _captures.wake_reason, _devices.id.label("device_id"), _devices.serial, _devices.owner_id,
           _analyses.status.label("analysis_status"), _states.state.label("mailbox_state"),
           _states.calibration_requested_at)
    .select_from(AnalysisJob.__table__)
    .join(Capture.__table__, _captures.id == _jobs.capture_pk)  # a job cascades with its capture
    .join(Device.__table__, _devices.id == _captures.device_id)
    .outerjoin(Analysis.__table__, _analyses.capture_pk == _captures.id)
    .outerjoin(MailboxState.__table__, _states.device_id == _devices.id)
    .where(_jobs.id == bindparam("job"))
)
_OK = ImageQuality.OK.value
_RESULT_COLUMNS = [_analyses[name] for name in (*RESULT_FIELDS, "provider", "model", "phash", "updated_at", "id")]
_NEWEST_OK = (  # the latest earlier good photo (for "what is new"), with its analysis
    select(*_RESULT_COLUMNS)
    .select_from(Capture.__table__)
    .join(Analysis.__table__, _analyses.capture_pk == _captures.id)
    .where(_captures.device_id == bindparam("device"), _captures.id < bindparam("capture"),
           _analyses.status == AnalysisStatus.DONE, _analyses.image_quality == _OK)
    .order_by(_captures.id.desc())
    .limit(1)
)
_DONE = (  # the device's other finished analyses
    select(*_RESULT_COLUMNS)
    .join(Capture.__table__, _analyses.capture_pk == _captures.id)
    .where(_captures.device_id == bindparam("device"), _captures.id != bindparam("capture"),
           _analyses.status == AnalysisStatus.DONE)
)
_SAME_IMAGE = _DONE.where(_captures.image_sha256 == bindparam("image")).order_by(_captures.id.desc()).limit(1)
_EARLIER = (
    _DONE.where(_captures.id < bindparam("capture"), _analyses.phash.is_not(None))
    .order_by(_captures.id.desc()).limit(1)
)
_EARLIER_OK = _EARLIER.where(_analyses.image_quality == _OK)
def _earlier_reads(*reads: tuple[str, Any]) -> Any:
    """Several of the reads above as one statement, each row with its photo and tagged with its read's
    name (``which``): every job made them one by one, and each statement cost more CPU than SQLite
    spent running it."""
    tagged = [select(read.add_columns(_captures.image_sha256.label("image_sha256"),
                                      literal(name).label("which")).subquery()) for name, read in reads]
    return union_all(*tagged)


_EARLIER_READS = {  # by whether exact duplicates are looked for (VisionSettings.dedupe_exact)
    True: _earlier_reads(("newest_ok", _NEWEST_OK), ("same_image", _SAME_IMAGE), ("earlier", _EARLIER)),
    False: _earlier_reads(("newest_ok", _NEWEST_OK), ("earlier", _EARLIER)),
}


def _plan(session: Session, ctx: AppContext, row: Row, frames: Frames) -> Plan:
    """The job's plan from its ``_PLAN_ROWS`` row and the box's earlier analyses."""
    read = session.connection().execute
    month = month_of(ctx.clock.now())
    plan = Plan(
        job_id=row.job_id,
        kind=row.kind,
        options=dict(row.options or {}),
        attempts=row.attempts,
        capture_pk=row.id,
        capture_id=row.capture_id,
        image_sha256=row.image_sha256,
        device_id=row.device_id,
        device_serial=row.serial,
        user_id=row.owner_id,
        month=month,
        # Only a paid first analysis asks (decide); the offline analyser costs nothing, so no sums for it.
        over_budget=(
            budget_exhausted(session, ctx.settings.vision, row.device_id, row.owner_id, month)
            if row.kind == "initial" and _primary(ctx.settings.vision, row.options) != "offline" else None
        ),
        analysis_status=row.analysis_status or AnalysisStatus.QUEUED,
        taken_at=row.taken_at,
        wake_reason=row.wake_reason,
        references=references.load(session, row.device_id, frames),
        mailbox_state=row.mailbox_state,
        calibration_requested=row.calibration_requested_at is not None,
    )
    if row.kind != "initial":
        return plan
    of_this = {"device": row.device_id, "capture": row.id}
    dedupe = ctx.settings.vision.dedupe_exact
    found = {earlier.which: earlier for earlier in read(_EARLIER_READS[dedupe],
                                                        {**of_this, "image": row.image_sha256} if dedupe else of_this)}
    newest_ok = found.get("newest_ok")
    plan.previous_image_sha256 = newest_ok.image_sha256 if newest_ok else None
    same = found.get("same_image")
    plan.duplicate = _result_of(same) if same else None
    latest = found.get("earlier")
    # The latest good one among those: read only when the rows at hand do not say which it is.
    if latest is None or latest.image_quality == _OK:
        latest_ok = latest
    elif newest_ok is not None and newest_ok.phash is not None:
        latest_ok = newest_ok
    else:
        latest_ok = read(_EARLIER_OK, of_this).first()
    plan.previous = [_result_of(a) for a in (latest, latest_ok) if a is not None]
    if latest is not None and latest_ok is not None and latest.id == latest_ok.id:
        plan.previous = plan.previous[:1]
    return plan


# --- decide phase (no transaction open) --------------------------------------------------------


def _operation(plan: Plan, now: datetime, kind: str, **values: object) -> AIOperation:
    return AIOperation(
        created_at=now,
        month=plan.month,
        user_id=plan.user_id,
        device_id=plan.device_id,
        capture_pk=plan.capture_pk,
        job_id=plan.job_id,
        kind=kind,
        **values,
    )


def _call_operations(plan: Plan, now: datetime, calls: list[CallRecord]) -> list[AIOperation]:
    return [
        _operation(
            plan, now, "call", provider=c.provider, model=c.model, detail=c.detail,
            prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cost_usd=c.cost_usd,
            latency_ms=c.latency_ms, status=c.status, error=c.error,
        )
        for c in calls
    ]


def _reuse(plan: Plan, now: datetime, found: dict, source: str, phash: str) -> Outcome:
    result = VisionResult(**{name: found[name] for name in RESULT_FIELDS})
    op = _operation(plan, now, source, provider=found["provider"] or "unknown", model=found["model"], status="ok")
    return Outcome(
        result=result, provider=found["provider"], model=found["model"], source=source, phash=phash,
        operations=[op],
    )


def _judged_since_calibration(plan: Plan, earlier: dict) -> bool:
    """An earlier answer may be reused only if it was given against today's references: a calibration or
    an owner's "this is empty" made since changes the verdict (learned references refine, they don't)."""
    said = [ref.created_at for ref in plan.references if ref.source in references.PEOPLE]
    return not said or earlier["updated_at"] > max(said)


def decide(pipeline: VisionPipeline, plan: Plan, image: bytes) -> Outcome:
    s = pipeline.settings
    now = pipeline.ctx.clock.now()
    try:
        # The frame first: the hash is taken of it (one decode), and an unchanged photo's reused answer
        # then costs the frame's preparation, not the judgement.
        frame, phash = picture_and_hash(image, pipeline.ctx.decoded.take(plan.image_sha256))
    except InvalidAnswer as exc:
        return Outcome(error=str(exc), operations=[])
    if plan.kind == "initial":
        if plan.duplicate is not None and _judged_since_calibration(plan, plan.duplicate):
            return _with_evidence(_reuse(plan, now, plan.duplicate, "cache", phash), added_share=0.0,
                                  wake=plan.wake_reason)
        for prev in plan.previous:
            if (
                _judged_since_calibration(plan, prev)
                and s.unchanged_phash_distance >= 0
                and now - prev["updated_at"] <= timedelta(seconds=s.unchanged_max_age_s)
                and phash_distance(phash, prev["phash"]) <= s.unchanged_phash_distance
            ):
                return _with_evidence(_reuse(plan, now, prev, "unchanged", phash), added_share=0.0,
                                      wake=plan.wake_reason)
    # Not before: a reused answer needs no judgement (and the judgement is most of an analysis's CPU).
    try:
        judged = pipeline.offline.judge(frame, plan.references)
    except InvalidAnswer as exc:
        return Outcome(error=str(exc), operations=[])
    _keep_for_next(pipeline, plan, judged)

    primary = _primary(s, plan.options)
    if plan.kind == "initial" and primary != "offline":
        gated = _offline_prefilter(pipeline, plan, judged, now)
        if gated is not None:
            gated.phash = phash
            return _finish_evidence(pipeline, plan, gated, judged, image, now)
    request = AnalyseRequest(
        image=image,
        device_id=plan.device_id,
        model=plan.options.get("model"),
        detail=plan.options.get("detail"),
        # the model sees the reference that matched this frame best (or the nearest in light)
        references=[judged.reference] if judged.reference else plan.references[:1],
    )
    operations: list[AIOperation] = []
    source = "model"
    budget_reached = False
    if primary != "offline" and plan.kind == "initial" and plan.over_budget:
        operations.append(
            _operation(plan, now, "budget", provider=primary, model=plan.options.get("model") or s.openai_model,
                       status="skipped", error=plan.over_budget)
        )
        primary, source, budget_reached = "offline", "budget", True

    if primary == "offline":  # already judged above; the offline provider makes no call to retry
        outcome = Outcome(result=judged.result, provider=pipeline.offline.name, model=pipeline.offline.model,
                          operations=_call_operations(plan, now, [CallRecord(provider="offline",
                                                                             model=pipeline.offline.model)]))
    else:
        outcome = _run_providers(pipeline, plan, request, primary, now)
    outcome.operations[:0] = operations
    outcome.phash = phash
    if outcome.result is not None:
        outcome.source = source
    outcome.budget_reached = budget_reached
    return _finish_evidence(pipeline, plan, outcome, judged, image, now)


def _keep_for_next(pipeline: VisionPipeline, plan: Plan, judged: Judgement) -> None:
    """What the next photo's "more mail" check needs of this one (cloud.vision.frames): this frame's
    objects against its reference, and, when it may show mail, the frame itself."""
    if judged.change is None or judged.change.mask is None or judged.reference is None:
        return
    if judged.reference.key is not None:
        pipeline.frames.keep_mask(judged.reference.key, plan.image_sha256, judged.change.mask)
    if judged.result.mail_detected is not False:  # mail (or unsure): the box may be "mail" for the next photo
        pipeline.frames.keep_frame(plan.image_sha256, judged.frame)


def _with_evidence(outcome: Outcome, *, added_share: float, wake: str | None) -> Outcome:
    """A reused result is the same scene as before: nothing new arrived."""
    result = outcome.result
    assert result is not None
    outcome.evidence = delivery.Evidence(
        mail=result.mail_detected, confidence=result.confidence, quality=result.image_quality,
        categories=dict(result.categories or {}), package=bool(result.package_present), added_share=added_share,
        wake=wake,
    )
    return outcome


def _finish_evidence(pipeline: VisionPipeline, plan: Plan, outcome: Outcome, judged: Judgement, image: bytes,
                     now: datetime) -> Outcome:
    """Delivery evidence for the state machine, and whether this frame should refine the references."""
    result = outcome.result
    if result is None or plan.kind != "initial":
        return outcome
    added = _added_share(pipeline, plan, judged) if plan.mailbox_state == "mail" and result.mail_detected else None
    outcome.evidence = delivery.Evidence(
        mail=result.mail_detected, confidence=result.confidence, quality=result.image_quality,
        categories=dict(result.categories or {}), package=bool(result.package_present), added_share=added,
        wake=plan.wake_reason,
    )
    offline = judged.result
    learn = (
        judged.reference is not None
        and offline.mail_detected is False
        and result.mail_detected is False
        and offline.image_quality == ImageQuality.OK.value
        and offline.confidence >= pipeline.settings.offline_learn_min_confidence
        and references.worth_learning(plan.references, judged.frame, now)
    )
    outcome.learn_image = image if learn else None
    return outcome


def _added_share(pipeline: VisionPipeline, plan: Plan, judged: Judgement) -> float | None:
    """Objects in this frame that were not in the previous photo, where the box was empty before.

    Changed since the previous photo, an object now (against the empty reference), and outside
    what was already mail then: the same letters under other light or a shifted lid are not "more".

    The comparison with the previous photo comes last, and only if the objects outside what was mail
    then cover enough of the frame to be "more" after this wake (``delivery.more_min_share``): while
    the same mail sits in the box (every wake until it is collected) they are mostly none or specks, and
    that comparison cost as much as the analysis itself. Below that bar the answer is the bound.
    """
    if judged.change is None or judged.change.mask is None or judged.reference is None:
        return None
    if plan.previous_image_sha256 is None:
        return None
    reference = judged.reference
    previous: Picture | None = None
    before = pipeline.frames.mask(reference.key, plan.previous_image_sha256) if reference.key else None
    if before is None:  # not kept from the previous photo's own analysis
        previous = _previous_frame(pipeline, plan.previous_image_sha256)
        if previous is None:
            return None
        before = objects_mask(reference.picture, previous)
    outside = judged.change.mask & ~dilated(before, 3)
    # What is new since can only be part of ``outside``: below what "more" needs after this wake, the
    # comparison with the previous photo cannot change the transition.
    bound = float(outside.mean())
    if bound < delivery.more_min_share(plan.wake_reason):
        return bound
    previous = previous or _previous_frame(pipeline, plan.previous_image_sha256)
    if previous is None:
        return None
    since = objects_mask(previous, judged.frame)  # the mask alone: the objects' kinds are not needed here
    return float((since & outside).mean())


def _previous_frame(pipeline: VisionPipeline, image_sha256: str) -> Picture | None:
    """The previous photo's working frame: kept by its own analysis, or read back and decoded."""
    previous = pipeline.frames.frame(image_sha256)
    if previous is None:
        try:
            previous = picture(pipeline.ctx.images.read(image_sha256))
        except (FileNotFoundError, BadImage):
            return None
    return previous


def _offline_prefilter(pipeline: VisionPipeline, plan: Plan, judged: Judgement, now: datetime) -> Outcome | None:
    """Answer offline, without a paid call, when the model could add nothing: too dark, or surely empty.

    "Surely empty" needs a calibrated device: only a comparison with this box's own empty photo can
    say "unchanged from empty"; without one, every frame goes to the model.
    """
    s = pipeline.settings
    result = judged.result
    dark = s.skip_dark_frames and result.image_quality == ImageQuality.TOO_DARK.value
    empty = (
        judged.reference is not None
        and result.mail_detected is False
        and result.image_quality == ImageQuality.OK.value
        and result.confidence >= s.offline_gate_confidence
    )
    if not (dark or empty):
        return None
    op = _operation(plan, now, "prefilter", provider=pipeline.offline.name, model=pipeline.offline.model, status="ok",
                    error="too dark to send" if dark else None)
    return Outcome(
        result=result, provider=pipeline.offline.name, model=pipeline.offline.model, source="prefilter",
        operations=[op],
    )


def _run_providers(
    pipeline: VisionPipeline, plan: Plan, request: AnalyseRequest, primary: str, now: datetime
) -> Outcome:
    s = pipeline.settings
    operations: list[AIOperation] = []
    try:
        answer = pipeline.analyse_with_retries(pipeline.provider(primary), request)
    except ProviderError as exc:
        operations += _call_operations(plan, now, exc.calls)
        primary_error = f"{primary}: {exc}"
        transient = isinstance(exc, TransientProviderError)
    else:
        operations += _call_operations(plan, now, answer.calls)
        return Outcome(result=answer.result, provider=primary, model=answer.model, operations=operations)

    fallback = plan.options.get("fallback", s.fallback_provider)
    if fallback in (None, "none", primary):
        return Outcome(error=primary_error, transient=transient, operations=operations)
    try:
        answer = pipeline.analyse_with_retries(pipeline.provider(fallback), request)
    except ProviderError as exc:
        operations += _call_operations(plan, now, exc.calls)
        error = f"{primary_error}; fallback {fallback}: {exc}"
        return Outcome(error=error, transient=transient or isinstance(exc, TransientProviderError),
                       operations=operations)
    operations += _call_operations(plan, now, answer.calls)
    return Outcome(
        result=answer.result, provider=fallback, model=answer.model, operations=operations,
        note=f"{primary_error}; {fallback} answered instead",
    )


# --- finish phase (one short transaction) ------------------------------------------------------


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired): our result is not written."""


def finish(pipeline: VisionPipeline, plan: Plan, outcome: Outcome, worker_id: str) -> str:
    """Write the outcome; returns done | failed | retry | lost."""
    ctx, s = pipeline.ctx, pipeline.settings
    now = ctx.clock.now()
    if outcome.result is not None:
        status = "done"
    elif outcome.transient and plan.attempts < s.max_attempts:
        status = "retry"
    else:
        status = "failed"
    try:
        with ctx.sessions() as session, session.begin():
            if not outcome.spent_money:
                # Lost to a power cut, the job is run again from its claim (or its lease). Money spent on a
                # model call is not: its record waits for the disk (an alert about this result is sent only
                # after a later durable commit, the alert's claim, which makes this one durable too).
                redoable_transaction(session)
            _release_job(session, plan, outcome, status, worker_id, now, s)
            _insert_operations(session, outcome.operations)
            if status == "done":
                _write_result(session, ctx, plan, outcome, now)
            elif status == "failed":
                _write_failure(session, ctx, plan, outcome, now)
            elif plan.kind == "initial":  # waiting for its next attempt
                session.execute(
                    update(Analysis)
                    .where(Analysis.capture_pk == plan.capture_pk, Analysis.status == AnalysisStatus.RUNNING)
                    .values(status=AnalysisStatus.QUEUED, updated_at=now)
                )
            _budget_notice(session, ctx, plan, outcome, now)
    except LeaseLost:
        log.warning("vision job %s was taken over by another worker; its result is discarded", plan.job_id)
        _keep_operations(ctx, plan, outcome)
        return "lost"
    return status


def _release_job(
    session: Session, plan: Plan, outcome: Outcome, status: str, worker_id: str, now: datetime, s: VisionSettings
) -> None:
    values: dict[str, object] = {"updated_at": now}
    if status == "done":
        values.update(status=JobState.DONE, last_error=outcome.note)
    elif status == "failed":
        values.update(status=JobState.DEAD, last_error=outcome.error)
    else:
        values.update(JOBS.retry_values(plan.attempts, now, base_s=s.job_backoff_initial_s, cap_s=s.job_backoff_max_s),
                      last_error=outcome.error)
    if not JOBS.release(session, plan.job_id, worker_id, **values):
        raise LeaseLost(plan.job_id)


_OPERATIONS = AIOperation.__table__
_INSERT_OPERATIONS = insert(_OPERATIONS)


def _insert_operations(session: Session, operations: list[AIOperation]) -> None:
    """The job's AI operation log rows, as plain INSERTs: the ORM's unit of work for them cost more CPU
    than the rest of the finish. The values are the ones the rows were built with (unset columns get
    their defaults); the objects stay transient (``_keep_operations`` adds them after a lost lease)."""
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for op in operations:
        values = {c.key: getattr(op, c.key) for c in _OPERATIONS.columns if c.key in op.__dict__}
        shapes.setdefault(tuple(values), []).append(values)
    for rows in shapes.values():  # one statement per set of columns given (executemany needs the same keys)
        session.execute(_INSERT_OPERATIONS, rows)


def _keep_operations(ctx: AppContext, plan: Plan, outcome: Outcome) -> None:
    """The calls were made and paid for even if the result is discarded: the log keeps them."""
    if not outcome.operations:
        return
    with ctx.sessions() as session, session.begin():
        if session.get(Device, plan.device_id) is None:
            return  # the device is gone, and its log with it (ON DELETE CASCADE)
        if session.get(Capture, plan.capture_pk) is None:  # deleted while we worked on it
            for op in outcome.operations:
                op.capture_pk = None
        session.add_all(outcome.operations)


def event_data(plan: Plan, analysis: Analysis | dict[str, Any]) -> events.AnalysisDone:
    """The analysis event's payload, from the analysis row or the values just written to it."""
    values = analysis if isinstance(analysis, dict) else {name: getattr(analysis, name) for name in _EVENT_FIELDS}
    previous = plan.previous[0] if plan.previous else None
    return {
        "capture_id": plan.capture_id,
        "device_serial": plan.device_serial,
        "analysis_kind": plan.kind,
        "status": values["status"].value,
        **{name: values[name] for name in RESULT_FIELDS},
        "provider": values["provider"],
        "model": values["model"],
        "source": values["source"],
        "error": values["error"],
        # The device's previous result, so "mail arrived" can be told from "mail still there".
        "previous_mail_detected": previous["mail_detected"] if previous else None,
        "previous_package_present": previous["package_present"] if previous else None,
    }


_EVENT_FIELDS = ("status", *RESULT_FIELDS, "provider", "model", "source", "error")
_DONE_FIELDS = (*_EVENT_FIELDS, "phash", "updated_at")
_analyses = Analysis.__table__.c


def _analysis_done(fields: tuple[str, ...]) -> Update:
    """The finish's write to the analysis row: a plain statement on its table, built once with typed bind
    parameters (as the claim and the release). Through the ORM, loading the row, setting its attributes
    and flushing them cost more CPU than the rest of the finish's writes."""
    return (
        update(Analysis.__table__)
        .where(_analyses.capture_pk == bindparam("of_capture"))
        .values({name: bindparam(f"set_{name}", type_=_analyses[name].type) for name in fields})
    )


_ANALYSIS_DONE = _analysis_done(_DONE_FIELDS)
_ANALYSIS_DONE_DELIVERY = _analysis_done((*_DONE_FIELDS, "delivery"))  # a first analysis: what it did to the box


def _write_result(session: Session, ctx: AppContext, plan: Plan, outcome: Outcome, now: datetime) -> None:
    assert outcome.result is not None
    written: dict[str, Any] = {
        **outcome.result.as_dict(), "status": AnalysisStatus.DONE, "provider": outcome.provider,
        "model": outcome.model, "source": outcome.source, "phash": outcome.phash, "error": outcome.note,
        "updated_at": now,
    }
    # The box's state first, so the analysis row is written once, with the transition it made.
    applied = None
    fields, statement = _DONE_FIELDS, _ANALYSIS_DONE
    if outcome.evidence is not None and plan.kind == "initial":
        applied = delivery.apply(session, plan.device_id, plan.capture_pk, plan.taken_at, outcome.evidence, now)
        written["delivery"] = applied.transition if applied else None
        fields, statement = (*_DONE_FIELDS, "delivery"), _ANALYSIS_DONE_DELIVERY
    done = session.execute(statement, {"of_capture": plan.capture_pk,
                                       **{f"set_{name}": written[name] for name in fields}})
    if done.rowcount == 0:  # no analysis row (ingest makes one with the capture): as the ORM would, insert it
        session.add(Analysis(capture_pk=plan.capture_pk, created_at=now, **written))
        session.flush()
    if outcome.learn_image is not None:
        device = session.get(Device, plan.device_id)
        assert device is not None
        capture = session.get(Capture, plan.capture_pk)
        references.add(session, device, outcome.learn_image, "learned", now, capture=capture)
    if applied is not None and applied.transition is not None:
        _emit_delivery(session, ctx, plan, written, applied)
    if outcome.result.mail_detected is None and not plan.references and plan.kind == "initial":
        _ask_for_calibration(session, ctx, plan, now)
    _emit(session, ctx, plan, DomainEvent.ANALYSIS_COMPLETED, event_data(plan, written),
          key=f"analysis:{plan.capture_id}:{plan.job_id}")


def _write_failure(session: Session, ctx: AppContext, plan: Plan, outcome: Outcome, now: datetime) -> None:
    analysis = session.scalar(select(Analysis).where(Analysis.capture_pk == plan.capture_pk))
    if analysis is not None and analysis.status == AnalysisStatus.DONE:
        return  # a failed re-analysis leaves the earlier result standing (the job keeps the error)
    if analysis is None:
        analysis = Analysis(capture_pk=plan.capture_pk, created_at=now)
        session.add(analysis)
    analysis.status = AnalysisStatus.FAILED
    analysis.error = outcome.error
    analysis.phash = outcome.phash
    analysis.updated_at = now
    session.flush()
    _emit(session, ctx, plan, DomainEvent.ANALYSIS_FAILED, event_data(plan, analysis),
          key=f"analysis:{plan.capture_id}:{plan.job_id}")


def _emit(session: Session, ctx: AppContext, plan: Plan, kind: DomainEvent, data: object, *, key: str,
          about_capture: bool = True) -> None:
    """Raise an event about this job's device (and, unless told otherwise, its capture)."""
    events.emit(ctx.events, session, kind, data, user_id=plan.user_id, device_id=plan.device_id,
                capture_pk=plan.capture_pk if about_capture else None, key=key)


def _emit_delivery(session: Session, ctx: AppContext, plan: Plan, analysis: dict[str, Any],
                   applied: delivery.Applied) -> None:
    data: events.MailDelivery = {**event_data(plan, analysis), "transition": applied.transition,
                                 "since": applied.since.isoformat()}
    _emit(session, ctx, plan, DomainEvent.MAIL_DELIVERY, data, key=f"delivery:{plan.capture_id}:{applied.transition}")


def _ask_for_calibration(session: Session, ctx: AppContext, plan: Plan, now: datetime) -> None:
    """Tell the owner once that this mailbox needs a photo of it empty before it can alert."""
    if plan.calibration_requested:
        return
    state = delivery.ensure_state(session, plan.device_id, now)
    if state.calibration_requested_at is not None:
        return
    state.calibration_requested_at = now
    _emit(session, ctx, plan, DomainEvent.CALIBRATION_NEEDED,
          {"device_serial": plan.device_serial, "capture_id": plan.capture_id},
          key=f"calibration:{plan.device_serial}")


def _budget_notice(session: Session, ctx: AppContext, plan: Plan, outcome: Outcome, now: datetime) -> None:
    s = ctx.settings.vision
    if not outcome.budget_reached and not outcome.spent_money:
        return  # nothing spent by this job (the offline analyser costs nothing): the month's sum is unchanged
    spent = spent_usd(session, plan.device_id, plan.month)
    if not outcome.budget_reached and (spent < s.monthly_budget_usd or spent == 0):
        return
    try:
        with session.begin_nested():
            session.add(
                AIBudgetNotice(device_id=plan.device_id, month=plan.month, spent_usd=spent,
                               budget_usd=s.monthly_budget_usd, created_at=now)
            )
    except IntegrityError:
        return  # the owner was told already this month
    budget: events.AIBudgetReached = {"device_serial": plan.device_serial, "month": plan.month,
                                      "spent_usd": round(spent, 6), "budget_usd": s.monthly_budget_usd}
    _emit(session, ctx, plan, DomainEvent.AI_BUDGET_REACHED, budget,
          key=f"ai_budget:{plan.device_serial}:{plan.month}", about_capture=False)


# --- one job -----------------------------------------------------------------------------------


def run_job(pipeline: VisionPipeline, job_id: int, worker_id: str) -> str:
    """Run a claimed job to its end (or to its next retry); returns done | failed | retry | lost."""
    ctx, s = pipeline.ctx, pipeline.settings
    with ctx.sessions() as session:
        # Only reads: on SQLite it then waits for no writer and holds none up (ingest, other jobs' finish).
        read_only_transaction(session)
        # The job with its capture, device, analysis and box state, by one plain read (not the job's entity)
        row = session.connection().execute(_PLAN_ROWS, {"job": job_id}).first()
        if row is None or row.job_status != JobState.RUNNING or row.locked_by != worker_id:
            return "lost"
        plan = _plan(session, ctx, row, pipeline.frames)
    if plan.attempts > s.max_attempts:
        outcome = Outcome(error=f"gave up after {plan.attempts - 1} attempts")
        return finish(pipeline, plan, outcome, worker_id)
    try:
        image = ctx.images.read(plan.image_sha256)
    except FileNotFoundError:
        return finish(pipeline, plan, Outcome(error="the image file is missing"), worker_id)
    try:
        outcome = decide(pipeline, plan, image)
    except Exception as exc:  # a bug must not lose the job: record it and retry with backoff
        log.exception("vision job %s crashed", job_id)
        outcome = Outcome(error=f"internal error: {type(exc).__name__}: {exc}", transient=True)
    return finish(pipeline, plan, outcome, worker_id)
