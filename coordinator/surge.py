"""Online surge detector for one complaint stream: pure, no I/O, no clock.

Feed it one bucket at a time (`Detector.observe(ts, count)`); the bucket's
timestamp drives the seasonality, so gaps are fine.

Baseline: expected count = level x daily profile x weekday factor x
hour-of-week correction. Each part is a discounted ratio of observed to
expected counts, shrunk towards 1 while data is scarce, learned from
winsorised counts and frozen while a surge is open, so that a surge does not
teach the baseline that it is normal. Counts are negative binomial around the
baseline, with a dispersion learned online and inflated by the baseline's own
uncertainty, so that a young or sparse stream does not alarm on noise.

Alarm: one CUSUM of the negative-binomial log-likelihood ratio per candidate
surge ratio (a multi-CUSUM approximates the GLR over unknown size and onset).
Its threshold comes from the false-alarm budget: from simulation of the model
(`threshold`), raised where the stream's own record says its bursts are
heavier-tailed than the model (`_Tail`). An alarm opens a surge, which stays
open until a reverse CUSUM says the stream is back to its baseline; then the
detector re-arms. One alarm per surge.
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
LEVEL_PRIOR = 0.5
DAILY_PRIOR = 3.0
WEEKDAY_PRIOR = 40.0
HOURLY_PRIOR = 25.0
DISPERSION_PRIOR = 0.05  # negative-binomial 1/size
DISPERSION_PRIOR_WEIGHT = 50.0  # in squared expected counts

# Counts teach the baseline only within expected -/+ CLIP_SD Poisson sd (+ CLIP_COUNTS).
CLIP_SD = 3.5
CLIP_COUNTS = 2.0

CLOSE_THRESHOLD = 4.0  # nats of evidence that the stream is back to normal
MAX_OPEN = DAY  # a surge open longer than this becomes the new normal

# Tail calibration: CUSUM excursions peaking above TAIL_BASE nats are
# recorded; the fit needs TAIL_MIN of them and forgets over TAIL_MEMORY.
TAIL_BASE = 2.0
TAIL_MIN = 3.0
TAIL_MEMORY = 30 * DAY
SCORE_FLOOR = 3600.0  # evidence seen about once an hour scores 0


def threshold(false_alarms_per_30_days: float, bucket_seconds: float) -> float:
    """Multi-CUSUM threshold (nats) for the false-alarm budget under the model.

    Simulating the multi-CUSUM on Poisson and negative-binomial streams with a
    known mean (bench/detect/calibrate.py) needs at most ~8 nats for a mean
    run length of 8640 buckets (30 days of 5 minutes), ~0.85 nat more per
    e-fold of run length.
    """
    run_length = THIRTY_DAYS / bucket_seconds / false_alarms_per_30_days
    return 8.0 + 0.85 * math.log(run_length / 8640.0)


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
    score: float  # 0..1, see Detector.observe
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
        self.daily = [[0.0] * 24, [0.0] * 24]  # discounted observed, expected
        self.weekday = [[0.0] * 7, [0.0] * 7]
        self.hourly = [[0.0] * 168, [0.0] * 168]
        self.dispersion = [0.0, 0.0]  # discounted excess variance, squared mean
        self.cusum = [0.0] * len(RATIOS)
        self.onsets: list[datetime | None] = [None] * len(RATIOS)
        self.observed_since = [0.0] * len(RATIOS)
        self.expected_since = [0.0] * len(RATIOS)
        self.threshold = self._model_threshold
        self.peak = 0.0  # highest evidence of the current excursion
        self.previous = 0.0  # evidence at the previous bucket
        self.reported = 0.0  # highest evidence already scored in this excursion
        self.open_onset: datetime | None = None
        self.open_observed = 0.0
        self.open_expected = 0.0
        self.open_buckets = 0.0
        self.close_cusum = 0.0
        self.tail = _Tail(w / TAIL_MEMORY)

    def observe(self, ts: datetime, count: float) -> Observation:
        """Take the count of the bucket starting at `ts`.

        `score` is 1.0 on an alarm; otherwise, on the bucket after the surge
        evidence peaks, how rare a peak that high is in this stream (0 for
        about once an hour, 1 for the false-alarm budget); 0 elsewhere,
        during warm-up and while a surge is open.
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

        # Position at the bucket's centre, in hours; shape nodes sit at the
        # middle of each hour and are interpolated linearly.
        hours = (ts.hour * 3600 + ts.minute * 60 + ts.second + 0.5 * w) / 3600.0 - 0.5
        day = ts.weekday()
        if hours >= 24.0:
            hours -= 24.0
            day = (day + 1) % 7
        elif hours < 0.0:
            hours += 24.0
            day = (day - 1) % 7
        d0 = int(hours)
        frac = hours - d0
        d1 = (d0 + 1) % 24
        h0 = day * 24 + d0
        h1 = (h0 + 1) % 168

        d_obs, d_exp = self.daily
        w_obs, w_exp = self.weekday
        h_obs, h_exp = self.hourly
        f_daily = (1.0 - frac) * (d_obs[d0] + DAILY_PRIOR) / (d_exp[d0] + DAILY_PRIOR) + frac * (
            d_obs[d1] + DAILY_PRIOR
        ) / (d_exp[d1] + DAILY_PRIOR)
        f_weekday = (w_obs[day] + WEEKDAY_PRIOR) / (w_exp[day] + WEEKDAY_PRIOR)
        f_hourly = (1.0 - frac) * (h_obs[h0] + HOURLY_PRIOR) / (h_exp[h0] + HOURLY_PRIOR) + frac * (
            h_obs[h1] + HOURLY_PRIOR
        ) / (h_exp[h1] + HOURLY_PRIOR)
        level_obs = self.level[0]
        profile = f_daily * f_weekday * f_hourly
        mu = (level_obs + LEVEL_PRIOR) / (self.level[1] + 1.0) * profile + 1e-9

        # Dispersion plus the relative variance of the baseline estimate.
        phi = (
            (max(self.dispersion[0], 0.0) + DISPERSION_PRIOR * DISPERSION_PRIOR_WEIGHT)
            / (self.dispersion[1] + DISPERSION_PRIOR_WEIGHT)
            + 1.0 / (level_obs + LEVEL_PRIOR)
            + 1.0 / (d_obs[d0] + DAILY_PRIOR)
            + 1.0 / (w_obs[day] + WEEKDAY_PRIOR)
            + 1.0 / (h_obs[h0] + HOURLY_PRIOR)
        )

        alarm = False
        score = 0.0
        if self.open_onset is not None:
            self._step_open(count, mu, phi)
        else:
            if self.buckets > self._warmup:
                score, alarm = self._step_cusums(ts, count, mu, phi)
            if not alarm:
                # Winsorised, so that a burst teaches the baseline little.
                sd = math.sqrt(mu)
                y = min(max(count, mu - CLIP_SD * sd), mu + CLIP_SD * sd + CLIP_COUNTS)
                r = self._level_rate
                self.level[0] += y - r * level_obs
                self.level[1] += profile - r * self.level[1]
                e = mu / f_daily
                _learn(self.daily, d0, 1.0 - frac, y, e, self._daily_rate)
                _learn(self.daily, d1, frac, y, e, self._daily_rate)
                _learn(self.weekday, day, 1.0, y, mu / f_weekday, self._weekday_rate)
                e = mu / f_hourly
                _learn(self.hourly, h0, 1.0 - frac, y, e, self._hourly_rate)
                _learn(self.hourly, h1, frac, y, e, self._hourly_rate)
                r = self._dispersion_rate
                self.dispersion[0] += (y - mu) ** 2 - y - r * self.dispersion[0]
                self.dispersion[1] += mu * mu - r * self.dispersion[1]

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

        # Excursions (runs of positive evidence) feed the tail calibration;
        # each is scored once, on the bucket after its evidence peaks.
        score = 0.0
        self.tail.exposure += 1.0
        if stat < self.previous and self.previous > self.reported:
            score = self._score(self.previous)
            self.reported = self.previous
        self.previous = stat
        if stat > self.peak:
            self.peak = stat
        elif stat == 0.0 and self.peak > 0.0:
            self.tail.record(self.peak, self.buckets)
            self._recalibrate()
            self.peak = self.reported = 0.0

        if stat < self.threshold:
            return score, False
        observed, expected = self.observed_since[best], self.expected_since[best]
        if observed < self.config.min_count or observed < self.config.min_ratio * expected:
            return score, False
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
        if evidence >= self.threshold:
            return 1.0
        span = math.log(self._floor_rate / self._rate(self.threshold))
        return min(1.0, max(0.0, math.log(self._floor_rate / self._rate(evidence)) / span))

    def _recalibrate(self) -> None:
        self.threshold = max(self._model_threshold, self.tail.threshold(self._budget))

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
        self.peak = self.previous = self.reported = 0.0

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
        return {"version": 1, "config": asdict(self.config), "state": state}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detector:
        if data.get("version") != 1:
            raise ValueError(f"unknown detector state version {data.get('version')!r}")
        detector = cls(DetectorConfig(**data["config"]))
        state = dict(data["state"])
        for name in _STATE:
            setattr(detector, name, state[name])
        detector.last_ts = _parse(state["last_ts"])
        detector.onsets = [_parse(t) for t in state["onsets"]]
        detector.open_onset = _parse(state["open_onset"])
        for name, value in state["tail"].items():
            setattr(detector.tail, name, value)
        return detector


