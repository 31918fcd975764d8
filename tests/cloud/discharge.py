"""Simulated battery histories for the forecast tests: a true discharge curve plus what a sensor adds.

The truth is ``v0 - slope·t - knee`` (``knee``: the Li-ion cliff, a drop that accelerates as the cell
empties); readings add Gaussian noise, a daily temperature swing, cold spells that pull the voltage down
for a few days, battery changes (the curve restarts from a fresh ``v0``) and silent gaps. The true
crossing is where the noise- and weather-free curve of the battery in the box meets the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAY = 86400.0


@dataclass(frozen=True)
class Curve:
    days: float  # history length up to "now"
    slope: float  # V/day of the steady part
    noise: float  # V, one reading's standard deviation
    every_s: float = 600.0  # one reading per wake
    v0: float = 4.15
    knee: float = 0.0  # V of extra drop by the time the steady part reaches 3.5 V (0: a straight line)
    daily_swing: float = 0.0  # V, peak-to-peak of the day/night temperature cycle
    cold_spells: tuple[tuple[float, float, float], ...] = ()  # (start day, length days, depth V)
    changes: tuple[tuple[float, float], ...] = ()  # (day, fresh v0): a new or recharged battery
    gaps: tuple[tuple[float, float], ...] = ()  # (start day, length days) with no readings
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def true_volts(self, t_days: np.ndarray) -> np.ndarray:
        start, v0 = 0.0, self.v0
        out = np.empty_like(t_days)
        marks = [(0.0, self.v0), *sorted(self.changes)]
        for k, (at, fresh) in enumerate(marks):
            end = marks[k + 1][0] if k + 1 < len(marks) else np.inf
            inside = (t_days >= at) & (t_days < end)
            start, v0 = at, fresh
            age = t_days[inside] - start
            steady = v0 - self.slope * age
            # The knee: grows with the square of how far the steady part has fallen towards 3.5 V.
            fallen = np.clip((v0 - steady) / max(v0 - 3.5, 1e-6), 0, None)
            out[inside] = steady - self.knee * fallen**2
        return out

    def readings(self) -> tuple[np.ndarray, np.ndarray]:
        """(unix-style seconds from 0, volts) as the cloud would store them; "now" is ``days``."""
        rng = np.random.default_rng(self.seed)
        t = np.arange(0.0, self.days * DAY, self.every_s) + rng.uniform(0, self.every_s)
        t = t[t <= self.days * DAY]
        t_days = t / DAY
        keep = np.ones_like(t, dtype=bool)
        for start, length in self.gaps:
            keep &= ~((t_days >= start) & (t_days < start + length))
        v = self.true_volts(t_days)
        v = v - self.daily_swing / 2 * np.cos(2 * np.pi * (t_days % 1.0))  # coldest at midnight
        for start, length, depth in self.cold_spells:
            inside = (t_days >= start) & (t_days < start + length)
            v[inside] -= depth * np.sin(np.pi * (t_days[inside] - start) / length)
        v = v + rng.normal(0, self.noise, size=v.shape)
        return t[keep], np.round(v[keep], 3)  # the cloud stores volts from millivolts

    def true_crossing_days(self, threshold: float, horizon_days: float = 1000) -> float | None:
        """Days after "now" when the battery in the box reaches ``threshold`` (None: not within the horizon)."""
        ahead = np.arange(self.days, self.days + horizon_days, 1 / 24)
        below = np.nonzero(self.true_volts(ahead) <= threshold)[0]
        return float(ahead[below[0]] - self.days) if len(below) else None
