"""Synthetic complaint streams with known surges, and two reference detectors.

Streams: 8 weeks of 5-minute buckets from a Monday; a daily profile (quiet
nights, morning and evening peaks, later mornings at weekends), weekday
factors, a slow trend; mean levels from 0.3 to 60 complaints per bucket
(log-uniform); Poisson noise for half the streams, negative binomial of size
10 or 30 for the rest. Four surges per stream in weeks 3 to 8, x2 to x10
(log-uniform), lasting 1 to 8 hours, a step or a ramp (linear rise over the
first half, then flat), at least 2 days apart.

References:
- oracle: a CUSUM that knows the true baseline, the noise and each surge's
  ratio, its threshold set by simulation on surge-free copies of the same
  stream to the same budget (one false alarm per 30 days);
- static: "count above the 99.9th percentile of the last 2 weeks".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from coordinator.detection.detector import Detector

BUCKET = 300
PER_DAY = 86400 // BUCKET
N = 8 * 7 * PER_DAY
START = datetime(2024, 1, 1)  # a Monday
TIMESTAMPS = [START + timedelta(seconds=BUCKET * i) for i in range(N)]
EVAL_START = 14 * PER_DAY  # surges, and false alarms counted, from week 3 on
BUDGET_RUN_LENGTH = 30 * PER_DAY  # buckets per false alarm
GRACE = 2 * 12  # an alarm this soon after a surge ends is neither false nor a catch


@dataclass
class Surge:
    onset: int
    end: int  # exclusive
    ratio: float
    shape: str  # "step" | "ramp"


@dataclass
class Stream:
    level: float
    size: float | None  # negative-binomial size; None for Poisson
    baseline: np.ndarray  # true expected counts
    counts: np.ndarray
    surges: list[Surge]


def make_stream(rng: np.random.Generator, surges: int = 4) -> Stream:
    t = np.arange(N)
    hours = (t % PER_DAY + 0.5) * 24.0 / PER_DAY
    day = (t // PER_DAY) % 7
    weekend = day >= 5
    h = (hours - np.where(weekend, rng.uniform(0.5, 1.5), 0.0)) % 24
    morning, evening = rng.uniform(9.5, 11.5), rng.uniform(18.5, 21.0)
    daily = (
        rng.uniform(0.1, 0.25)
        + np.exp(-0.5 * ((h - morning) / rng.uniform(1.5, 2.5)) ** 2)
        + rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((h - evening) / rng.uniform(1.5, 2.5)) ** 2)
        + 0.4 * np.exp(-0.5 * ((h - 14.5) / 2.0) ** 2)
    )
    weekday = np.array([1.1, 1.0, 1.0, 1.0, 1.05, 0.8, 0.7]) * rng.uniform(0.9, 1.1, 7)
    trend = 1.0 + rng.uniform(-0.25, 0.25) * t / N + 0.1 * np.sin(2 * np.pi * t / N * rng.uniform(0.5, 2))
    shape = daily * weekday[day] * trend
    level = float(math.exp(rng.uniform(math.log(0.3), math.log(60.0))))
    baseline = level * shape / shape.mean()
    size = None if rng.random() < 0.5 else float(rng.choice([10.0, 30.0]))

    multiplier = np.ones(N)
    placed: list[Surge] = []
    while len(placed) < surges:
        duration = int(rng.integers(12, 8 * 12 + 1))
        onset = int(rng.integers(EVAL_START, N - duration - PER_DAY))
        if any(abs(onset - s.onset) < 2 * PER_DAY for s in placed):
            continue
        ratio = float(math.exp(rng.uniform(math.log(2.0), math.log(10.0))))
        kind = "step" if rng.random() < 0.5 else "ramp"
        if kind == "step":
            multiplier[onset:onset + duration] = ratio
        else:
            rise = max(1, duration // 2)
            multiplier[onset:onset + rise] = 1.0 + (ratio - 1.0) * np.arange(1, rise + 1) / rise
            multiplier[onset + rise:onset + duration] = ratio
        placed.append(Surge(onset, onset + duration, ratio, kind))
    placed.sort(key=lambda s: s.onset)
    return Stream(level, size, baseline, sample(rng, baseline * multiplier, size), placed)


def sample(rng: np.random.Generator, mean: np.ndarray, size: float | None) -> np.ndarray:
    if size is None:
        return rng.poisson(mean).astype(float)
    return rng.poisson(rng.gamma(size, mean / size)).astype(float)


def ours(stream: Stream) -> np.ndarray:
    """coordinator.detection.detector with production defaults: its alarm flags."""
    detector = Detector()
    return np.array([detector.observe(t, y).alarm for t, y in zip(TIMESTAMPS, stream.counts.tolist())])


def _llr(mu: np.ndarray, ratio: float, size: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-bucket log-likelihood ratio y*a + b of mean ratio*mu against mu."""
    if size is None:
        return np.full_like(mu, math.log(ratio)), -(ratio - 1.0) * mu
    c = np.log((size + mu) / (size + ratio * mu))
    return math.log(ratio) + c, size * c


