"""Random draws for synthetic traffic (the demo's history, a drill's surge, the
detector's test streams): one sampler, seeded by its caller so a run can be repeated."""

from __future__ import annotations

import math
import random


def poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw by inversion (one uniform per draw) for the small rates of
    synthetic traffic, a normal approximation above 50 (the terms underflow there)."""
    if rate > 50:
        return max(0, round(rng.gauss(rate, math.sqrt(rate))))
    u, k, p = rng.random(), 0, math.exp(-rate)
    cumulative = p
    while u > cumulative:
        k += 1
        p *= rate / k
        cumulative += p
    return k
