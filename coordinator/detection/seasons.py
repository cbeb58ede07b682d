"""Where a bucket falls in the week, for the detector's seasonal baseline: the daily
profile nodes it lies between and its weekday."""

from __future__ import annotations

from datetime import datetime

# Daily profile nodes: 0-23 for weekdays, 24-47 for Saturdays and Sundays;
# by weekday and hour, the node and the next one (the next day's at 23).
FIRST_NODE = (0, 0, 0, 0, 0, 24, 24)
DAILY_NODES = tuple(
    tuple(
        (first + hour, first + hour + 1 if hour < 23 else FIRST_NODE[(day + 1) % 7])
        for hour in range(24)
    )
    for day, first in enumerate(FIRST_NODE)
)


def position(ts: datetime, bucket_seconds: float) -> tuple[float, int]:
    """Hour of the day at the bucket's centre, less half an hour (shape nodes
    sit mid-hour and are interpolated), and the weekday it falls on."""
    hours = (ts.hour * 3600 + ts.minute * 60 + ts.second + 0.5 * bucket_seconds) / 3600.0 - 0.5
    day = ts.weekday()
    if hours >= 24.0:
        return hours - 24.0, (day + 1) % 7
    if hours < 0.0:
        return hours + 24.0, (day - 1) % 7
    return hours, day
