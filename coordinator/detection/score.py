"""The anomaly score of `coordinator detect`: how rare each burst of a stream
is in the stream's own record of bursts. Pure, no I/O, no clock.

Deviation: each bucket's Anscombe residual against the detector's baseline,
sqrt(count + 3/8) - sqrt(expected + 3/8) (sd ~1/2 for Poisson counts at any
mean), smoothed with weight 1/2 on the newest bucket so that a shift over a
few buckets counts as much as a spike.

Bursts: each rise of the deviation is one burst, scored once, on the bucket
after it tops out (within one excursion above the baseline, only a top higher
than the last one is a new burst). Its score is its rarity among the stream's
bursts: -log of the share of the record's buckets (discounted over
RECORD_HALF_LIFE) that saw a burst at least as high, over -log of one burst in
RARE. 1 is a burst topped at most once in five days; 0.5 one topped about
every three hours. Counting bursts, not buckets, is what makes the score mean
the same on a stream whose bursts are single-bucket spikes as on one whose
bursts last hours. The record starts after WARMUP (while the baseline is
still being learnt its deviations say little); while it is younger than
RARE, the highest burst of the record so far scores 1 (a record of less
than WARMUP is read as one of WARMUP, so that its first bursts are not).

Quiet period: within QUIET of a reported burst only a rarer one, or one
topping ESCALATION times as high, is reported, so that one news event whose
volume comes in several waves is reported once, but a surge that follows a
burst which already scored 1 is not hidden by it.

Everything is learnt from the stream's past buckets only; no score during
the first WARMUP.
"""

from __future__ import annotations

import math
from datetime import datetime

DAY = 86400.0

DEVIATION_WEIGHT = 0.5
RECORD_HALF_LIFE = 10 * DAY
RARE = 5 * DAY  # a burst topped at most once in this long scores 1
QUIET = DAY
ESCALATION = 2.0  # a burst topping this many times as high is reported in QUIET
WARMUP = DAY


class AnomalyScore:
    """Online anomaly score of one stream; feed it buckets in time order with
    the baseline's expected count for each (`surge.Observation.expected`)."""

    def __init__(self, bucket_seconds: float) -> None:
        self.bucket_seconds = bucket_seconds
        self._warmup = WARMUP / bucket_seconds
        self._rare = RARE / bucket_seconds
        self._quiet = QUIET / bucket_seconds
        self.last_ts: datetime | None = None
        self.buckets = 0.0  # history, gaps included
        self.deviation = 0.0
        self.scored_top = 0.0  # the last top scored in this excursion
        self.last_report = 0.0  # score and top of the last burst reported ...
        self.last_top = 0.0
        self.since_report = math.inf  # ... and buckets since
        self.record = _Record(bucket_seconds / RECORD_HALF_LIFE)

    def observe(self, ts: datetime, count: float, expected: float) -> float:
        """The score of this bucket: that of the burst that topped out on the
        bucket before, if it is reported, else 0."""
        steps = 1
        if self.last_ts is not None:
            steps = round((ts - self.last_ts).total_seconds() / self.bucket_seconds)
            if steps < 1:
                raise ValueError(f"bucket {ts} does not follow {self.last_ts}")
        self.last_ts = ts
        self.buckets += steps
        self.since_report += steps
        learning = self.buckets <= self._warmup
        if not learning:
            self.record.age(steps)

        previous = self.deviation
        deviation = previous + DEVIATION_WEIGHT * (
            math.sqrt(count + 0.375) - math.sqrt(expected + 0.375) - previous
        )
        self.deviation = deviation
        if deviation >= previous or previous <= self.scored_top:
            if deviation <= 0.0:
                self.scored_top = 0.0
            return 0.0
        # The deviation fell: the bucket before was the top of a burst.
        self.scored_top = previous if deviation > 0.0 else 0.0
        if learning:
            return 0.0
        score = self.record.rarity(previous, self._warmup, self._rare)
        if score <= 0.0 or (
            self.since_report <= self._quiet
            and score <= self.last_report
            and previous < ESCALATION * self.last_top
        ):
            return 0.0
        self.last_report = score
        self.last_top = previous
        self.since_report = 0.0
        return score


class _Record:
    """A stream's bursts: how high each topped out, against the buckets
    watched, both discounted (each new entry weighs more than the last).

    Tops fall in bins a constant ratio apart (BIN_LOW up to ~1000 in
    Anscombe units), kept in a Fenwick tree so that adding one and weighing
    those at least as high both take log(bins) steps.
    """

    BINS = 256
    BIN_LOW = 0.1
    BIN_LOG_STEP = math.log(10_000.0) / (BINS - 2)

    def __init__(self, forget: float) -> None:
        self.growth = 2.0 ** forget  # weight of each new bucket over the last
        self.tree = [0.0] * (self.BINS + 1)  # bursts by top, cumulative
        self.bins = [0.0] * self.BINS  # bursts by top
        self.total = 0.0  # bursts
        self.exposure = 0.0  # buckets watched
        self.weight = 1.0

    def age(self, steps: int) -> None:
        """One more bucket watched, `steps` buckets after the last one."""
        w = self.weight * self.growth ** steps
        if w > 1e100:
            self.tree = [v / w for v in self.tree]
            self.bins = [v / w for v in self.bins]
            self.total /= w
            self.exposure /= w
            w = 1.0
        self.weight = w
        self.exposure += w

    def rarity(self, top: float, young: float, rare: float) -> float:
        """Rarity of a burst topping at `top` (> 0), which then joins the
        record: 1 for one topped at most once in `rare` buckets; a record of
        fewer buckets is read as one of `young` buckets at least, so that a
        record of a few buckets does not make every burst rare."""
        tree, w = self.tree, self.weight
        # Bin k, and where in it the top falls (0 at its low end, 1 at the high).
        if top <= self.BIN_LOW:
            k, within = 0, 0.0
        else:
            x = 1.0 + math.log(top / self.BIN_LOW) / self.BIN_LOG_STEP
            k = min(self.BINS - 1, int(x))
            within = min(1.0, x - k)
        below, i = 0.0, k
        while i > 0:
            below += tree[i]
            i &= i - 1
        # Tops in the same bin count as at least as high in proportion.
        above = self.total - below - within * self.bins[k]
        # The burst itself counts once: a new extreme is rare, not infinitely so.
        rarity = math.log((self.exposure + w) / (above + w))
        span = math.log(min(max(self.exposure / w, young) + 1.0, rare))
        self.total += w
        self.bins[k] += w
        i = k + 1
        while i <= self.BINS:
            tree[i] += w
            i += i & -i
        return min(1.0, rarity / span) if span > 0.0 else 0.0
