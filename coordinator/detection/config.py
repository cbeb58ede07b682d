"""What a stream's detector is asked to do: the candidate surge ratios, the
false-alarm budget turned into a CUSUM threshold, and the per-stream settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Candidate surge ratios; the first also defines "back to normal".
RATIOS = (1.5, 2.0, 3.0, 5.0, 10.0)
LOG_RATIOS = tuple(math.log(k) for k in RATIOS)

DAY = 86400.0
WEEK = 7 * DAY
THIRTY_DAYS = 30 * DAY
THRESHOLD_30_DAYS = 8.0  # nats for one false alarm in 8640 buckets; see threshold


def threshold(false_alarms_per_30_days: float, bucket_seconds: float) -> float:
    """Multi-CUSUM threshold (nats) for the false-alarm budget under the model.

    Simulating the multi-CUSUM on Poisson and negative-binomial streams with a
    known mean (bench/detect/calibrate.py) needs at most ~8 nats for a mean
    run length of 8640 buckets (30 days of 5 minutes), and ~1 nat more per
    e-fold of run length (as Wald's bound, ARL ~ e^h, has it).
    """
    run_length = THIRTY_DAYS / bucket_seconds / false_alarms_per_30_days
    return THRESHOLD_30_DAYS + math.log(run_length / 8640.0)


@dataclass(frozen=True)
class DetectorConfig:
    """Per-stream settings; the defaults are the production defaults."""

    bucket_seconds: float = 300.0
    false_alarms_per_30_days: float = 1.0
    min_count: float = 0.0  # playbook: least count over the surge so far
    min_ratio: float = 1.0  # playbook: least observed/expected over the surge
    warmup_seconds: float = DAY  # a young stream's time: overwhelming surges only
    # categories.yaml: the category's complaints per hour across regions, where a stream
    # without history starts (detection/prior.py).
    typical_per_hour: float | None = None
    # categories.yaml: the category's usual day, 24 relative hourly figures from 00:00 (the
    # prior's time of day; detection/prior.py's DEFAULT_DAY without).
    typical_day: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.bucket_seconds <= 0 or self.false_alarms_per_30_days <= 0:
            raise ValueError("bucket_seconds and false_alarms_per_30_days must be positive")
        if self.typical_day is not None:
            # Saved state holds it as a JSON list.
            object.__setattr__(self, "typical_day", tuple(float(f) for f in self.typical_day))
            if len(self.typical_day) != 24 or min(self.typical_day) <= 0:
                raise ValueError("typical_day must be 24 positive hourly figures")
