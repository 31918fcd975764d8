"""The scheduled jobs of notifications (each run once per period across processes)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.jobs import FINAL
from cloud.models import Notification
from cloud.notify import digest
from cloud.scheduler import PeriodicJob


def _digest(session: Session, ctx: AppContext) -> int:
    return digest.send_digests(session, ctx)


def _housekeeping(session: Session, ctx: AppContext) -> dict:
    """Prune old delivery-log rows (done or dead only)."""
    days = ctx.settings.notify.log_retention_days
    if days <= 0:
        return {"notifications": 0}
    cutoff = ctx.clock.now() - timedelta(days=days)
    pruned = session.execute(
        delete(Notification).where(Notification.created_at < cutoff, Notification.status.in_(FINAL))
    ).rowcount
    return {"notifications": pruned or 0}


def notify_jobs(ctx: AppContext) -> list[PeriodicJob]:
    s = ctx.settings.notify
    return [
        PeriodicJob("notify_digest", s.digest_check_interval_s, _digest),
        PeriodicJob("notify_housekeeping", s.retention_interval_s, _housekeeping),
    ]
