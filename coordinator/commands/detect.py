"""`coordinator detect INPUT.csv`: the surge detector over a CSV of bucket counts.

Contract (docs: DESIGN.md). INPUT has the header `timestamp,value`: ISO-8601
timestamps of equal-width buckets, in increasing order (missing buckets are
allowed), and the count of each bucket. The output, on `out`, has the header
`timestamp,value,anomaly_score,alarm` and one row per input row, in the same
order, the timestamp and value echoed as given: `anomaly_score` in [0, 1], on
the bucket after each burst (a rise of the stream's deviation from the
detector's baseline) tops out, how rare such a burst is in the stream's own
record of bursts, 1 for one topped at most once in five days
(`anomaly_score.AnomalyScore`; within a day of a reported burst only a rarer
or a twice as high one is reported), else 0; `alarm` 1 on the bucket where a surge opens (the
detector's CUSUM rule at the false-alarm budget), else 0.
Production defaults; blank lines are skipped.

Online: the output for a row depends on that row and the rows before it,
save that the bucket width is the median of the first differences of the first
WIDTH_SAMPLE + 1 timestamps (with regular buckets, any prefix gives the same).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from statistics import median
from typing import TextIO

from coordinator.detection.config import DetectorConfig
from coordinator.detection.detector import Detector
from coordinator.detection.score import AnomalyScore
from coordinator.errors import DetectInputError

HEADER = ["timestamp", "value"]
WIDTH_SAMPLE = 100
DEFAULT_WIDTH = 300.0  # for an input of a single row
FLUSH_EVERY = 4096
_MIXED_ZONES = "timestamp has a time zone where the rows before have none, or the reverse"


def run(input_path: str, out: TextIO) -> None:
    """Read INPUT, write the scored CSV to `out`; raise DetectInputError."""
    try:
        with open(input_path, newline="", encoding="utf-8-sig") as f:
            _detect(input_path, f, out)
    except OSError as e:
        raise DetectInputError(input_path, None, f"cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DetectInputError(input_path, None, f"not UTF-8 text: {e.reason}") from e


def _detect(path: str, f: TextIO, out: TextIO) -> None:
    rows = _rows(path, f)
    head: list[tuple[int, str, datetime, str, float]] = []
    for row in rows:
        head.append(row)
        if len(head) > WIDTH_SAMPLE:
            break
    width = _bucket_width(path, head)
    detector = Detector(DetectorConfig(bucket_seconds=width))
    lines = ["timestamp,value,anomaly_score,alarm\n"]
    previous: datetime | None = None
    scorer = AnomalyScore(width)
    for rows_part in (head, rows):
        for line, ts_text, ts, value_text, value in rows_part:
            if previous is not None:
                try:
                    gap = (ts - previous).total_seconds()
                except TypeError:
                    raise DetectInputError(path, line, _MIXED_ZONES) from None
                if gap <= 0:
                    raise DetectInputError(
                        path, line, f"timestamp {ts_text} is not after the previous row's"
                    )
                if abs(gap - round(gap / width) * width) > 0.1 * width:
                    raise DetectInputError(
                        path,
                        line,
                        f"timestamp {ts_text} is {gap:g} s after the previous row, "
                        f"not a whole number of {width:g} s buckets",
                    )
            previous = ts
            obs = detector.observe(ts, value)
            score = scorer.observe(ts, value, obs.expected)
            score_text = f"{score:.6g}" if score else "0"
            lines.append(f"{ts_text},{value_text},{score_text},{1 if obs.alarm else 0}\n")
            if len(lines) >= FLUSH_EVERY:
                out.write("".join(lines))
                lines.clear()
    out.write("".join(lines))


def _rows(path: str, f: TextIO) -> Iterator[tuple[int, str, datetime, str, float]]:
    """Validated (line, timestamp text, timestamp, value text, value)."""
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != HEADER:
        found = ",".join(header) if header else "nothing"
        raise DetectInputError(path, 1, f"header must be 'timestamp,value', found {found!r}")
    for fields in reader:
        if not fields:
            continue
        line = reader.line_num
        if len(fields) != 2:
            raise DetectInputError(path, line, f"expected 2 fields, found {len(fields)}")
        ts_text, value_text = fields[0].strip(), fields[1].strip()
        try:
            ts = datetime.fromisoformat(ts_text)
        except ValueError:
            raise DetectInputError(path, line, f"timestamp {ts_text!r} is not ISO-8601") from None
        try:
            value = float(value_text)
        except ValueError:
            raise DetectInputError(path, line, f"value {value_text!r} is not a number") from None
        if not (0.0 <= value < math.inf):
            raise DetectInputError(path, line, f"value {value_text!r} is not a count (>= 0)")
        yield line, ts_text, ts, value_text, value


def _bucket_width(path: str, head: list[tuple[int, str, datetime, str, float]]) -> float:
    if len(head) < 2:
        return DEFAULT_WIDTH
    gaps = []
    for a, b in pairwise(head):
        try:
            gaps.append((b[2] - a[2]).total_seconds())
        except TypeError:
            raise DetectInputError(path, b[0], _MIXED_ZONES) from None
    width = median(gaps)
    if width <= 0:
        line = next(b[0] for a, b in pairwise(head) if b[2] <= a[2])
        raise DetectInputError(path, line, "timestamps are not increasing")
    return width
