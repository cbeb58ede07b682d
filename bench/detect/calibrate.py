"""Where `coordinator.detection.detector.threshold` comes from: the multi-CUSUM's threshold
for a mean run length, by simulation on streams whose mean is known.

For each mean count per bucket and negative-binomial dispersion, simulate the
multi-CUSUM (the detector's ratios and log-likelihood ratios) on many
replicate streams, record each one's running maximum, and read the threshold
whose first-passage time has the wanted mean (first passage is close to
exponential at these levels, so mean = -T / log P(max_T < h)).

    python -m bench.detect.calibrate            # prints the table
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from coordinator.detection.config import RATIOS, threshold

MEANS = (0.02, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DISPERSIONS = (0.0, 0.05, 0.2, 1.0)
RUN_LENGTHS = (2016.0, 8640.0, 43200.0)  # 1 week, 30 days, 150 days of 5-minute buckets


def running_max(rng: np.random.Generator, mean: float, phi: float, replicates: int,
                checkpoints: list[int]) -> list[np.ndarray]:
    """Each replicate's running maximum at each checkpoint (in buckets)."""
    k = np.asarray(RATIOS)
    if phi > 0:
        c = -np.log1p((k - 1.0) * mean * phi / (1.0 + mean * phi))
        a, b = np.log(k) + c, c / phi
    else:
        a, b = np.log(k), -(k - 1.0) * mean
    s = np.zeros((replicates, len(k)))
    peak = np.zeros(replicates)
    out = []
    steps = max(checkpoints)
    chunk = 1000
    for start in range(0, steps, chunk):
        n = min(chunk, steps - start)
        if phi > 0:
            y = rng.poisson(rng.gamma(1.0 / phi, mean * phi, size=(n, replicates)))
        else:
            y = rng.poisson(mean, size=(n, replicates))
        for t in range(n):
            s += y[t][:, None] * a + b
            np.maximum(s, 0.0, out=s)
            np.maximum(peak, s.max(axis=1), out=peak)
            if start + t + 1 in checkpoints:
                out.append(peak.copy())
    return out


def threshold_for(peak: np.ndarray, steps: int, run_length: float) -> float:
    """h such that P(max over `steps` < h) = exp(-steps / run_length)."""
    return float(np.quantile(peak, math.exp(-steps / run_length)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("ratios", RATIOS)
    print("mean  phi   " + "  ".join(f"h(ARL={r:g})" for r in RUN_LENGTHS) + "  formula")
    for phi in DISPERSIONS:
        for mean in MEANS:
            steps = [int(3 * r) for r in RUN_LENGTHS[:2]]
            peaks = running_max(rng, mean, phi, args.replicates, steps)
            hs = [threshold_for(p, n, r) for p, n, r in zip(peaks, steps, RUN_LENGTHS)]
            # The longest run length needs a longer simulation; extrapolate
            # with the slope between the first two.
            slope = (hs[1] - hs[0]) / math.log(RUN_LENGTHS[1] / RUN_LENGTHS[0])
            hs.append(hs[1] + slope * math.log(RUN_LENGTHS[2] / RUN_LENGTHS[1]))
            cells = "  ".join(f"{h:11.2f}" for h in hs)
            formula = "  ".join(f"{threshold(8640.0 / r, 300.0):.2f}" for r in RUN_LENGTHS)
            print(f"{mean:5g} {phi:4g}  {cells}  {formula}", flush=True)


if __name__ == "__main__":
    main()
