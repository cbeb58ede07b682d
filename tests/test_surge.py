"""The surge detector on small seeded streams of 5-minute buckets."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

import pytest

from coordinator.sampling import poisson
from coordinator.detection.config import DetectorConfig, threshold
from coordinator.detection.detector import Detector, Observation

START = datetime(2024, 3, 4)  # a Monday
BUCKET = timedelta(minutes=5)
DAY = 288  # buckets



def stream(
    level: float,
    days: int = 10,
    *,
    seed: int = 1,
    size: float | None = None,
    surge: tuple[int, int, float] | None = None,
    weekend_shift: float = 0.0,
) -> tuple[list[datetime], list[float]]:
    """Daily-seasonal counts; negative binomial with `size` (else Poisson);
    `surge` = (first bucket, buckets, ratio); the daily cycle runs
    `weekend_shift` hours later on Saturdays and Sundays."""
    rng = random.Random(seed)
    times, counts = [], []
    for i in range(days * DAY):
        hour = (i % DAY) / 12
        if (START + i * BUCKET).weekday() >= 5:
            hour -= weekend_shift
        mean = level * (1.0 + 0.6 * math.sin(2 * math.pi * (hour - 9) / 24))
        if surge and surge[0] <= i < surge[0] + surge[1]:
            mean *= surge[2]
        if size is not None:
            mean = rng.gammavariate(size, mean / size)
        times.append(START + i * BUCKET)
        counts.append(float(poisson(rng, mean)))
    return times, counts


def run(times: list[datetime], counts: list[float], config: DetectorConfig | None = None
        ) -> list[Observation]:
    detector = Detector(config)
    return [detector.observe(t, c) for t, c in zip(times, counts)]


def alarms(observations: list[Observation]) -> list[int]:
    return [i for i, o in enumerate(observations) if o.alarm]


ONSET = 8 * DAY + 10 * 12  # day 8, 10:00


@pytest.mark.parametrize(
    ("level", "ratio", "size", "within"),
    [
        (60.0, 2.0, None, 3),
        (20.0, 3.0, None, 2),
        (5.0, 2.0, None, 12),
        (2.0, 3.0, None, 8),
        (0.5, 5.0, None, 12),
        (0.2, 10.0, None, 12),
        (20.0, 3.0, 10.0, 6),
    ],
)
def test_step_surge_is_caught_within_n_buckets(level: float, ratio: float, size: float | None,
                                                within: int) -> None:
    obs = run(*stream(level, size=size, surge=(ONSET, 48, ratio)))
    assert alarms(obs)[:1] and ONSET <= alarms(obs)[0] < ONSET + within
    assert not [i for i in alarms(obs) if i < ONSET]


@pytest.mark.parametrize(
    ("level", "size"),
    [
        (0.2, None),  # sparse
        (1.0, None),
        (5.0, None),
        (60.0, None),
        (5.0, 3.0),  # overdispersed: negative binomial
        (20.0, 5.0),
        (60.0, 10.0),
    ],
)
def test_surge_free_streams_keep_to_the_false_alarm_budget(level: float, size: float | None
                                                          ) -> None:
    """Six 15-day streams are 3 x 30 days: at most 3 false alarms in all."""
    found = 0
    for seed in range(1, 7):
        obs = run(*stream(level, days=15, size=size, seed=seed))
        assert all(0.0 <= o.score <= 1.0 for o in obs)
        found += len(alarms(obs))
    assert found <= 3
    if size is None:  # Poisson is what the model expects: a third of the budget at most
        assert found <= 1


def test_weekends_running_later_than_weekdays_keep_to_the_budget() -> None:
    """Weekends have their own daily profile: a daily cycle three hours later on
    Saturdays and Sundays is learned, not alarmed on every weekend evening (one
    profile for all days, corrected hour by hour, gave 8 alarms here)."""
    found = 0
    for seed in range(1, 7):  # 6 x 28 days: a budget of 5.6 false alarms
        times, counts = stream(5.0, days=28, seed=seed, weekend_shift=3.0)
        found += len(alarms(run(times, counts)))
    assert found <= 3


def test_during_the_warm_up_only_an_overwhelming_surge_alarms() -> None:
    """A young stream (its first day) alarms on a surge that no baseline it could have
    explains, once, and not on one it may yet have to learn is normal."""
    times, counts = stream(5.0, days=3)
    loud = counts[:100] + [200.0] * 30 + counts[130:]
    found = alarms(run(times, loud))
    assert found[:1] == [100] and not [i for i in found[1:] if i < DAY]
    doubled = counts[:100] + [2.0 * c for c in counts[100:130]] + counts[130:]
    assert not [i for i in alarms(run(times, doubled)) if i < DAY]


def test_surge_is_not_absorbed_and_alarms_once() -> None:
    length = 8 * 12  # an 8-hour surge of x3
    times, counts = stream(10.0, days=12, surge=(ONSET, length, 3.0))
    obs = run(times, counts)
    assert len(alarms(obs)) == 1
    first = alarms(obs)[0]
    assert all(o.surge_open for o in obs[first:ONSET + length])
    # The baseline during the surge is still last day's, not the surge.
    for i in range(first, ONSET + length, 12):
        assert obs[i].expected == pytest.approx(obs[i - DAY].expected, rel=0.25)
    last = obs[ONSET + length - 1]
    assert last.ratio > 2.2 and last.onset is not None and last.onset <= times[ONSET + 2]
    # Back to normal: the surge closes and the detector re-arms.
    assert not obs[ONSET + length + 6 * 12].surge_open


def test_alarm_reports_the_surge() -> None:
    times, counts = stream(20.0, surge=(ONSET, 48, 4.0))
    obs = run(times, counts)
    o = obs[alarms(obs)[0]]
    assert o.alarm and o.surge_open and o.score == 1.0
    assert o.onset is not None and times[ONSET - 12] <= o.onset <= o.ts
    assert o.observed_total >= o.count
    assert o.ratio == pytest.approx(o.observed_total / o.expected_total)
    assert o.ratio > 2.5


def test_a_second_surge_alarms_again() -> None:
    times, counts = stream(10.0, days=12, surge=(ONSET, 24, 4.0))
    _, later = stream(10.0, days=12, surge=(ONSET + 2 * DAY, 24, 4.0))
    counts[ONSET + DAY:] = later[ONSET + DAY:]
    found = alarms(run(times, counts))
    assert len(found) == 2 and found[1] >= ONSET + 2 * DAY


@pytest.mark.parametrize(
    ("config", "caught"),
    [
        (DetectorConfig(), True),
        (DetectorConfig(min_count=10_000), False),
        (DetectorConfig(min_ratio=20.0), False),
    ],
)
def test_playbook_minimums_apply_on_top(config: DetectorConfig, caught: bool) -> None:
    obs = run(*stream(5.0, surge=(ONSET, 24, 4.0)), config)
    assert bool(alarms(obs)) is caught


def test_gaps_are_skipped_not_misread() -> None:
    times, counts = stream(5.0, days=12, surge=(ONSET, 24, 5.0))
    rng = random.Random(3)
    kept = [i for i in range(len(times)) if rng.random() > 0.1 or ONSET <= i < ONSET + 24]
    obs = run([times[i] for i in kept], [counts[i] for i in kept])
    found = [kept[i] for i in alarms(obs)]
    assert len(found) == 1 and ONSET <= found[0] < ONSET + 12


def test_time_must_move_forward() -> None:
    detector = Detector()
    detector.observe(START, 1.0)
    with pytest.raises(ValueError):
        detector.observe(START, 1.0)


@pytest.mark.parametrize("split", [5, DAY, DAY + 1, ONSET - 3, ONSET + 5, ONSET + 52, ONSET + 66])
def test_restart_from_saved_state_continues_exactly(split: int) -> None:
    times, counts = stream(3.0, surge=(ONSET, 48, 3.0), size=8.0)
    uninterrupted = Detector()
    whole = [uninterrupted.observe(t, c) for t, c in zip(times, counts)]
    first = Detector()
    before = [first.observe(t, c) for t, c in zip(times[:split], counts[:split])]
    second = Detector.from_dict(json.loads(json.dumps(first.to_dict())))
    after = [second.observe(t, c) for t, c in zip(times[split:], counts[split:])]
    assert before + after == whole
    assert second.to_dict() == uninterrupted.to_dict()
    assert alarms(whole)


def test_state_with_one_daily_profile_still_loads() -> None:
    """States of versions 3 and 4 had one daily profile for all days: it
    becomes the weekdays' and the weekends', so weekdays read as before."""
    times, counts = stream(5.0, days=9)
    detector = Detector()
    for t, c in zip(times[:-DAY], counts[:-DAY]):
        detector.observe(t, c)
    saved = json.loads(json.dumps(detector.to_dict()))
    weekdays = [nodes[:24] for nodes in saved["state"]["daily"]]
    old = {**saved, "version": 4, "state": {**saved["state"], "daily": weekdays}}
    restored = Detector.from_dict(old)
    assert restored.baseline.daily == [nodes + nodes for nodes in weekdays]
    assert times[-DAY].weekday() < 5
    assert restored.observe(times[-DAY], counts[-DAY]) == detector.observe(times[-DAY], counts[-DAY])


def test_bursty_stream_raises_its_own_threshold() -> None:
    """Bursts far heavier-tailed than the model move the threshold up, so a
    stream that is always bursting does not alarm on every burst."""
    times, counts = stream(10.0, days=30, seed=4)
    rng = random.Random(5)
    for day in range(30):
        for _ in range(3):
            i = day * DAY + rng.randrange(DAY - 3)
            counts[i] += 10.0 * rng.paretovariate(1.0)
    detector = Detector()
    obs = [detector.observe(t, c) for t, c in zip(times, counts)]
    assert detector.threshold > 2 * threshold(1.0, 300.0)
    assert len(alarms(obs[10 * DAY:])) <= 4


@pytest.mark.parametrize(
    ("budget", "bucket", "expected"),
    [(1.0, 300.0, 8.0), (1.0, 3600.0, 8.0 - math.log(12)), (0.5, 300.0, 8.0 + math.log(2))],
)
def test_threshold_follows_the_false_alarm_budget(budget: float, bucket: float,
                                                  expected: float) -> None:
    assert threshold(budget, bucket) == pytest.approx(expected)
