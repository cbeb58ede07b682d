"""The anomaly score at quiet hours: the guard on any change to it.

    .venv/bin/python -m bench.detect.quiet [--streams 80] [--seed 7]

NAB's labels follow a burst's absolute size, so a score judged against a flatter
baseline (a mean over days, no time of day) gains on NAB. It loses the surges of the
night, which stay under the day's mean however large for the hour: the ones a complaint
stream must not miss. So each variant of coordinator/detection/score.py is also run
over synthetic streams (synthetic.make_stream, four surges each) with the detector's
baseline, and a surge counts as found when the score reaches 1 between its first
bucket and its last; the quiet-hour surges are those starting where the true baseline
is under half the stream's mean.
"""

from __future__ import annotations

import argparse

import numpy as np

from coordinator.detection.detector import Detector
from coordinator.detection.score import AnomalyScore

from . import synthetic


def found(streams: int, seed: int) -> tuple[int, int, int, int]:
    """Quiet-hour surges scored 1, quiet-hour surges, all surges scored 1, all surges."""
    rng = np.random.default_rng(seed)
    quiet_hit = quiet = hit = total = 0
    for _ in range(streams):
        stream = synthetic.make_stream(rng)
        detector, scorer = Detector(), AnomalyScore(float(synthetic.BUCKET))
        scores = np.array([scorer.observe(t, y, detector.observe(t, y).expected)
                           for t, y in zip(synthetic.TIMESTAMPS, stream.counts.tolist())])
        for surge in stream.surges:
            scored = bool(scores[surge.onset:surge.end + 1].max() >= 1.0)
            hit += scored
            total += 1
            if stream.baseline[surge.onset] < 0.5 * stream.level:
                quiet_hit += scored
                quiet += 1
    return quiet_hit, quiet, hit, total


def lines(streams: int, seed: int) -> list[str]:
    quiet_hit, quiet, hit, total = found(streams, seed)
    return [f"The anomaly score on {streams} synthetic streams (seed {seed}; bench/detect/quiet.py): "
            f"{quiet_hit} of {quiet} quiet-hour surges ({quiet_hit / quiet:.0%}) and {hit} of {total} "
            f"surges in all ({hit / total:.0%}) reach a score of 1."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print("\n".join(lines(args.streams, args.seed)))


if __name__ == "__main__":
    main()
