"""A stream's baseline: the count expected in a bucket and how sure that is. Pure.

Expected count = level x daily profile x weekday factor x hour-of-week correction.
There is one daily profile for weekdays and one for weekends (later mornings and
evenings are the rule there, and a profile shared with weekdays is wrong on both); the
hour-of-week correction does the rest where a stream has the counts for it. Each part
is a discounted ratio of observed to expected counts, shrunk while data is scarce
towards 1 (the daily profile: towards prior.DEFAULT_DAY, so that a sparse stream's
nights start as nights), and learned from winsorised counts. Counts are negative binomial around it,
with a dispersion learned online and inflated by the baseline's own uncertainty, so
that a young or sparse stream does not alarm on noise.

A young stream may start from a prior (prior.py): its level enters the level's sums
as pseudo-counts that fade with the level's memory, and a borrowed daily and weekday
shape enters the shapes' sums as pseudo-counts too (a guessed day, the configured
or default prior's, as a weaker starting point the stream's counts soon outweigh).
"""

from __future__ import annotations

import math

from .config import DAY, WEEK
from .prior import DEFAULT_DAY, Prior, day_shape
from .seasons import DAILY_NODES

# Memories of the baseline's parts: the level follows trend and day-to-day
# swings, the shapes change slowly. A young stream's level and daily profile learn with
# the shorter memories (a prior that was off is put right within hours); after its
# first day the longer ones absorb less of a slow surge (bench/detect/README.md).
LEVEL_MEMORY = DAY
DAILY_MEMORY = 14 * DAY
MATURE_LEVEL_MEMORY = 2 * DAY
MATURE_DAILY_MEMORY = 28 * DAY
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
YOUNG_DISPERSION = 0.1  # negative binomial of size 10

# Counts teach the baseline only within expected -/+ CLIP_SD sd (+ CLIP_COUNTS), the
# sd that of Poisson counts and of the level's uncertainty beyond a gamma shape of
# CLIP_TRUST: a prior at least that sure is trusted to hold a surge back, a vaguer one
# (the default) lets the first counts set the level; the dispersion learns up to
# DISPERSION_CLIP_SD of its own sd.
CLIP_SD = 3.5
CLIP_TRUST = 2.0
CLIP_COUNTS = 2.0
DISPERSION_CLIP_SD = 3.0

# How much a borrowed shape counts, in pseudo-counts per node: a region's day looks
# like its category's, give or take ~20% an hour.
BORROWED_DAILY = 20.0
BORROWED_WEEKDAY = 40.0
# A guessed day (prior.DEFAULT_DAY or categories.yaml's typical_day) counts for less: a
# starting point the stream's own counts soon outweigh.
GUESSED_DAILY = 5.0

Parts = tuple[float, float, float, float, float]  # expected, profile, daily, weekday, hourly factors