_STATE = (
    "buckets level daily weekday hourly dispersion cusum observed_since expected_since "
    "threshold peak previous reported open_observed open_expected open_buckets close_cusum"
).split()


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _learn(shape: list[list[float]], node: int, weight: float, y: float, expected: float,
           rate: float) -> None:
    keep = 1.0 - weight * rate
    shape[0][node] = shape[0][node] * keep + weight * y
    shape[1][node] = shape[1][node] * keep + weight * expected


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
            # Maximised log-likelihoods (censored terms included in the sums).
            self.pareto = n * math.log(alpha) - self.log_peaks > n * math.log(lam)
            self.shape = alpha if self.pareto else lam

    def rate(self, x: float) -> float:
        """Peaks per bucket at or above x, per the fit (0 without one)."""
        if self.uncensored < TAIL_MIN or x < TAIL_BASE:
            return 0.0
        if self.pareto:
            return self.rate_at_base * (x / TAIL_BASE) ** -self.shape
        return self.rate_at_base * math.exp(-self.shape * (x - TAIL_BASE))

    def threshold(self, budget: float) -> float:
        """Level peaked above at `budget` per bucket (0 without a fit)."""
        if self.uncensored < TAIL_MIN or self.rate_at_base <= budget:
            return 0.0
        if self.pareto:
            return TAIL_BASE * (self.rate_at_base / budget) ** (1.0 / self.shape)
        return TAIL_BASE + math.log(self.rate_at_base / budget) / self.shape
