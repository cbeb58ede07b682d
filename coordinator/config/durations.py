"""Durations in the config files: '90s', '10m', '2h', '1d', '1h30m', read and written
back (schemas.Duration)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> timedelta:
    """'90s', '10m', '2h', '1d', '1h30m' -> timedelta. Bare numbers are refused: the unit
    of a deadline should never be a guess."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip()
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"invalid duration {value!r} (use e.g. 90s, 10m, 2h, 1d, 1h30m)")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"
