"""The tail of a stream's own evidence: how often its CUSUM excursions peak above a
level, fitted online, so that a stream burstier than the model raises its threshold
and keeps to the false-alarm budget."""

from __future__ import annotations

import math

from .config import DAY

# Tail calibration: CUSUM excursions peaking above TAIL_BASE nats are
# recorded; the fit needs TAIL_MIN of them and forgets over TAIL_MEMORY. A
# Pareto tail must beat the model's exponential one by TAIL_PARETO_PENALTY nats.
TAIL_BASE = 2.0
TAIL_MIN = 3.0
TAIL_MEMORY = 30 * DAY
TAIL_PARETO_PENALTY = 2.0


class Tail:
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

