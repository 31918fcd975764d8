"""The scheduled jobs of notifications and retention (each run once per period across processes)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cloud.context import AppContext
from cloud.models import ApiRateWindow, Notification
from cloud.notify import alerts, digest
from cloud.notify.outbox import FINAL
from cloud.scheduler import PeriodicJob
from cloud.services import retention


def _offline(session: Session, ctx: AppContext) -> int:
    return alerts.detect_offline(session, ctx)


def _digest(session: Session, ctx: AppContext) -> int:
    return digest.send_digests(session, ctx)


def _retention(session: Session, ctx: AppContext) -> int:
    days = ctx.settings.notify.retention_days
    cutoff = ctx.clock.now() - timedelta(days=days)
    return retention.purge_older_than(session, ctx, cutoff, batch=ctx.settings.notify.retention_batch)


def _housekeeping(session: Session, ctx: AppContext) -> dict:
    """Prune old delivery-log rows (final states only) and spent rate-limit windows."""
    now = ctx.clock.now()
    pruned = 0
    days = ctx.settings.notify.log_retention_days
    if days > 0:
        pruned = session.execute(
            delete(Notification).where(
                Notification.created_at < now - timedelta(days=days), Notification.status.in_(FINAL)
            )
        ).rowcount
    windows = session.execute(delete(ApiRateWindow).where(ApiRateWindow.window < int(now.timestamp()) // 60 - 1))
    return {"notifications": pruned or 0, "rate_windows": windows.rowcount or 0}


def notify_jobs(ctx: AppContext) -> list[PeriodicJob]:
    s = ctx.settings.notify
    jobs = [
        PeriodicJob("notify_offline", s.offline_check_interval_s, _offline),
        PeriodicJob("notify_digest", s.digest_check_interval_s, _digest),
        PeriodicJob("notify_housekeeping", s.retention_interval_s, _housekeeping),
    ]
    if s.retention_days > 0:
        jobs.append(PeriodicJob("image_retention", s.retention_interval_s, _retention))
    return jobs
