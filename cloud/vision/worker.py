"""The analysis queue: claim jobs (``cloud.jobs``), drain it, and the background worker.

A job left ``running`` by a process that died is claimed again once its lease
(``lease_timeout_s``) is stale: that is how a restart loses no job. A new job wakes one worker
at once (``cloud.wakeups.VISION``, marked where jobs are queued; ``cloud.worker.Crew``), which
claims it without looking first; ``worker_poll_interval_s`` is only the safety net.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import bindparam, or_, update

from cloud import wakeups
from cloud.context import AppContext
from cloud.db import read_only_transaction, redoable_transaction
from cloud.jobs import new_worker_id
from cloud.models import Analysis, AnalysisStatus
from cloud.vision.pipeline import JOBS, VisionPipeline, run_job
from cloud.worker import Crew, Worker

log = logging.getLogger("mailcam.vision.worker")


# claim_next's statements, built once: it runs several times per job (every new job wakes every
# worker), and building and keying these clauses anew each time cost more than running them.
_CLAIMABLE = or_(JOBS.due(bindparam("now")), JOBS.leased_before(bindparam("stale_before")))
_CLAIMABLE_PROBE = JOBS.claimable_probe(_CLAIMABLE)
# Two rows: the first to claim, the second only to tell whether another job is due (``more_due``).
_NEXT_DUE = JOBS.next_due(_CLAIMABLE, JOBS.c.id, JOBS.c.capture_pk, JOBS.c.kind, limit=2)
_CLAIM = JOBS.claim_statement(_CLAIMABLE, updated_at=bindparam("now"))
_analyses = Analysis.__table__.c
_ANALYSIS_RUNNING = (
    update(Analysis.__table__)
    .where(_analyses.capture_pk == bindparam("of_capture"), _analyses.status == AnalysisStatus.QUEUED)
    .values(status=AnalysisStatus.RUNNING, updated_at=bindparam("now", type_=_analyses.updated_at.type))
)


def claim_next(
    ctx: AppContext, worker_id: str, *, look_first: bool = True, more_due: Callable[[], None] | None = None
) -> int | None:
    """Take the next due job (or one whose lease is stale); None when there is nothing to do.

    ``look_first``: look in a read before claiming in a write transaction (False right after a
    wakeup, when a job was just announced). ``more_due`` is called when another job is due too."""
    now = ctx.clock.now()
    params = {"now": now, "stale_before": now - timedelta(seconds=ctx.settings.vision.lease_timeout_s)}
    if look_first:
        with ctx.sessions() as session:
            # A worker looking again after its job usually finds nothing: in a read, with no write
            # transaction and no queueing for SQLite's writer.
            read_only_transaction(session)
            if session.execute(_CLAIMABLE_PROBE, params).first() is None:
                return None
    with ctx.sessions() as session, session.begin():
        redoable_transaction(session)  # a claim lost to a power cut leaves the job due: it is claimed again
        rows = session.execute(_NEXT_DUE, params).all()
        if not rows:
            return None
        job_id, capture_pk, kind = rows[0]
        if session.execute(_CLAIM, {**params, "row_id": job_id, "worker_id": worker_id}).rowcount != 1:
            return None
        if kind == "initial":
            session.execute(_ANALYSIS_RUNNING, {"of_capture": capture_pk, "now": now})
    if len(rows) > 1 and more_due is not None:
        more_due()
    return job_id


_pipeline_lock = threading.Lock()


def pipeline_for(ctx: AppContext) -> VisionPipeline:
    """One pipeline (so one OpenAI client and connection pool) per app context, kept on the context."""
    with _pipeline_lock:
        if ctx.vision is None:
            ctx.vision = VisionPipeline(ctx)
        return ctx.vision


def process_pending(
    ctx: AppContext, limit: int | None = None, *, pipeline: VisionPipeline | None = None, worker_id: str | None = None
) -> int:
    """Run due jobs until the queue is empty (or ``limit`` jobs ran); returns how many ran."""
    pipeline = pipeline or pipeline_for(ctx)
    worker_id = worker_id or new_worker_id()
    done = 0
    while limit is None or done < limit:
        job_id = claim_next(ctx, worker_id)
        if job_id is None:
            break
        run_job(pipeline, job_id, worker_id)
        done += 1
    return done


class VisionWorker(Worker):
    """A background thread running one job per step; the process's vision workers form one ``Crew``."""

    def __init__(self, ctx: AppContext, *, name: str = "vision-worker", crew: Crew | None = None) -> None:
        super().__init__(ctx, name=name, topic=wakeups.VISION, poll_s=ctx.settings.vision.worker_poll_interval_s,
                         crew=crew)
        self.worker_id = new_worker_id()
        # Retry waits sleep on the stop event, so stop() never waits out a backoff. The kept frames are
        # the process's (the next photo of a box may go to another worker).
        self.pipeline = VisionPipeline(ctx, sleep=self._stop.wait, frames=pipeline_for(ctx).frames)

    def step(self) -> bool:
        """Claim and run one job; True (look again at once) only if another was due when it was claimed.

        A job queued while this one ran woke a waiting worker of the crew, or, with none waiting, this
        one too (its wake flag): looking again after every job found nothing nearly every time."""
        more = False

        def more_due() -> None:
            nonlocal more
            more = True
            self.crew.wake()

        job_id = claim_next(self.ctx, self.worker_id, look_first=not self.announced, more_due=more_due)
        if job_id is not None:
            run_job(self.pipeline, job_id, self.worker_id)
        return more

    def stop(self, timeout_s: float | None = None) -> None:
        super().stop(self.ctx.settings.vision.openai_timeout_s + 5 if timeout_s is None else timeout_s)
