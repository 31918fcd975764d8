"""A mailbox's life over the last N days, for the device page's charts: battery, deliveries, wakes.

Days are the owner's calendar days (their time zone, daylight saving included): a reading belongs to
the local day its UTC instant falls in. Sources:

- battery: telemetry and captures both carry the voltage; the chart gets the median per bucket
  (at most ``MAX_POINTS`` buckets), the forecast (``battery_forecast``) every reading of the last
  ``FORECAST_DAYS`` whatever the chart shows.
- wakes and awake time: one telemetry row per wake; its ``awake_ms`` is the *previous* wake's
  (the firmware measures a wake when it ends), counted on the day it was reported.
- deliveries: the mailbox's delivery state transitions "arrived" and "more" (``vision.delivery``),
  not every photo with mail in it.

A reading's time is the device's ``reported_at`` when it has one (a gateway may forward hours late),
else when the cloud received it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import Capture, DeliveryEvent, Device, Telemetry
from cloud.services import battery_forecast
from cloud.services.battery_forecast import Forecast
from cloud.vision.delivery import ARRIVED, MORE

MAX_DAYS = 90
MAX_POINTS = 240
FORECAST_DAYS = 28
MIN_DELIVERIES_FOR_TYPICAL = 3


@dataclass(frozen=True)
class DeliveryTimes:
    by_hour: list[int]  # deliveries per local hour of day, 0..23
    typical: str | None  # "HH:MM", the median time of day (None: fewer than 3 deliveries)
    usual_from: str | None  # the middle half of deliveries came between these two times
    usual_to: str | None


@dataclass(frozen=True)
class DeviceHistory:
    timezone: str
    days: list[str]  # ISO dates, oldest first
    deliveries: list[int]
    wakes: list[int]
    awake_s: list[float]
    battery_points: list[tuple[int, float]]  # (unix s, volts): bucket medians
    threshold_v: float
    forecast: Forecast
    delivery_times: DeliveryTimes


def history(
    session: Session, device: Device, *, days: int, timezone: str, now: datetime, threshold_v: float
) -> DeviceHistory:
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    local_days = [today - timedelta(days=days - 1 - k) for k in range(days)]
    # Day k runs from edges[k] to edges[k + 1] (UTC seconds); DST days are 23 or 25 hours long.
    edges = np.array(
        [datetime.combine(d, time(0), zone).timestamp() for d in local_days]
        + [datetime.combine(today + timedelta(days=1), time(0), zone).timestamp()]
    )
    since = min(datetime.fromtimestamp(edges[0], now.tzinfo), now - timedelta(days=FORECAST_DAYS))

    telemetry = _telemetry(session, device, since)
    wake_times = telemetry[:, 0]
    wakes = _per_day(edges, wake_times)
    awake_s = _per_day(edges, wake_times, weights=np.nan_to_num(telemetry[:, 2]) / 1000.0)

    readings = np.concatenate(
        [telemetry[~np.isnan(telemetry[:, 1])][:, :2], _capture_batteries(session, device, since)]
    )
    readings = readings[np.argsort(readings[:, 0], kind="stable")] if len(readings) else readings
    recent = readings[readings[:, 0] >= now.timestamp() - FORECAST_DAYS * 86400] if len(readings) else readings
    forecast = battery_forecast.forecast(recent[:, 0], recent[:, 1], threshold_v, now)
    shown = readings[(readings[:, 0] >= edges[0]) & (readings[:, 0] < edges[-1])] if len(readings) else readings
    bucket_s = max(3600, int(np.ceil((edges[-1] - edges[0]) / MAX_POINTS / 3600)) * 3600)
    centres, medians = (
        battery_forecast.bucket_medians(shown[:, 0], shown[:, 1], bucket_s)
        if len(shown)
        else (np.empty(0), np.empty(0))
    )

    delivered = _deliveries(session, device, datetime.fromtimestamp(edges[0], now.tzinfo))
    return DeviceHistory(
        timezone=timezone,
        days=[d.isoformat() for d in local_days],
        deliveries=[int(n) for n in _per_day(edges, np.array([t.timestamp() for t in delivered]))],
        wakes=[int(n) for n in wakes],
        awake_s=[round(float(s), 1) for s in awake_s],
        battery_points=[(int(t), round(float(v), 3)) for t, v in zip(centres, medians, strict=True)],
        threshold_v=threshold_v,
        forecast=forecast,
        delivery_times=delivery_times([t.astimezone(zone) for t in delivered]),
    )


def delivery_times(local: list[datetime]) -> DeliveryTimes:
    """When in the day deliveries come: per-hour counts and the median time, measured on the clock face
    (cut where the day is emptiest, so a round that straddles midnight is not averaged to noon)."""
    by_hour = [0] * 24
    for t in local:
        by_hour[t.hour] += 1
    if len(local) < MIN_DELIVERIES_FOR_TYPICAL:
        return DeliveryTimes(by_hour, None, None, None)
    minutes = np.sort([t.hour * 60 + t.minute for t in local])
    gaps = np.diff(np.append(minutes, minutes[0] + 1440))
    start = minutes[(int(np.argmax(gaps)) + 1) % len(minutes)]  # just after the emptiest stretch
    unrolled = (minutes - start) % 1440
    q25, q50, q75 = (int(round(np.percentile(unrolled, q))) for q in (25, 50, 75))
    return DeliveryTimes(by_hour, *(_clock((start + q) % 1440) for q in (q50, q25, q75)))


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _per_day(edges: np.ndarray, times: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    counts, _ = np.histogram(times, bins=edges, weights=weights)
    return counts


def _at(reported: datetime | None, received: datetime) -> float:
    return (reported or received).timestamp()


def _telemetry(session: Session, device: Device, since: datetime) -> np.ndarray:
    """(time, volts or NaN, awake ms or NaN) per telemetry row received since ``since``."""
    rows = session.execute(
        select(Telemetry.reported_at, Telemetry.received_at, Telemetry.battery_voltage, Telemetry.awake_ms).where(
            Telemetry.device_id == device.id, Telemetry.received_at >= since
        )
    ).all()
    return np.array(
        [(_at(rep, rec), np.nan if v is None else v, np.nan if ms is None else ms) for rep, rec, v, ms in rows],
        dtype=float,
    ).reshape(-1, 3)


def _capture_batteries(session: Session, device: Device, since: datetime) -> np.ndarray:
    rows = session.execute(
        select(Capture.taken_at, Capture.battery_voltage).where(
            Capture.device_id == device.id, Capture.received_at >= since, Capture.battery_voltage.is_not(None)
        )
    ).all()
    return np.array([(t.timestamp(), v) for t, v in rows], dtype=float).reshape(-1, 2)


def _deliveries(session: Session, device: Device, since: datetime) -> list[datetime]:
    return list(
        session.scalars(
            select(DeliveryEvent.at)
            .where(
                DeliveryEvent.device_id == device.id, DeliveryEvent.at >= since, DeliveryEvent.kind.in_((ARRIVED, MORE))
            )
            .order_by(DeliveryEvent.at)
        )
    )
