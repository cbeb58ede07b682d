"""A detector's state saved as JSON and restored exactly, older versions included."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .prior import Prior

if TYPE_CHECKING:
    from .detector import Detector

# Version 7: the same fields; the daily profile's pseudo-counts lean to prior.DEFAULT_DAY,
# a configured or default prior starts it from a day, and after the first day the level
# and the daily profile learn with longer memories (baseline.py): a version 6 state loads
# as it is and goes on the new way.
# Version 8: each CUSUM run's level at its start (`onset_levels`) and the open surge's
# scale to it (`open_scale`); an older state takes the current level and 1.
VERSION = 8

# What to_dict saves as is, of the detector and of its baseline (the rest needs converting).
_STATE = (
    "buckets", "cusum", "observed_since", "expected_since", "threshold", "peak", "open_observed",
    "open_expected", "open_buckets", "close_cusum",
)
_BASELINE = ("level", "daily", "weekday", "hourly", "dispersion", "history")


def to_dict(detector: Detector) -> dict[str, Any]:
    baseline = detector.baseline
    state = {name: getattr(detector, name) for name in _STATE}
    state["onset_levels"] = detector.onset_levels
    state["open_scale"] = detector.open_scale
    state.update({name: getattr(baseline, name) for name in _BASELINE})
    state["last_ts"] = _iso(detector.last_ts)
    state["onsets"] = [_iso(t) for t in detector.onsets]
    state["open_onset"] = _iso(detector.open_onset)
    state["tail"] = vars(detector.tail).copy()
    state["young"] = detector.young
    state["prior"] = detector.prior.summary() if detector.prior else None
    state["borrowed"] = list(baseline.borrowed) if baseline.borrowed else None
    return {"version": VERSION, "config": asdict(detector.config), "state": state}


def restore(detector: Detector, data: dict[str, Any]) -> Detector:
    """`detector`, new and built with the saved config, given the saved state."""
    # Version 3 also held the anomaly score's record, now coordinator.detection.score's.
    if data.get("version") not in (3, 4, 5, 6, 7, VERSION):
        raise ValueError(f"unknown detector state version {data.get('version')!r}")
    state = dict(data["state"])
    baseline = detector.baseline
    for name in _STATE:
        setattr(detector, name, state[name])
    for name in _BASELINE:
        setattr(baseline, name, state[name])
    detector.onset_levels = state.get("onset_levels", [baseline.per_bucket()] * len(detector.cusum))
    detector.open_scale = state.get("open_scale", 1.0)
    if len(baseline.daily[0]) == 24:
        # Versions 3 and 4 had one daily profile for all days: it becomes both, and the
        # weekends' then learns its own.
        baseline.daily = [nodes + nodes for nodes in baseline.daily]
    detector.last_ts = _parse(state["last_ts"])
    detector.onsets = [_parse(t) for t in state["onsets"]]
    detector.open_onset = _parse(state["open_onset"])
    baseline.history = [(y, h, int(d)) for y, h, d in state["history"]]
    for name, value in state["tail"].items():
        setattr(detector.tail, name, value)
    # Before version 6 the warm-up ended with its history (refitted, then emptied), and
    # no stream had a prior.
    detector.young = state.get("young", bool(baseline.history))
    if not detector.young:
        baseline.mature()
    detector.prior = Prior.from_summary(state["prior"]) if state.get("prior") else None
    borrowed = state.get("borrowed")
    baseline.borrowed = (list(borrowed[0]), list(borrowed[1])) if borrowed else None
    return detector


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
