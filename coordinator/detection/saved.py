"""A detector's state saved as JSON and restored exactly, older versions included."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .detector import Detector

VERSION = 5

# What to_dict saves as is (the rest needs converting).
_STATE = (
    "buckets", "level", "daily", "weekday", "hourly", "dispersion", "cusum", "observed_since",
    "expected_since", "history", "threshold", "peak", "open_observed", "open_expected",
    "open_buckets", "close_cusum",
)


def to_dict(detector: Detector) -> dict[str, Any]:
    state = {name: getattr(detector, name) for name in _STATE}
    state["last_ts"] = _iso(detector.last_ts)
    state["onsets"] = [_iso(t) for t in detector.onsets]
    state["open_onset"] = _iso(detector.open_onset)
    state["tail"] = vars(detector.tail).copy()
    return {"version": VERSION, "config": asdict(detector.config), "state": state}


def restore(detector: Detector, data: dict[str, Any]) -> Detector:
    """`detector`, new and built with the saved config, given the saved state."""
    # Version 3 also held the anomaly score's record, now coordinator.detection.score's.
    if data.get("version") not in (3, 4, VERSION):
        raise ValueError(f"unknown detector state version {data.get('version')!r}")
    state = dict(data["state"])
    for name in _STATE:
        setattr(detector, name, state[name])
    if len(detector.daily[0]) == 24:
        # Versions 3 and 4 had one daily profile for all days: it becomes both, and the
        # weekends' then learns its own.
        detector.daily = [nodes + nodes for nodes in detector.daily]
    detector.last_ts = _parse(state["last_ts"])
    detector.onsets = [_parse(t) for t in state["onsets"]]
    detector.open_onset = _parse(state["open_onset"])
    detector.history = [(y, h, int(d)) for y, h, d in state["history"]]
    for name, value in state["tail"].items():
        setattr(detector.tail, name, value)
    return detector


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
