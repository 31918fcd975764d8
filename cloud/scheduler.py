"""Periodic jobs on APScheduler, each run once per period across all cloud processes.

Every process schedules every job; a run first inserts a ``job_runs`` row
keyed by (job, period). The unique constraint lets exactly one process win
the insert, on SQLite and PostgreSQL alike, so N replicas do the work once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud import live
from cloud.context import AppContext
from cloud.models import JobRun
from cloud.services import accounts, api_keys, device_health, retention, triggers

log = logging.getLogger("mailcam.scheduler")
OWNER = f"{socket.gethostname()}:{os.getpid()}"

JobFn = Callable[[Session, AppContext], dict | int | None]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_s: int
    run: JobFn


def period_key(now: datetime, interval_s: int) -> str:
    return str(int(now.timestamp()) // interval_s)


def run_once_per_period(ctx: AppContext, job: PeriodicJob) -> bool:
    """Claim this period's run of ``job`` and do it; False when another process already has."""
    now = ctx.clock.now()
    try:
        with ctx.sessions() as session:
            session.add(JobRun(job=job.name, period=period_key(now, job.interval_s), started_at=now, owner=OWNER))
            session.commit()
    except IntegrityError:
        return False
    with ctx.sessions() as session:
        result = job.run(session, ctx)
        claimed = session.query(JobRun).filter_by(job=job.name, period=period_key(now, job.interval_s)).one()
        claimed.finished_at = ctx.clock.now()
        claimed.result = result if isinstance(result, dict) else {"count": result}
        session.commit()
    return True


def _offline(session: Session, ctx: AppContext) -> int:
    return device_health.detect_offline(session, ctx)


def _retention(session: Session, ctx: AppContext) -> int:
    cutoff = ctx.clock.now() - timedelta(days=ctx.settings.notify.retention_days)
    return retention.purge_older_than(session, ctx, cutoff, batch=ctx.settings.notify.retention_batch)


def _prune_rate_windows(session: Session, ctx: AppContext) -> int:
    return api_keys.prune_windows(session, ctx.clock.now())


def _expire_triggers(session: Session, ctx: AppContext) -> int:
    return triggers.expire_overdue(session, ctx)


def _purge_expired_tokens(session: Session, ctx: AppContext) -> int:
    return accounts.purge_expired_tokens(session, ctx.clock.now())


def _prune_live_events(session: Session, ctx: AppContext) -> int:
    return live.prune(session, ctx)


def core_jobs(ctx: AppContext) -> list[PeriodicJob]:
    """Jobs on devices, captures and accounts (notifications add theirs in ``cloud.notify.jobs``).

    The names ``notify_offline`` and ``image_retention`` predate the move out of ``notify``; they
    key the ``job_runs`` rows, so they stay.
    """
    s = ctx.settings.notify  # offline and retention settings kept their MAILCAM_NOTIFY__ names
    jobs = [
        PeriodicJob("expire_triggers", ctx.settings.trigger_expiry_interval_s, _expire_triggers),
        PeriodicJob("purge_expired_tokens", ctx.settings.token_purge_interval_s, _purge_expired_tokens),
        PeriodicJob("notify_offline", s.offline_check_interval_s, _offline),
        PeriodicJob("api_rate_windows", s.retention_interval_s, _prune_rate_windows),
        PeriodicJob("prune_live_events", min(300, ctx.settings.live_retention_s), _prune_live_events),
    ]
    if s.retention_days > 0:
        jobs.append(PeriodicJob("image_retention", s.retention_interval_s, _retention))
    return jobs


class Scheduler:
    """APScheduler in a background thread, running the given periodic jobs."""

    def __init__(self, ctx: AppContext, jobs: list[PeriodicJob]) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self._scheduler = BackgroundScheduler(timezone="UTC")

    def start(self) -> None:
        for job in self.jobs:
            self._scheduler.add_job(
                self._safe_run, "interval", seconds=job.interval_s, args=[job], id=job.name,
                max_instances=1, coalesce=True,
            )
        self._scheduler.start()

    def _safe_run(self, job: PeriodicJob) -> None:
        try:
            run_once_per_period(self.ctx, job)
        except Exception:  # a failing job must not stop the scheduler; it runs again next period
            log.exception("periodic job %s failed", job.name)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
