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
tailed than the model (`_Tail`). An alarm opens a surge, which stays open
until a reverse CUSUM says the stream is back to its baseline (or a day has
passed: then the level is taken as the new normal); then the detector
re-arms. One alarm per surge.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# Candidate surge ratios; the first also defines "back to normal".
RATIOS = (1.5, 2.0, 3.0, 5.0, 10.0)
LOG_RATIOS = tuple(math.log(k) for k in RATIOS)

DAY = 86400.0
WEEK = 7 * DAY
THIRTY_DAYS = 30 * DAY

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

# Tail calibration: CUSUM excursions peaking above TAIL_BASE nats are
# recorded; the fit needs TAIL_MIN of them and forgets over TAIL_MEMORY. A
# Pareto tail must beat the model's exponential one by TAIL_PARETO_PENALTY nats.
TAIL_BASE = 2.0
TAIL_MIN = 3.0
TAIL_MEMORY = 30 * DAY
TAIL_PARETO_PENALTY = 2.0
SCORE_FLOOR = 3600.0  # evidence seen about once an hour scores 0



def threshold(false_alarms_per_30_days: float, bucket_seconds: float) -> float:
    """Multi-CUSUM threshold (nats) for the false-alarm budget under the model.

    Simulating the multi-CUSUM on Poisson and negative-binomial streams with a
    known mean (bench/detect/calibrate.py) needs at most ~8 nats for a mean
    run length of 8640 buckets (30 days of 5 minutes), and ~1 nat more per
    e-fold of run length (as Wald's bound, ARL ~ e^h, has it).
    """
    run_length = THIRTY_DAYS / bucket_seconds / false_alarms_per_30_days
    return 8.0 + math.log(run_length / 8640.0)


