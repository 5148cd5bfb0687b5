"""Arrival streams: when customers contact the center, one stream per media type.

A stream gives the next arrival time (``next()``, integer UTC seconds, non-decreasing) and its
expected rate at any time (``rate(t)``, arrivals per second) which the model's staffing uses.
Batch streams hold exactly the requested number of arrivals, spread over the span by the hour-of-day
and day-of-week profile; live streams are Poisson processes at a given rate.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right

from gim_jobs.idb.config import MediaSpec, SimConfig
from gim_jobs.idb.model import local_hour_dow


def _weight(ms: MediaSpec, t: int, offset: int) -> float:
    hour, dow = local_hour_dow(t, offset)
    return ms.profile[hour] * ms.weekday_factor[dow]


class BatchStream:
    """Exactly ``n`` arrivals in [start, end) with density proportional to the media's profile."""

    def __init__(self, ms: MediaSpec, cfg: SimConfig, n: int, start: int, end: int, rng: random.Random):
        self.media = ms.name
        bounds = [start]
        t = (start // 3600 + 1) * 3600
        while t < end:
            bounds.append(t)
            t += 3600
        bounds.append(end)
        weights = [_weight(ms, bounds[i], cfg.utc_offset_hours) for i in range(len(bounds) - 1)]
        masses = [w * (bounds[i + 1] - bounds[i]) for i, w in enumerate(weights)]
        total = sum(masses)
        if total <= 0:  # a profile of zeros: spread evenly
            weights = [1.0] * len(weights)
            masses = [float(bounds[i + 1] - bounds[i]) for i in range(len(weights))]
            total = float(end - start)
        self.bounds = bounds
        self.rates = [n * w / total for w in weights]  # per second
        self.times = array("q")
        if n > 0:
            # n sorted uniforms on [0, total) from exponential spacings, mapped through the CDF
            expo = rng.expovariate
            acc = 0.0
            cum = []
            for _ in range(n + 1):
                acc += expo(1.0)
                cum.append(acc)
            scale = total / acc
            b = 0
            lo = 0.0  # cumulative mass before bucket b
            nb = len(masses)
            times = self.times
            for k in range(n):
                u = cum[k] * scale
                while b < nb - 1 and u >= lo + masses[b]:
                    lo += masses[b]
                    b += 1
                frac = (u - lo) / masses[b] if masses[b] > 0 else 0.0
                x = bounds[b] + int(frac * (bounds[b + 1] - bounds[b]))
                times.append(min(max(x, bounds[b]), end - 1))
        self.i = 0

    def __len__(self) -> int:
        return len(self.times)

    def next(self) -> int | None:
        i = self.i
        if i >= len(self.times):
            return None
        self.i = i + 1
        return self.times[i]

    def rate(self, t: int) -> float:
        if t < self.bounds[0] or t >= self.bounds[-1]:
            return 0.0
        return self.rates[bisect_right(self.bounds, t) - 1]

    def __getstate__(self):  # a finished batch stream is not worth saving
        return {"media": self.media, "bounds": [0, 0], "rates": [], "times": array("q"), "i": 0}


class LiveStream:
    """Poisson arrivals at ``rate_per_s`` from ``start`` (optionally modulated by the profile)."""

    def __init__(self, ms: MediaSpec, cfg: SimConfig, rate_per_s: float, start: int, seed: int,
                 profile: bool = False):
        self.media = ms.name
        self.base = rate_per_s
        self.rng = random.Random(seed)
        self.t = float(start)
        self.start = start
        self.offset = cfg.utc_offset_hours
        self.ms = ms
        self.profile = profile
        if profile:
            ws = [ms.profile[h] * ms.weekday_factor[d] for h in range(24) for d in range(7)]
            self.mean_w = sum(ws) / len(ws)
            self.max_w = max(ws)

    def rate(self, t: int) -> float:
        if t < self.start:
            return 0.0
        if not self.profile:
            return self.base
        return self.base * _weight(self.ms, t, self.offset) / self.mean_w

    def next(self) -> int | None:
        if self.base <= 0:
            return None
        if not self.profile:
            self.t += self.rng.expovariate(self.base)
            return int(self.t)
        peak = self.base * self.max_w / self.mean_w
        while True:  # thinning
            self.t += self.rng.expovariate(peak)
            if self.rng.random() * peak <= self.rate(int(self.t)):
                return int(self.t)


def batch_streams(cfg: SimConfig, interactions: int, start: int, end: int) -> list[BatchStream]:
    """Split ``interactions`` over the media by share (largest remainder) and build their streams."""
    rng = random.Random(cfg.seed * 31 + 1)
    shares = [m.share for m in cfg.media]
    total = sum(shares) or 1.0
    raw = [interactions * s / total for s in shares]
    counts = [math.floor(x) for x in raw]
    rest = interactions - sum(counts)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[:rest]:
        counts[i] += 1
    return [BatchStream(ms, cfg, n, start, end, rng) for ms, n in zip(cfg.media, counts, strict=True)]


def live_streams(cfg: SimConfig, rate_per_min: float, start: int, run_id: int) -> list[LiveStream]:
    total = sum(m.share for m in cfg.media) or 1.0
    return [
        LiveStream(ms, cfg, rate_per_min / 60.0 * ms.share / total, start,
                   seed=cfg.seed * 7919 + run_id * 104729 + i, profile=cfg.live_profile)
        for i, ms in enumerate(cfg.media)
    ]
