"""Scheduled and derived alerts with a controllable clock: battery hysteresis, offline, digest, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cloud.models import Capture, Device
from cloud.notify import outbox
from cloud.notify.jobs import notify_jobs
from cloud.scheduler import core_jobs, run_once_per_period
from cloud.services import telemetry
from tests.notify.conftest import analysis_event, emit, notifications, set_prefs, store_capture


def _telemetry(ctx, owner, volts: float | None) -> None:
    with ctx.sessions() as session:
        device = session.get(Device, owner.device_id)
        telemetry.record(session, ctx, device, telemetry.TelemetryIn(battery_voltage=volts))
        session.commit()


def _job(ctx, name: str):
    return next(job for job in core_jobs(ctx) + notify_jobs(ctx) if job.name == name)


def test_low_battery_alerts_once_per_discharge_with_hysteresis(nctx, owner, clock):
    readings = [3.90, 3.44, 3.43, 3.40, 3.46, 3.60, 3.44, None, 3.71, 3.69, 3.45]
    for volts in readings:
        _telemetry(nctx, owner, volts)
        clock.advance(600)
    rows = notifications(nctx, kind="low_battery", channel="console")
    assert [r.data["battery_voltage"] for r in rows] == [3.44, 3.45]  # re-armed only after 3.71 V
    assert rows[0].title == "Battery low in Front gate (3.44 V)"


def test_low_battery_reported_with_a_capture_counts_too(nctx, owner):
    store_capture(nctx, owner, "cap-1", battery_voltage=3.30)
    store_capture(nctx, owner, "cap-2", seed=2, battery_voltage=3.31)
    assert len(notifications(nctx, kind="low_battery", channel="console")) == 1


def test_offline_after_missed_wakes_alerts_once_per_silent_spell(nctx, owner, clock):
    job = _job(nctx, "notify_offline")
    store_capture(nctx, owner, "cap-1")  # seen now; wakes every 600 s; offline after 3 missed (+30 s slack)
    clock.advance(3 * 600)
    assert run_once_per_period(nctx, job)
    assert notifications(nctx, kind="device_offline") == []
    clock.advance(job.interval_s)
    assert run_once_per_period(nctx, job)
    assert not run_once_per_period(nctx, job)  # the same period again: another process already ran it
    [row] = notifications(nctx, kind="device_offline", channel="console")
    assert "missed 3 expected wakes" in row.body
    for _ in range(5):  # still silent: no more alerts
        clock.advance(job.interval_s)
        run_once_per_period(nctx, job)
    assert len(notifications(nctx, kind="device_offline", channel="console")) == 1

    _telemetry(nctx, owner, 3.9)  # back
    clock.advance(job.interval_s)
    run_once_per_period(nctx, job)
    assert len(notifications(nctx, kind="device_offline", channel="console")) == 1
    clock.advance(3 * 600 + job.interval_s)
    run_once_per_period(nctx, job)
    assert len(notifications(nctx, kind="device_offline", channel="console")) == 2


def test_daily_digest_once_per_local_day_at_the_chosen_hour(nctx, owner, clock):
    with nctx.sessions() as session:
        from cloud.models import User

        session.get(User, owner.user_id).timezone = "America/New_York"
        session.commit()
    set_prefs(nctx, owner, events={"daily_digest": ["console"]}, digest_hour=8)
    ny = ZoneInfo("America/New_York")
    clock.set(datetime(2026, 6, 1, 18, 0, tzinfo=ny).astimezone(UTC))
    pk = store_capture(nctx, owner, "cap-1")
    with nctx.sessions() as session:  # what the vision worker records
        from cloud.models import Analysis, AnalysisStatus

        analysis = session.query(Analysis).filter_by(capture_pk=pk).one()
        analysis.status, analysis.mail_detected, analysis.confidence = AnalysisStatus.DONE, True, 0.9
        session.commit()
    job = _job(nctx, "notify_digest")
    clock.set(datetime(2026, 6, 2, 7, 50, tzinfo=ny).astimezone(UTC))
    run_once_per_period(nctx, job)
    assert notifications(nctx, kind="daily_digest") == []
    for minutes in (20, 15, 15, 60 * 10):
        clock.advance(timedelta(minutes=minutes))
        run_once_per_period(nctx, job)
    [digest] = notifications(nctx, kind="daily_digest")
    assert digest.body == "1 photo in the last 24 hours; mail in 1."
    assert digest.event_key.endswith(":2026-06-02")
    clock.set(datetime(2026, 6, 3, 8, 5, tzinfo=ny).astimezone(UTC))
    run_once_per_period(nctx, job)
    assert [d.event_key[-10:] for d in notifications(nctx, kind="daily_digest")] == ["2026-06-02", "2026-06-03"]


def test_retention_deletes_old_captures_and_unshared_files(nctx, owner, clock):
    nctx.settings.notify.retention_days = 30
    old_pk = store_capture(nctx, owner, "old", seed=1)
    shared_old_pk = store_capture(nctx, owner, "old-shared", seed=2)
    emit(nctx, analysis_event(owner, old_pk, "old"))
    outbox.deliver_due(nctx)
    with nctx.sessions() as session:
        old_sha = session.get(Capture, old_pk).image_sha256
        shared_sha = session.get(Capture, shared_old_pk).image_sha256
    clock.advance(timedelta(days=29))
    store_capture(nctx, owner, "new-shared", seed=2)  # same JPEG as old-shared, still within retention
    clock.advance(timedelta(days=1, seconds=1))

    job = _job(nctx, "image_retention")
    assert run_once_per_period(nctx, job)
    with nctx.sessions() as session:
        assert sorted(c.capture_id for c in session.query(Capture)) == ["new-shared"]
    assert not nctx.images.path(old_sha).exists() and not nctx.images.path(old_sha, thumbnail=True).exists()
    assert nctx.images.path(shared_sha).exists()
    # The delivery log outlives the capture it was about.
    [row] = notifications(nctx, kind="mail_arrived")
    assert row.delivery == "sent" and row.capture_pk is None


def test_retention_zero_keeps_everything(nctx):
    nctx.settings.notify.retention_days = 0
    assert "image_retention" not in [job.name for job in core_jobs(nctx) + notify_jobs(nctx)]


def test_housekeeping_prunes_old_final_log_rows_only(nctx, owner, clock):
    nctx.settings.notify.log_retention_days = 90
    clock.set(datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    pk = store_capture(nctx, owner, "cap-1")
    emit(nctx, analysis_event(owner, pk, "cap-1"))
    outbox.deliver_due(nctx)
    pk2 = store_capture(nctx, owner, "cap-2", seed=2)
    set_prefs(nctx, owner, quiet_hours={"start": "00:00", "end": "23:59"})
    emit(nctx, analysis_event(owner, pk2, "cap-2"))  # held: not final, must survive
    clock.advance(timedelta(days=91))
    assert run_once_per_period(nctx, _job(nctx, "notify_housekeeping"))
    assert [(r.capture_pk, r.delivery) for r in notifications(nctx, kind="mail_arrived")] == [(pk2, "held")]