class Baseline:
    """The expected count of a bucket (`expect`), its relative variance (`spread`), and
    learning from a bucket's count (`learn`)."""

    def __init__(self, bucket_seconds: float) -> None:
        w = self._bucket_seconds = bucket_seconds
        # Forgetting per unit of weight: each node of a shape gets 1/n of the buckets.
        self._level_rate = w / LEVEL_MEMORY
        self._daily_rate = 24 * w / DAILY_MEMORY
        self._weekday_rate = 7 * w / WEEKLY_MEMORY
        self._hourly_rate = 168 * w / WEEKLY_MEMORY
        self._dispersion_rate = w / DISPERSION_MEMORY
        # The daily profile's pseudo-counts: DAILY_PRIOR counts at the default day's factor,
        # not a flat day's, so that a sparse stream's night nodes start from a night.
        self._daily_seen = [DAILY_PRIOR * g for g in day_shape(DEFAULT_DAY)[0]]
        self.level = [0.0, 0.0]  # discounted counts, discounted profile
        self.daily = [[0.0] * 48, [0.0] * 48]  # discounted observed, expected; see DAILY_NODES
        self.weekday = [[0.0] * 7, [0.0] * 7]
        self.hourly = [[0.0] * 168, [0.0] * 168]
        self.dispersion = [0.0, 0.0]  # discounted excess variance, squared mean
        self.history: list[tuple[float, float, int]] = []  # the warm-up, for refit
        # The shapes a prior lent, until the refit at the end of the warm-up starts from them.
        self.borrowed: tuple[list[float], list[float]] | None = None

    def mature(self) -> None:
        """The end of the first day: the level and the daily profile's longer memories."""
        self._level_rate = self._bucket_seconds / MATURE_LEVEL_MEMORY
        self._daily_rate = 24 * self._bucket_seconds / MATURE_DAILY_MEMORY

    def start_from(self, prior: Prior) -> None:
        """A new stream's starting point. The level's sums get pseudo-counts that make
        the expected level `prior.per_bucket` with a gamma shape of `prior.strength`
        (LEVEL_PRIOR and its one bucket of exposure included), fading with the level's
        memory; a borrowed shape gets pseudo-counts that keep its factors. A guessed day
        (a configured or default prior's) is only where the daily profile starts: it
        learns from the first bucket on, as the stream's own counts show its day."""
        self.level = [prior.strength - LEVEL_PRIOR, prior.strength / prior.per_bucket - 1.0]
        if prior.daily is not None and prior.weekday is not None:
            if prior.source == "streams":
                self.borrowed = (list(prior.daily), list(prior.weekday))
                self._lend(self.borrowed)
            else:
                self._lend((list(prior.daily), list(prior.weekday)), GUESSED_DAILY, 0.0)

    def _lend(self, shapes: tuple[list[float], list[float]], daily_counts: float = BORROWED_DAILY,
              weekday_counts: float = BORROWED_WEEKDAY) -> None:
        daily, weekday = shapes
        # (f (W + P) - P + P) / (W + P) = f: the factor as borrowed, with W pseudo-counts.
        self.daily = [[f * (daily_counts + DAILY_PRIOR) - g for f, g in zip(daily, self._daily_seen)],
                      [daily_counts] * 48]
        self.weekday = [[f * (weekday_counts + WEEKDAY_PRIOR) - WEEKDAY_PRIOR for f in weekday],
                        [weekday_counts] * 7]

    def per_bucket(self) -> float:
        """The level: the expected count of a bucket at an average hour."""
        return (self.level[0] + LEVEL_PRIOR) / (self.level[1] + 1.0)

    def lend(self) -> tuple[float, list[float], list[float]]:
        """What a young stream borrows: the mean count of a bucket over the week, and the
        daily (48 nodes) and weekday (7) factors scaled to average 1 over the week, so
        that levels of streams whose shapes average differently compare."""
        d_obs, d_exp = self.daily
        w_obs, w_exp = self.weekday
        daily = [(o + g) / (e + DAILY_PRIOR) for o, e, g in zip(d_obs, d_exp, self._daily_seen)]
        weekday = [(o + WEEKDAY_PRIOR) / (e + WEEKDAY_PRIOR) for o, e in zip(w_obs, w_exp)]
        mean = sum(daily[DAILY_NODES[d][h][0]] * weekday[d] for d in range(7) for h in range(24)) / 168.0
        return self.per_bucket() * mean, [f / mean for f in daily], weekday

    def expect(self, hours: float, day: int) -> Parts:
        """Expected count, profile and its daily, weekday and hourly factors."""
        d0 = int(hours)
        frac = hours - d0
        n0, n1 = DAILY_NODES[day][d0]
        h0 = day * 24 + d0
        h1 = (h0 + 1) % 168
        d_obs, d_exp = self.daily
        h_obs, h_exp = self.hourly
        seen = self._daily_seen
        f_daily = (1.0 - frac) * (d_obs[n0] + seen[n0]) / (d_exp[n0] + DAILY_PRIOR) + frac * (
            d_obs[n1] + seen[n1]
        ) / (d_exp[n1] + DAILY_PRIOR)
        f_weekday = (self.weekday[0][day] + WEEKDAY_PRIOR) / (self.weekday[1][day] + WEEKDAY_PRIOR)
        f_hourly = (1.0 - frac) * (h_obs[h0] + HOURLY_PRIOR) / (h_exp[h0] + HOURLY_PRIOR) + frac * (
            h_obs[h1] + HOURLY_PRIOR
        ) / (h_exp[h1] + HOURLY_PRIOR)
        profile = f_daily * f_weekday * f_hourly
        mu = (self.level[0] + LEVEL_PRIOR) / (self.level[1] + 1.0) * profile + 1e-9
        return mu, profile, f_daily, f_weekday, f_hourly

    def spread(self, hours: float, day: int, young: bool = False) -> float:
        """Negative-binomial 1/size of a count around the expected one: the learned
        dispersion (a young stream's at least that of a fairly bursty stream) plus the
        relative variance of each part of the estimate."""
        d0 = int(hours)
        return (
            (max(YOUNG_DISPERSION, self.dispersion_now()) if young else self.dispersion_now())
            + 1.0 / (self.level[0] + LEVEL_PRIOR)
            + 1.0 / (self.daily[0][DAILY_NODES[day][d0][0]] + DAILY_PRIOR)
            + 1.0 / (self.weekday[0][day] + WEEKDAY_PRIOR)
            + 1.0 / (self.hourly[0][day * 24 + d0] + HOURLY_PRIOR)
        )

    def dispersion_now(self) -> float:
        return (max(self.dispersion[0], 0.0) + DISPERSION_PRIOR * DISPERSION_PRIOR_WEIGHT) / (
            self.dispersion[1] + DISPERSION_PRIOR_WEIGHT
        )

    def learn(self, count: float, hours: float, day: int, parts: Parts, dispersion: float,
              level: bool = True, young: bool = False, calm: bool = True) -> None:
        """Learn from a bucket's count. A `young` stream keeps a borrowed shape; its
        dispersion learns only from `calm` buckets (no evidence of a surge building):
        a busy stream's first surge bucket would teach it that surges are noise."""
        mu, profile, f_daily, f_weekday, f_hourly = parts
        # Winsorised, so that a burst teaches the baseline little.
        sd = math.sqrt(mu * (1.0 + mu * max(0.0, 1.0 / (self.level[0] + LEVEL_PRIOR) - 1.0 / CLIP_TRUST)))
        y = min(max(count, mu - CLIP_SD * sd), mu + CLIP_SD * sd + CLIP_COUNTS)
        if level:
            before = self.per_bucket()
            r = self._level_rate
            self.level[0] += y - r * self.level[0]
            self.level[1] += profile - r * self.level[1]
            # The shapes learn against the level this count has just corrected: else a
            # young stream's first buckets, whose level is still the prior's, would
            # teach the shapes the prior's error.
            mu *= self.per_bucket() / before
        # A young stream keeps a borrowed shape for its first day: a count teaches the
        # level, the refit at the end of the day the shapes.
        if not (young and self.borrowed is not None):
            self._learn_shapes(y, hours, day, mu, f_daily, f_weekday, f_hourly)
        # The dispersion needs the tail the level's winsorising cuts off;
        # it is winsorised too, but on its own (negative-binomial) scale.
        if not calm:
            return
        sd = math.sqrt(mu * (1.0 + dispersion * mu))
        y = min(count, mu + DISPERSION_CLIP_SD * sd + CLIP_COUNTS)
        r = self._dispersion_rate
        self.dispersion[0] += (y - mu) ** 2 - y - r * self.dispersion[0]
        self.dispersion[1] += mu * mu - r * self.dispersion[1]

    def _learn_shapes(self, y: float, hours: float, day: int, mu: float, f_daily: float, f_weekday: float,
                      f_hourly: float) -> None:
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

    def refit(self) -> None:
        """Relearn the shapes of the warm-up against its final level.

        Learnt online from nothing, a shape absorbs the level's errors of the
        first hours (the night looks like the norm before the day has been
        seen); one more pass over the warm-up with the level held removes that.
        """
        self.daily = [[0.0] * 48, [0.0] * 48]
        self.weekday = [[0.0] * 7, [0.0] * 7]
        self.hourly = [[0.0] * 168, [0.0] * 168]
        self.dispersion = [0.0, 0.0]
        if self.borrowed is not None:
            self._lend(self.borrowed)
        for y, h, d in self.history:
            self.learn(y, h, d, self.expect(h, d), self.dispersion_now(), level=False)
        self.history = []
        self.borrowed = None

    def skip(self, missing: int) -> None:
        """Age the level over missing buckets; nothing was observed in them."""
        keep = (1.0 - self._level_rate) ** missing
        self.level[0] *= keep
        self.level[1] *= keep

    def scale_level(self, factor: float) -> None:
        """Take a level `factor` times the current one as the new normal."""
        self.level[0] *= factor