def _cusum(y: np.ndarray, a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """CUSUM restarted after each alarm, for each threshold in h; y is (T,)
    or (T, R). Returns alarm flags (T, R, H)."""
    y2 = y.reshape(len(y), -1)
    s = np.zeros((y2.shape[1], len(h)))
    out = np.zeros((len(y), y2.shape[1], len(h)), dtype=bool)
    for t in range(len(y)):
        s += (y2[t] * a[t] + b[t])[:, None]
        np.maximum(s, 0.0, out=s)
        hit = s >= h
        out[t] = hit
        s[hit] = 0.0
    return out


def _oracle_threshold(rng: np.random.Generator, stream: Stream, ratio: float,
                      replicates: int = 24) -> float:
    a, b = _llr(stream.baseline, ratio, stream.size)
    null = sample(rng, np.repeat(stream.baseline[:, None], replicates, axis=1), stream.size)
    grid = np.linspace(2.0, 16.0, 57)
    rate = _cusum(null, a, b, grid).sum(axis=(0, 1)) / (replicates * N / BUDGET_RUN_LENGTH)
    ok = np.flatnonzero(rate <= 1.0)
    return float(grid[ok[0]]) if ok.size else float(grid[-1])


def oracle(rng: np.random.Generator, stream: Stream) -> np.ndarray:
    """Before and during each surge, the CUSUM tuned to that surge's ratio
    (the oracle knows what is coming), each at the budget."""
    flags = np.zeros(N, dtype=bool)
    edges = [0] + [s.end + GRACE for s in stream.surges[:-1]] + [N]
    for s, lo, hi in zip(stream.surges, edges[:-1], edges[1:]):
        h = _oracle_threshold(rng, stream, s.ratio)
        a, b = _llr(stream.baseline, s.ratio, stream.size)
        flags[lo:hi] = _cusum(stream.counts[lo:hi], a[lo:hi], b[lo:hi], np.array([h]))[:, 0, 0]
    return flags


def static(counts: np.ndarray, history: int = 14 * PER_DAY, rearm: int = 12) -> np.ndarray:
    """A count above the 99.9th percentile of the previous 2 weeks (recomputed
    hourly); a new alarm needs an hour without exceedance."""
    flags = np.zeros(len(counts), dtype=bool)
    limit = math.inf
    quiet = rearm
    for t in range(history, len(counts)):
        if t % 12 == 0:
            limit = float(np.quantile(counts[t - history:t], 0.999))
        if counts[t] > limit:
            flags[t] = quiet >= rearm
            quiet = 0
        else:
            quiet += 1
    return flags


@dataclass
class Outcome:
    """One detector on one stream."""

    delays: list[int | None]  # per surge: buckets seen up to the alarm (1 = first), None if missed
    false_alarms: int  # from week 3 on, outside surges and their grace
    cold_start_alarms: int  # weeks 1 and 2


def outcome(flags: np.ndarray, stream: Stream) -> Outcome:
    inside = np.zeros(N, dtype=bool)
    delays: list[int | None] = []
    for s in stream.surges:
        inside[s.onset:s.end + GRACE] = True
        hits = np.flatnonzero(flags[s.onset:s.end])
        delays.append(int(hits[0]) + 1 if hits.size else None)
    return Outcome(delays, int((flags & ~inside)[EVAL_START:].sum()), int(flags[:EVAL_START].sum()))
