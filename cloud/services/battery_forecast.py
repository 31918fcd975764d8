"""When will this mailbox's battery reach the low-battery threshold? A date only when the data supports one.

    readings ─► 3-hour medians ─► cut at the last battery change ─► enough history? ─► Theil–Sen line
             ─► falling for sure? ─► threshold crossing, with the range the slope's confidence interval gives

Why each step:

- Medians of 3-hour buckets: one reading per wake is noisy (ADC, radio load), and a device waking every
  minute would otherwise give the fit ~1,400 points a day.
- A battery change or charge is a sustained rise above what the battery showed in the days before;
  a cold night's dip and its recovery are not (the recovery returns to the earlier level, not above it).
  Only the readings since the last change describe the battery in the box.
- Theil–Sen (``scipy.stats.theilslopes``): the median of pairwise slopes shrugs off outliers and
  temperature dips that a least-squares line would follow. Only the last ``FIT_DAYS`` are fitted: a
  Li-ion curve is not a line, and its recent slope is what predicts the next weeks.
- No date when the fall is not certain (the slope's upper bound is not below zero), when the data is
  too short (under ``MIN_DAYS`` since the last change), or when the date lies more than
  ``HORIZON_FACTOR`` times the observed span ahead: an extrapolation that far is a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import theilslopes

BUCKET_S = 3 * 3600
DAY_S = 86400
MIN_DAYS = 5.0  # of readings since the last battery change
MIN_BUCKETS = 12
FIT_DAYS = 14.0
CHANGE_RISE_V = 0.12  # a new or charged battery sits at least this far above the old one's recent best
CHANGE_LOOKBACK_S = 2 * DAY_S  # "recent best": the 90th percentile over this long before the rise
CHANGE_AFTER_S = DAY_S // 2  # the rise must hold for this long (median after)
HORIZON_FACTOR = 5.0
MAX_HORIZON_DAYS = 365.0
CONFIDENCE = 0.90


@dataclass(frozen=True)
class Forecast:
    """``status``: projected | below (already at or under the threshold) | none (no honest date; see ``reason``)."""

    status: str
    reason: str | None = None
    date: datetime | None = None  # the central estimate
    earliest: datetime | None = None
    latest: datetime | None = None  # None with a date: "not within the horizon" at the slow end
    slope_v_per_day: float | None = None
    since: datetime | None = None  # first reading used (after the last battery change)
    change_at: datetime | None = None  # the last battery change or charge seen, if any


def bucket_medians(times_s: np.ndarray, volts: np.ndarray, bucket_s: int = BUCKET_S) -> tuple[np.ndarray, np.ndarray]:
    """(bucket mid-times, median volts) for every bucket holding at least one reading, in time order."""
    if len(times_s) == 0:
        return np.empty(0), np.empty(0)
    keys = np.floor(times_s / bucket_s).astype(np.int64)
    order = np.lexsort((volts, keys))  # by bucket, then by value: each bucket's middle is its median
    keys, values = keys[order], volts[order]
    unique, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    medians = (values[starts + (counts - 1) // 2] + values[starts + counts // 2]) / 2
    return (unique + 0.5) * bucket_s, medians


def last_change(times: np.ndarray, volts: np.ndarray) -> int | None:
    """Index of the first bucket after the last battery change (a sustained rise above the recent best)."""
    rising = [
        i
        for i in _candidates(volts)
        if _rise(
            volts[(times >= times[i] - CHANGE_LOOKBACK_S) & (times < times[i])],
            volts[(times >= times[i]) & (times < times[i] + CHANGE_AFTER_S)],
        )
    ]
    if not rising:
        return None
    # The test holds for a few buckets around the step: the change is the biggest step among them.
    last = rising[-1]
    first = last
    while first - 1 in rising:
        first -= 1
    lo, hi = max(first - 1, 0), min(int(np.searchsorted(times, times[last] + CHANGE_AFTER_S)), len(times) - 1)
    return lo + int(np.argmax(np.diff(volts[lo : hi + 1]))) + 1 if hi > lo else last


def _candidates(volts: np.ndarray) -> np.ndarray:
    """Buckets where a change is possible at all (cheap, vectorised): some bucket in the next
    ``CHANGE_AFTER_S`` sits ``CHANGE_RISE_V`` above some bucket in the ``CHANGE_LOOKBACK_S`` before.
    Buckets are at least ``BUCKET_S`` apart, so index windows cover the time windows (gaps only widen them)."""
    n, back, ahead = len(volts), CHANGE_LOOKBACK_S // BUCKET_S, CHANGE_AFTER_S // BUCKET_S
    if n < 2:
        return np.empty(0, dtype=int)
    padded_min = np.concatenate([np.full(back, np.inf), volts])
    before_min = sliding_window_view(padded_min, back)[:n]  # row i: the buckets just before i
    padded_max = np.concatenate([volts, np.full(ahead, -np.inf)])
    after_max = sliding_window_view(padded_max, ahead)[:n]
    possible = after_max.max(axis=1) - before_min.min(axis=1) >= CHANGE_RISE_V
    return np.nonzero(possible[1:])[0] + 1


def _rise(before: np.ndarray, after: np.ndarray) -> bool:
    return bool(len(before) and len(after) and np.median(after) - np.percentile(before, 90) >= CHANGE_RISE_V)


def forecast(times_s: np.ndarray, volts: np.ndarray, threshold_v: float, now: datetime) -> Forecast:
    """Project the threshold crossing from battery readings (unix seconds, volts)."""
    times, medians = bucket_medians(np.asarray(times_s, float), np.asarray(volts, float))
    if len(times) == 0:
        return Forecast("none", "no battery readings yet")
    change_at = None
    cut = last_change(times, medians)
    if cut:
        change_at = _utc(times[cut])
        times, medians = times[cut:], medians[cut:]
    span_days = (times[-1] - times[0]) / DAY_S
    since = _utc(times[0])
    if span_days < MIN_DAYS or len(times) < MIN_BUCKETS:
        why = "a battery change was seen recently" if change_at else "too little history"
        return Forecast(
            "none", f"{why}: {span_days:.1f} days of readings, {MIN_DAYS:g} needed", since=since, change_at=change_at
        )
    recent = times >= times[-1] - FIT_DAYS * DAY_S
    days = (times[recent] - times[-1]) / DAY_S
    slope, intercept, low, high = theilslopes(medians[recent], days, alpha=CONFIDENCE)
    now_days = (now.timestamp() - times[-1]) / DAY_S
    level_now = intercept + slope * now_days
    common = {"slope_v_per_day": float(slope), "since": since, "change_at": change_at}
    if level_now <= threshold_v:
        return Forecast("below", date=now, **common)
    if high >= 0:
        return Forecast("none", "no measurable discharge yet", **common)
    fitted_days = min(span_days, FIT_DAYS)

    def crossing(rate: float) -> float:
        return (level_now - threshold_v) / -rate  # days from now

    central = crossing(slope) if slope < 0 else float("inf")
    horizon = min(HORIZON_FACTOR * fitted_days, MAX_HORIZON_DAYS)
    if central > horizon:
        return Forecast(
            "none",
            f"the threshold is more than {horizon:.0f} days away at this rate; more history is needed for a date",
            **common,
        )
    # The slope's interval assumes independent readings; weather makes neighbours alike, so the level
    # itself is uncertain by about the residuals' robust spread, whatever the number of readings.
    residuals = medians[recent] - (intercept + slope * days)
    band = float(np.quantile(np.abs(residuals), CONFIDENCE))
    # A Li-ion curve steepens towards its end: the last days' slope, if steeper, bounds the early side.
    last = days >= days[-1] - max(fitted_days / 3, 2.0)
    steepest = (
        min(low, theilslopes(medians[recent][last], days[last], alpha=CONFIDENCE)[2])
        if np.count_nonzero(last) >= MIN_BUCKETS // 2
        else low
    )
    earliest_days = max((level_now - band - threshold_v) / -steepest, 0.0)
    latest_days = (level_now + band - threshold_v) / -high
    return Forecast(
        "projected",
        date=now + timedelta(days=central),
        earliest=now + timedelta(days=earliest_days),
        latest=now + timedelta(days=latest_days) if latest_days <= horizon else None,
        **common,
    )


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)
