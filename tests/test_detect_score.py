"""The anomaly score of `coordinator detect` (coordinator/detection/score.py)."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

from coordinator.detection.score import AnomalyScore
from coordinator.detection.detector import Detector
from tests.test_surge import DAY, poisson, run, stream

START = datetime(2024, 3, 4)
BUCKET = timedelta(minutes=5)


def scores(times: list[datetime], counts: list[float]) -> list[float]:
    """The score of each bucket, against the detector's own baseline."""
    scorer = AnomalyScore(300.0)
    return [scorer.observe(o.ts, o.count, o.expected) for o in run(times, counts)]


def flat(days: int, level: float = 5.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [float(poisson(rng, level)) for _ in range(days * DAY)]


def feed(counts: list[float], level: float = 5.0) -> list[float]:
    """Scores against a known, flat baseline."""
    scorer = AnomalyScore(300.0)
    return [scorer.observe(START + i * BUCKET, c, level) for i, c in enumerate(counts)]


@pytest.mark.parametrize(("level", "size"), [(0.3, None), (5.0, None), (60.0, None), (5.0, 3.0), (20.0, 5.0)])
def test_score_reads_the_same_at_any_volume(level: float, size: float | None) -> None:
    """Noise bursts score 1 about once in five days and 0.5 or more about once
    or twice a day, at any volume; a 12-sd spike scores 1 on the next bucket."""
    times, counts = stream(level, days=20, size=size, seed=1)
    spike = 15 * DAY + 150
    counts[spike] += 1 + 12 * math.sqrt(level * (1 + level / (size or math.inf)))
    got = scores(times, counts)
    assert all(s == 0.0 for s in got[:DAY])
    assert all(0.0 <= s <= 1.0 for s in got)
    assert got[spike + 1] == 1.0
    noise = got[5 * DAY:spike] + got[spike + DAY:]
    assert sum(s == 1.0 for s in noise) <= 5  # 14 days
    assert 8 <= sum(s >= 0.5 for s in noise) <= 40


def test_a_burst_is_scored_once_on_the_bucket_after_its_top() -> None:
    counts = flat(10)
    t = 8 * DAY
    counts[t : t + 4] = [20.0, 40.0, 60.0, 30.0]
    got = feed(counts)
    # The smoothed deviation tops out on the third bucket, falls on the fourth.
    assert got[t + 3] == 1.0
    assert [i for i in range(t - 2, t + 12) if got[i] > 0.0] == [t + 3]


def test_within_a_day_only_a_rarer_or_much_higher_burst_is_reported() -> None:
    counts = flat(12)
    t = 8 * DAY
    for at, extra in [(t, 40.0), (t + 12, 40.0), (t + 24, 160.0), (t + 2 * DAY, 40.0)]:
        counts[at] += extra
    got = feed(counts)
    assert got[t + 1] == 1.0
    assert got[t + 13] == 0.0  # the same burst an hour later: quiet
    assert got[t + 25] == 1.0  # one topping twice as high is not hidden
    # Two days on, a burst like those is reported again, but is no longer the
    # rarest of its record.
    assert 0.8 < got[t + 2 * DAY + 1] < 1.0


def test_gaps_are_aged_and_order_is_checked() -> None:
    scorer = AnomalyScore(300.0)
    scorer.observe(START, 3.0, 3.0)
    scorer.observe(START + 10 * BUCKET, 3.0, 3.0)
    assert scorer.buckets == 11
    with pytest.raises(ValueError):
        scorer.observe(START + 10 * BUCKET, 3.0, 3.0)


def test_detector_state_of_version_3_still_loads() -> None:
    """Version 3 also held the score's record (now here); the rest is read."""
    times, counts = stream(5.0, days=2)
    detector = Detector()
    for t, c in zip(times, counts):
        detector.observe(t, c)
    saved = detector.to_dict()
    old = {**saved, "version": 3, "state": {**saved["state"], "deviation": 0.3, "rarity": {"total": 1.0}}}
    assert Detector.from_dict(old).to_dict() == saved