@dataclass(frozen=True)
class DetectorConfig:
    """Per-stream settings; the defaults are the production defaults."""

    bucket_seconds: float = 300.0
    false_alarms_per_30_days: float = 1.0
    min_count: float = 0.0  # playbook: least count over the surge so far
    min_ratio: float = 1.0  # playbook: least observed/expected over the surge
    warmup_seconds: float = DAY  # no alarm before this much history

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or self.false_alarms_per_30_days <= 0:
            raise ValueError("bucket_seconds and false_alarms_per_30_days must be positive")


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
        self.daily = [[0.0] * 48, [0.0] * 48]  # discounted observed, expected; see _DAILY_NODES
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
        self.tail = _Tail(w / TAIL_MEMORY)
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

        hours, day = _position(ts, w)
        baseline = self._baseline(hours, day)
        mu = baseline[0]
        d0 = int(hours)
        dispersion = self._dispersion()
        # Plus the relative variance of the baseline estimate.
        phi = (
            dispersion
            + 1.0 / (self.level[0] + LEVEL_PRIOR)
            + 1.0 / (self.daily[0][_DAILY_NODES[day][d0][0]] + DAILY_PRIOR)
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
        n0, n1 = _DAILY_NODES[day][d0]
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
        n0, n1 = _DAILY_NODES[day][d0]
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
        state = {name: getattr(self, name) for name in _STATE}
        state["last_ts"] = _iso(self.last_ts)
        state["onsets"] = [_iso(t) for t in self.onsets]
        state["open_onset"] = _iso(self.open_onset)
        state["tail"] = vars(self.tail).copy()
        return {"version": 5, "config": asdict(self.config), "state": state}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detector:
        # Version 3 also held the anomaly score's record, now coordinator.detection.score's.
        if data.get("version") not in (3, 4, 5):
            raise ValueError(f"unknown detector state version {data.get('version')!r}")
        detector = cls(DetectorConfig(**data["config"]))
        state = dict(data["state"])
        for name in _STATE:
            setattr(detector, name, state[name])
        if len(detector.daily[0]) == 24:
            # Versions 3 and 4 had one daily profile for all days: it becomes both,
            # and the weekends' then learns its own.
            detector.daily = [nodes + nodes for nodes in detector.daily]
        detector.last_ts = _parse(state["last_ts"])
        detector.onsets = [_parse(t) for t in state["onsets"]]
        detector.open_onset = _parse(state["open_onset"])
        detector.history = [(y, h, int(d)) for y, h, d in state["history"]]
        for name, value in state["tail"].items():
            setattr(detector.tail, name, value)
        detector._set_span()
        return detector


# What to_dict saves as is (the rest needs converting).
_STATE = (
    "buckets", "level", "daily", "weekday", "hourly", "dispersion", "cusum", "observed_since",
    "expected_since", "history", "threshold", "peak", "open_observed", "open_expected",
    "open_buckets", "close_cusum",
)


# Daily profile nodes: 0-23 for weekdays, 24-47 for Saturdays and Sundays;
# by weekday and hour, the node and the next one (the next day's at 23).
_FIRST_NODE = (0, 0, 0, 0, 0, 24, 24)
_DAILY_NODES = tuple(
    tuple(
        (first + hour, first + hour + 1 if hour < 23 else _FIRST_NODE[(day + 1) % 7])
        for hour in range(24)
    )
    for day, first in enumerate(_FIRST_NODE)
)


def _position(ts: datetime, bucket_seconds: float) -> tuple[float, int]:
    """Hour of the day at the bucket's centre, less half an hour (shape nodes
    sit mid-hour and are interpolated), and the weekday it falls on."""
    hours = (ts.hour * 3600 + ts.minute * 60 + ts.second + 0.5 * bucket_seconds) / 3600.0 - 0.5
    day = ts.weekday()
    if hours >= 24.0:
        return hours - 24.0, (day + 1) % 7
    if hours < 0.0:
        return hours + 24.0, (day - 1) % 7
    return hours, day


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class _Tail:
    """How often this stream's evidence excursions peak above a level.

    Peaks above TAIL_BASE are fitted online with an exponential tail (what
    the model predicts) or a Pareto tail (what bursty real streams show),
    whichever fits better by likelihood; an alarm counts as a peak censored
    at the threshold. Sums are discounted over TAIL_MEMORY.
    """

    def __init__(self, forget: float) -> None:
        self.forget = forget  # per bucket
        self.exposure = 0.0  # buckets watched
        self.count = 0.0  # peaks above TAIL_BASE, censored ones included
        self.uncensored = 0.0
        self.excess = 0.0  # sum of (peak - base)
        self.log_excess = 0.0  # sum of log(peak / base)
        self.log_peaks = 0.0  # sum of log(peak), uncensored
        self.last = 0.0  # bucket of the last record
        self.rate_at_base = 0.0
        self.pareto = False
        self.shape = 1.0

    def record(self, peak: float, now: float, censored: bool = False) -> None:
        keep = (1.0 - self.forget) ** (now - self.last)
        self.last = now
        self.exposure *= keep
        self.count *= keep
        self.uncensored *= keep
        self.excess *= keep
        self.log_excess *= keep
        self.log_peaks *= keep
        if peak < TAIL_BASE:
            return
        self.count += 1.0
        self.excess += peak - TAIL_BASE
        self.log_excess += math.log(peak / TAIL_BASE)
        if not censored:
            self.uncensored += 1.0
            self.log_peaks += math.log(peak)
        self.rate_at_base = self.count / self.exposure
        if self.uncensored >= TAIL_MIN:
            n = self.uncensored
            lam, alpha = n / self.excess, n / self.log_excess
            # Maximised log-likelihoods, less the same n (censored peaks are
            # in the sums through their survival terms).
            pareto = n * math.log(alpha) - self.log_peaks
            self.pareto = pareto > n * math.log(lam) + TAIL_PARETO_PENALTY
            self.shape = alpha if self.pareto else lam

    def rate(self, x: float) -> float:
        """Peaks per bucket at or above x, per the fit (0 without one)."""
        if self.uncensored < TAIL_MIN or x < TAIL_BASE:
            return 0.0
        if self.pareto:
            return self.rate_at_base * math.pow(x / TAIL_BASE, -self.shape)
        return self.rate_at_base * math.exp(-self.shape * (x - TAIL_BASE))

    def threshold(self, budget: float) -> float:
        """Level peaked above at `budget` per bucket (0 without a fit)."""
        if self.uncensored < TAIL_MIN or self.rate_at_base <= budget:
            return 0.0
        if self.pareto:
            return TAIL_BASE * math.pow(self.rate_at_base / budget, 1.0 / self.shape)
        return TAIL_BASE + math.log(self.rate_at_base / budget) / self.shape

