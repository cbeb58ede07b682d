"""Online surge detector for one complaint stream: pure, no I/O, no clock.

Feed it one bucket at a time (`Detector.observe(ts, count)`); the bucket's
timestamp (wall-clock time where the stream lives) drives the seasonality, so
gaps are fine. `to_dict`/`from_dict` save and restore it exactly.

Baseline: expected count = level x daily profile x weekday factor x
hour-of-week correction. There is one daily profile for weekdays and one for
weekends (later mornings and evenings are the rule there, and a profile
shared with weekdays is wrong on both); the hour-of-week correction does the
rest where a stream has the counts for it. Each part is a discounted ratio of
observed to expected counts, shrunk towards 1 while data is scarce, learned from
winsorised counts and frozen while a surge is open, so that a surge does not
teach the baseline that it is normal. Counts are negative binomial around it,
with a dispersion learned online and inflated by the baseline's own
uncertainty, so that a young or sparse stream does not alarm on noise. No
alarm during the first day; at its end the shapes are refitted once.

Alarm: one CUSUM of the negative-binomial log-likelihood ratio per candidate
surge ratio (a multi-CUSUM approximates the GLR over unknown size and onset).
Its threshold keeps to the false-alarm budget: from simulating the model
(`threshold`), raised where the stream's own record shows bursts heavier-
tailed than the model (tail.py). An alarm opens a surge, which stays open
until a reverse CUSUM says the stream is back to its baseline (or a day has
passed: then the level is taken as the new normal); then the detector
re-arms. One alarm per surge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import saved
from .config import (
    DAY,
    LOG_RATIOS,
    RATIOS,
    THIRTY_DAYS,
    WEEK,
    DetectorConfig,
    threshold,
)
from .seasons import DAILY_NODES, position
from .tail import TAIL_MEMORY, Tail

# Memories of the baseline's parts: the level follows trend and day-to-day
# swings, the shapes change slowly.
LEVEL_MEMORY = DAY
DAILY_MEMORY = 14 * DAY
WEEKLY_MEMORY = 6 * WEEK
DISPERSION_MEMORY = 7 * DAY

# Prior strengths in counts: how much data a shape needs before it moves away
# from flat. The baseline's relative variance is 1 / (prior + counts seen).
# The hour-of-week correction (168 nodes, each seeing one hour a week) is
# mostly noise, and absorbs a surge at its hour, until a node has seen ~100
# counts: a sparse stream keeps to the daily profiles.
LEVEL_PRIOR = 0.5
DAILY_PRIOR = 3.0
WEEKDAY_PRIOR = 40.0
HOURLY_PRIOR = 100.0
DISPERSION_PRIOR = 0.05  # negative-binomial 1/size
DISPERSION_PRIOR_WEIGHT = 50.0  # in squared expected counts

# Counts teach the baseline only within expected -/+ CLIP_SD Poisson sd (+
# CLIP_COUNTS), the dispersion up to DISPERSION_CLIP_SD of its own sd.
CLIP_SD = 3.5
CLIP_COUNTS = 2.0
DISPERSION_CLIP_SD = 3.0

CLOSE_THRESHOLD = 4.0  # nats of evidence that the stream is back to normal
MAX_OPEN = DAY  # a surge open longer than this becomes the new normal

SCORE_FLOOR = 3600.0  # evidence seen about once an hour scores 0



@dataclass(slots=True)
class Observation:
    """What the detector makes of one bucket."""

    ts: datetime
    count: float
    expected: float  # the baseline's count for this bucket
    score: float  # 0..1, 1 at the alarm level; see Detector.observe
    alarm: bool  # rising edge: a surge opens at this bucket
    surge_open: bool
    onset: datetime | None  # estimated first bucket of the open surge
    observed_total: float  # counts from onset to now (0 with no open surge)
    expected_total: float  # baseline counts over the same buckets
    ratio: float  # observed_total / expected_total (0 with no open surge)


class Detector:
    """Online detector for one stream; feed it buckets in time order."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        w = self.config.bucket_seconds
        self._model_threshold = threshold(self.config.false_alarms_per_30_days, w)
        self._budget = self.config.false_alarms_per_30_days * w / THIRTY_DAYS
        self._floor_rate = w / SCORE_FLOOR
        # Forgetting per unit of weight: each node of a shape gets 1/n of the buckets.
        self._level_rate = w / LEVEL_MEMORY
        self._daily_rate = 24 * w / DAILY_MEMORY
        self._weekday_rate = 7 * w / WEEKLY_MEMORY
        self._hourly_rate = 168 * w / WEEKLY_MEMORY
        self._dispersion_rate = w / DISPERSION_MEMORY
        self._warmup = self.config.warmup_seconds / w
        self._max_open = MAX_OPEN / w

        self.last_ts: datetime | None = None
        self.buckets = 0.0  # history, gaps included
        self.level = [0.0, 0.0]  # discounted counts, discounted profile
        self.daily = [[0.0] * 48, [0.0] * 48]  # discounted observed, expected; see DAILY_NODES
        self.weekday = [[0.0] * 7, [0.0] * 7]
        self.hourly = [[0.0] * 168, [0.0] * 168]
        self.dispersion = [0.0, 0.0]  # discounted excess variance, squared mean
        self.cusum = [0.0] * len(RATIOS)
        self.onsets: list[datetime | None] = [None] * len(RATIOS)
        self.history: list[tuple[float, float, int]] = []  # the warm-up, for _refit
        self.observed_since = [0.0] * len(RATIOS)
        self.expected_since = [0.0] * len(RATIOS)
        self.threshold = self._model_threshold
        self.peak = 0.0  # highest evidence of the current excursion
        self.open_onset: datetime | None = None
        self.open_observed = 0.0
        self.open_expected = 0.0
        self.open_buckets = 0.0
        self.close_cusum = 0.0
        self.tail = Tail(w / TAIL_MEMORY)
        self._set_span()

    def observe(self, ts: datetime, count: float) -> Observation:
        """Take the count of the bucket starting at `ts`.

        `score` says how rare the current evidence for a surge is in this
        stream: 0 for what it shows about once an hour or more, 1 at the alarm
        level (the false-alarm budget); 0 during warm-up and while a surge is
        open (it is then reported by `ratio` and the totals).
        """
        w = self.config.bucket_seconds
        if self.last_ts is not None:
            steps = round((ts - self.last_ts).total_seconds() / w)
            if steps < 1:
                raise ValueError(f"bucket {ts} does not follow {self.last_ts}")
            if steps > 1:
                self._skip(steps - 1)
        self.last_ts = ts
        self.buckets += 1.0
        if self.history and self.buckets > self._warmup:
            self._refit()

        hours, day = position(ts, w)
        baseline = self._baseline(hours, day)
        mu = baseline[0]
        d0 = int(hours)
        dispersion = self._dispersion()
        # Plus the relative variance of the baseline estimate.
        phi = (
            dispersion
            + 1.0 / (self.level[0] + LEVEL_PRIOR)
            + 1.0 / (self.daily[0][DAILY_NODES[day][d0][0]] + DAILY_PRIOR)
            + 1.0 / (self.weekday[0][day] + WEEKDAY_PRIOR)
            + 1.0 / (self.hourly[0][day * 24 + d0] + HOURLY_PRIOR)
        )

        alarm = False
        score = 0.0
        if self.open_onset is not None:
            self._step_open(count, mu, phi)
        else:
            if self.buckets > self._warmup:
                score, alarm = self._step_cusums(ts, count, mu, phi)
            if not alarm:
                self._learn(count, hours, day, baseline, dispersion)
                if self.buckets <= self._warmup:
                    self.history.append((count, hours, day))

        if self.open_onset is None:
            return Observation(ts, count, mu, score, alarm, False, None, 0.0, 0.0, 0.0)
        return Observation(
            ts,
            count,
            mu,
            score,
            alarm,
            True,
            self.open_onset,
            self.open_observed,
            self.open_expected,
            self.open_observed / self.open_expected,
        )

    def _baseline(self, hours: float, day: int) -> tuple[float, float, float, float, float]:
        """Expected count, profile and its daily, weekday and hourly factors."""
        d0 = int(hours)
        frac = hours - d0
        n0, n1 = DAILY_NODES[day][d0]
        h0 = day * 24 + d0
        h1 = (h0 + 1) % 168
        d_obs, d_exp = self.daily
        h_obs, h_exp = self.hourly
        f_daily = (1.0 - frac) * (d_obs[n0] + DAILY_PRIOR) / (d_exp[n0] + DAILY_PRIOR) + frac * (
            d_obs[n1] + DAILY_PRIOR
        ) / (d_exp[n1] + DAILY_PRIOR)
        f_weekday = (self.weekday[0][day] + WEEKDAY_PRIOR) / (self.weekday[1][day] + WEEKDAY_PRIOR)
        f_hourly = (1.0 - frac) * (h_obs[h0] + HOURLY_PRIOR) / (h_exp[h0] + HOURLY_PRIOR) + frac * (
            h_obs[h1] + HOURLY_PRIOR
        ) / (h_exp[h1] + HOURLY_PRIOR)
        profile = f_daily * f_weekday * f_hourly
        mu = (self.level[0] + LEVEL_PRIOR) / (self.level[1] + 1.0) * profile + 1e-9
        return mu, profile, f_daily, f_weekday, f_hourly

    def _refit(self) -> None:
        """Relearn the shapes of the warm-up against its final level.

        Learnt online from nothing, a shape absorbs the level's errors of the
        first hours (the night looks like the norm before the day has been
        seen); one more pass over the warm-up with the level held removes that.
        """
        self.daily = [[0.0] * 48, [0.0] * 48]
        self.weekday = [[0.0] * 7, [0.0] * 7]
        self.hourly = [[0.0] * 168, [0.0] * 168]
        self.dispersion = [0.0, 0.0]
        for y, h, d in self.history:
            self._learn(y, h, d, self._baseline(h, d), self._dispersion(), level=False)
        self.history = []

    def _learn(self, count: float, hours: float, day: int,
               baseline: tuple[float, float, float, float, float], dispersion: float,
               level: bool = True) -> None:
        mu, profile, f_daily, f_weekday, f_hourly = baseline
        # Winsorised, so that a burst teaches the baseline little.
        sd = math.sqrt(mu)
        y = min(max(count, mu - CLIP_SD * sd), mu + CLIP_SD * sd + CLIP_COUNTS)
        if level:
            r = self._level_rate
            self.level[0] += y - r * self.level[0]
            self.level[1] += profile - r * self.level[1]
        # Each shape node (a ratio num / den) learns in proportion to its
        # interpolation weight.
        d0 = int(hours)
        a = hours - d0  # weight of the next node
        b = 1.0 - a
        h0 = day * 24 + d0
        h1 = (h0 + 1) % 168
        n0, n1 = DAILY_NODES[day][d0]
        num, den = self.daily
        e, r = mu / f_daily, self._daily_rate
        keep = 1.0 - b * r
        num[n0], den[n0] = num[n0] * keep + b * y, den[n0] * keep + b * e
        keep = 1.0 - a * r
        num[n1], den[n1] = num[n1] * keep + a * y, den[n1] * keep + a * e
        num, den = self.weekday
        keep = 1.0 - self._weekday_rate
        num[day], den[day] = num[day] * keep + y, den[day] * keep + mu / f_weekday
        num, den = self.hourly
        e, r = mu / f_hourly, self._hourly_rate
        keep = 1.0 - b * r
        num[h0], den[h0] = num[h0] * keep + b * y, den[h0] * keep + b * e
        keep = 1.0 - a * r
        num[h1], den[h1] = num[h1] * keep + a * y, den[h1] * keep + a * e
        # The dispersion needs the tail the level's winsorising cuts off;
        # it is winsorised too, but on its own (negative-binomial) scale.
        sd = math.sqrt(mu * (1.0 + dispersion * mu))
        y = min(count, mu + DISPERSION_CLIP_SD * sd + CLIP_COUNTS)
        r = self._dispersion_rate
        self.dispersion[0] += (y - mu) ** 2 - y - r * self.dispersion[0]
        self.dispersion[1] += mu * mu - r * self.dispersion[1]

    def _dispersion(self) -> float:
        return (max(self.dispersion[0], 0.0) + DISPERSION_PRIOR * DISPERSION_PRIOR_WEIGHT) / (
            self.dispersion[1] + DISPERSION_PRIOR_WEIGHT
        )

    def _step_cusums(self, ts: datetime, y: float, mu: float, phi: float) -> tuple[float, bool]:
        cusum = self.cusum
        best = 0
        mu_phi = mu * phi
        for i, log_k in enumerate(LOG_RATIOS):
            # Negative-binomial log-likelihood ratio, mean k*mu against mu at
            # the same size 1/phi: y (log k + c) + c / phi.
            c = -math.log1p((RATIOS[i] - 1.0) * mu_phi / (1.0 + mu_phi))
            s = cusum[i] + y * (log_k + c) + c / phi
            if s <= 0.0:
                cusum[i] = 0.0
                continue
            if cusum[i] == 0.0:
                self.onsets[i] = ts
                self.observed_since[i] = 0.0
                self.expected_since[i] = 0.0
            cusum[i] = s
            self.observed_since[i] += y
            self.expected_since[i] += mu
            if s > cusum[best]:
                best = i
        stat = cusum[best]

        # Excursions (runs of positive evidence) feed the tail calibration.
        self.tail.exposure += 1.0
        if stat > self.peak:
            self.peak = stat
        elif stat == 0.0 and self.peak > 0.0:
            self.tail.record(self.peak, self.buckets)
            self._recalibrate()
            self.peak = 0.0

        if stat < self.threshold:
            return self._score(stat), False
        observed, expected = self.observed_since[best], self.expected_since[best]
        if observed < self.config.min_count or observed < self.config.min_ratio * expected:
            return 1.0, False
        # The alarm ends the excursion: it is a peak known to be at least this high.
        self.tail.record(self.threshold, self.buckets, censored=True)
        self._recalibrate()
        self.open_onset = self.onsets[best]
        self.open_observed = observed
        self.open_expected = expected
        self.open_buckets = 0.0
        self.close_cusum = 0.0
        return 1.0, True

    def _rate(self, evidence: float) -> float:
        """Excursions per bucket peaking at least this high (model or record)."""
        model = self._budget * math.exp(self._model_threshold - evidence)
        return max(model, self.tail.rate(evidence))

    def _score(self, evidence: float) -> float:
        if evidence <= 0.0:
            return 0.0
        if evidence >= self.threshold:
            return 1.0
        rarity = math.log(self._floor_rate / self._rate(evidence))
        return min(1.0, max(0.0, rarity / self._span))

    def _recalibrate(self) -> None:
        self.threshold = max(self._model_threshold, self.tail.threshold(self._budget))
        self._set_span()

    def _set_span(self) -> None:
        # Rarity of the alarm level, so that it scores 1.
        self._span = max(math.log(self._floor_rate / self._rate(self.threshold)), 1e-9)

    def _step_open(self, y: float, mu: float, phi: float) -> None:
        self.open_observed += y
        self.open_expected += mu
        self.open_buckets += 1.0
        mu_phi = mu * phi
        c = -math.log1p((RATIOS[0] - 1.0) * mu_phi / (1.0 + mu_phi))
        self.close_cusum = max(0.0, self.close_cusum - y * (LOG_RATIOS[0] + c) - c / phi)
        if self.close_cusum >= CLOSE_THRESHOLD:
            self._close()
        elif self.open_buckets >= self._max_open:
            # Too long for a surge: take its level as the new normal.
            self.level[0] *= self.open_observed / self.open_expected
            self._close()

    def _close(self) -> None:
        self.open_onset = None
        self.cusum = [0.0] * len(RATIOS)
        self.onsets = [None] * len(RATIOS)
        self.peak = 0.0

    def _skip(self, missing: int) -> None:
        """Age the level over missing buckets; nothing was observed in them."""
        keep = (1.0 - self._level_rate) ** missing
        self.level[0] *= keep
        self.level[1] *= keep
        self.buckets += missing
        self.open_buckets += missing

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; `from_dict` continues exactly where this left off."""
        return saved.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detector:
        detector = saved.restore(cls(DetectorConfig(**data["config"])), data)
        detector._set_span()
        return detector
