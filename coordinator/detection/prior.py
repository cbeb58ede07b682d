"""Where a stream with no history of its own starts: a prior for its level, read from
what is known. Pure.

In order: the category-wide stream (its level, and its daily and weekday shape) scaled
by the region's share; else the sibling regions of the same category; else the
deployment's figure for the category (`typical_per_hour` in categories.yaml), scaled by
the region's share; else a built-in default. The region's share is what the region
holds of the categories where both it and the category-wide stream are known; else an
equal share among the regions known.

A prior read from streams borrows their daily and weekday shape. The configured figure
and the default have a time of day too, so that a night bucket is not judged against a
daytime mean: the category's `typical_day` in categories.yaml (24 relative hourly
figures, local time), else DEFAULT_DAY, a customer-service day.

The prior is a gamma distribution of the level: `per_bucket` its mean, `strength` its
shape (1 / strength is its relative variance). Each source has the strength its errors
call for: bench/detect/young.py seeds young streams from siblings whose level differs by
up to x3 and holds them to the false-alarm budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence


# How sure each source is (gamma shape of the level). A share read from other
# categories is better than an equal split; a configured figure is a guess at the
# category's volume; the default knows nothing but the scale of a customer-service
# stream, so only an overwhelming count stands out against it.
STRENGTH_SHARE = 3.0
STRENGTH_SIBLINGS = 3.0
STRENGTH_EQUAL_SPLIT = 2.0
STRENGTH_CONFIG = 2.0
DEFAULT_PER_BUCKET = 10.0
DEFAULT_STRENGTH = 0.5

# A customer-service day, hour by hour from 00:00 local time, relative to its mean:
# quiet nights, a morning peak near 10:00, an afternoon plateau and an evening peak
# near 19:00-20:00. It is the mean day of bench/detect's synthetic complaint streams
# (synthetic.make_stream); categories.yaml's `typical_day` overrides it per category.
DEFAULT_DAY = (
    0.28, 0.28, 0.28, 0.29, 0.31, 0.38, 0.53, 0.82, 1.25, 1.68, 1.93, 1.88,
    1.65, 1.42, 1.25, 1.11, 1.06, 1.14, 1.32, 1.43, 1.35, 1.08, 0.76, 0.52,
)

Source = Literal["streams", "config", "default"]


@dataclass(frozen=True)
class Prior:
    per_bucket: float  # expected count of a bucket at an average hour
    strength: float  # gamma shape of that level, at least 0.5
    source: Source
    streams: tuple[str, ...] = ()  # the streams it was read from
    daily: tuple[float, ...] | None = None  # borrowed daily factors (48 nodes) ...
    weekday: tuple[float, ...] | None = None  # ... and weekday factors (7)

    def __post_init__(self) -> None:
        if self.per_bucket <= 0 or self.strength < 0.5:
            raise ValueError(f"a prior needs a positive level and a strength of 0.5 or more, got {self}")

    def summary(self) -> dict[str, Any]:
        """What is kept with the detector's state (the shapes go into the baseline)."""
        return {"per_bucket": self.per_bucket, "strength": self.strength, "source": self.source,
                "streams": list(self.streams)}

    @classmethod
    def from_summary(cls, data: dict[str, Any]) -> Prior:
        return cls(float(data["per_bucket"]), float(data["strength"]), data["source"], tuple(data["streams"]))


@dataclass(frozen=True)
class Known:
    """What a stream that has learned a day lends: its mean count of a bucket over the
    week, and its shapes (averaging 1 over the week)."""

    per_bucket: float
    daily: tuple[float, ...]
    weekday: tuple[float, ...]


def day_shape(day: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The daily (48 nodes: weekdays, then weekends) and weekday (7) factors of a day
    given as 24 relative hourly figures, the same every day, scaled to average 1."""
    if len(day) != 24 or min(day) <= 0.0:
        raise ValueError(f"a day's shape needs 24 positive hourly figures, got {list(day)}")
    mean = sum(day) / 24.0
    hours = tuple(f / mean for f in day)
    return hours + hours, (1.0,) * 7


def default_prior(share: float = 1.0, day: Sequence[float] | None = None) -> Prior:
    daily, weekday = day_shape(DEFAULT_DAY if day is None else day)
    return Prior(DEFAULT_PER_BUCKET * share, DEFAULT_STRENGTH, "default", (), daily, weekday)


def prior_for(stream: str, known: Mapping[str, Known], regions: int,
              typical_per_hour: float | None, bucket_seconds: float,
              typical_day: Sequence[float] | None = None) -> Prior:
    """The prior of `stream` ("category/region" or "category/*") from the streams that
    have learned a day (`known`, by name), the number of regions streams are known for
    (`regions`, this one included), the category's configured complaints per hour
    across regions and its configured day (24 relative hourly figures; DEFAULT_DAY
    without)."""
    category, _, region = stream.partition("/")
    whole = f"{category}/*"
    share, share_known = _share(region, category, known, regions)
    if region != "*":
        siblings = sorted(s for s in known if s.startswith(f"{category}/") and s != whole and s != stream)
        if whole in known and share_known:
            source = known[whole]
            return Prior(source.per_bucket * share, STRENGTH_SHARE, "streams", (whole,), source.daily, source.weekday)
        if siblings:
            levels = [known[s].per_bucket for s in siblings]
            shape = known[whole] if whole in known else known[max(siblings, key=lambda s: known[s].per_bucket)]
            return Prior(sum(levels) / len(levels), STRENGTH_SIBLINGS, "streams", tuple(siblings), shape.daily,
                         shape.weekday)
        if whole in known:
            source = known[whole]
            return Prior(source.per_bucket * share, STRENGTH_EQUAL_SPLIT, "streams", (whole,), source.daily,
                         source.weekday)
    day = DEFAULT_DAY if typical_day is None else typical_day
    if typical_per_hour is not None:
        daily, weekday = day_shape(day)
        return Prior(typical_per_hour * bucket_seconds / 3600.0 * share, STRENGTH_CONFIG, "config", (), daily,
                     weekday)
    return default_prior(share, day)


def _share(region: str, category: str, known: Mapping[str, Known], regions: int) -> tuple[float, bool]:
    """The region's share of a category's complaints, and whether other categories told."""
    if region == "*":
        return 1.0, True
    part = whole = 0.0
    for name, k in known.items():
        other, _, where = name.partition("/")
        if where == region and other != category and f"{other}/*" in known:
            part += k.per_bucket
            whole += known[f"{other}/*"].per_bucket
    if whole > 0.0 and part > 0.0:
        return min(1.0, part / whole), True
    return 1.0 / max(regions, 1), False
