"""The analysis queue: claim jobs safely, drain it, and a background worker service.

Claiming is one short transaction: on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` so several
worker processes never take the same job; on SQLite (``BEGIN IMMEDIATE``: one writer at a time)
a guarded UPDATE. A job left ``running`` by a process that died is claimed again once its lease
(``lease_timeout_s``) is stale: that is how a restart loses no job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from cloud.context import AppContext
from cloud.db import is_sqlite
from cloud.models import Analysis, AnalysisJob, JobStatus
from cloud.vision.pipeline import VisionPipeline, run_job

log = logging.getLogger("mailcam.vision.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_next(ctx: AppContext, worker_id: str) -> int | None:
    """Take the next due job (or one whose lease is stale); None when there is nothing to do."""
    now = ctx.clock.now()
    stale = now - timedelta(seconds=ctx.settings.vision.lease_timeout_s)
    claimable = or_(
        and_(AnalysisJob.status == JobStatus.QUEUED, AnalysisJob.next_attempt_at <= now),
        and_(AnalysisJob.status == JobStatus.RUNNING, AnalysisJob.locked_at < stale),
    )
    query = select(AnalysisJob.id, AnalysisJob.capture_pk, AnalysisJob.kind).where(claimable)
    query = query.order_by(AnalysisJob.next_attempt_at, AnalysisJob.id).limit(1)
    if not is_sqlite(ctx.engine):
        query = query.with_for_update(skip_locked=True)
    with ctx.sessions() as session, session.begin():
        row = session.execute(query).first()
        if row is None:
            return None
        job_id, capture_pk, kind = row
        claimed = session.execute(
            update(AnalysisJob)
            .where(AnalysisJob.id == job_id, claimable)
            .values(status=JobStatus.RUNNING, locked_by=worker_id, locked_at=now,
                    attempts=AnalysisJob.attempts + 1, updated_at=now)
        )
        if claimed.rowcount != 1:
            return None
        if kind == "initial":
            session.execute(
                update(Analysis)
                .where(Analysis.capture_pk == capture_pk, Analysis.status == JobStatus.QUEUED)
                .values(status=JobStatus.RUNNING, updated_at=now)
            )
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


class VisionWorker:
    """A background thread draining the queue; start()/stop() with the app."""

    def __init__(self, ctx: AppContext, *, name: str = "vision-worker") -> None:
        self.ctx = ctx
        self.name = name
        self.worker_id = new_worker_id()
        self._stop = threading.Event()
        # Retry waits sleep on the stop event, so stop() never waits out a backoff.
        self.pipeline = VisionPipeline(ctx, sleep=self._stop.wait)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.ctx.settings.vision.worker_poll_interval_s
        while not self._stop.is_set():
            try:
                ran = process_pending(
                    self.ctx, 1, pipeline=self.pipeline, worker_id=self.worker_id
                )
            except Exception:  # a database hiccup must not end the worker; the jobs stay in the table
                log.exception("vision worker pass failed; retrying")
                ran = 0
            if ran == 0:
                self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ctx.settings.vision.openai_timeout_s + 5)
            self._thread = None
