"""Charts drawn on the server as inline SVG: no chart library, nothing to download, and
the page prints as it shows. Pure: counts in, markup out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Mark:
    """A vertical line at a bucket (onset, opened, resolved)."""

    index: int
    label: str


def _nice_max(value: float) -> int:
    """A round top for the y axis: 1, 2, 5, 10, 20, 50..."""
    top = max(1.0, value)
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= top:
                return m * step
        step *= 10


def bar_chart(
    counts: Sequence[int],
    *,
    labels: Sequence[str],
    baseline: float | None = None,
    marks: Sequence[Mark] = (),
    title: str = "",
    baseline_label: str = "",
    filling_last: bool = False,
    width: int = 320,
    height: int = 90,
) -> Markup:
    """Bars of `counts` (one per bucket, oldest first; `labels` their times), a dashed
    line at `baseline`, and `marks`. `filling_last`: the last bucket is still filling
    (drawn lighter, it would read as a drop otherwise)."""
    if len(labels) != len(counts):
        raise ValueError("one label per count")
    pad_left, pad_bottom, pad_top = 26, 14, 6
    plot_w, plot_h = width - pad_left - 2, height - pad_bottom - pad_top
    top = _nice_max(max([*counts, baseline or 0, 1]))
    n = max(1, len(counts))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)

    def y(value: float) -> float:
        return pad_top + plot_h - plot_h * value / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 2}" y2="{pad_top + plot_h}"/>',
        f'<text class="tick" x="{pad_left - 3}" y="{pad_top + 8}" text-anchor="end">{top}</text>',
        f'<text class="tick" x="{pad_left - 3}" y="{pad_top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (count, label) in enumerate(zip(counts, labels)):
        x = pad_left + i * slot + (slot - bar_w) / 2
        cls = "bar filling" if filling_last and i == n - 1 else "bar"
        h = plot_h * count / top
        parts.append(f'<rect class="{cls}" x="{x:.1f}" y="{pad_top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}"><title>{escape(label)}: {count}</title></rect>')
    if baseline is not None:
        by = y(baseline)
        parts.append(f'<line class="baseline" x1="{pad_left}" y1="{by:.1f}" x2="{width - 2}" y2="{by:.1f}">'
                     f"<title>{escape(baseline_label)} {baseline:.1f}</title></line>")
    for mark in marks:
        if 0 <= mark.index < n:
            mx = pad_left + (mark.index + 0.5) * slot
            parts.append(f'<line class="mark" x1="{mx:.1f}" y1="{pad_top}" x2="{mx:.1f}" y2="{pad_top + plot_h}"/>'
                         f'<text class="mark-label" x="{mx + 2:.1f}" y="{pad_top + 8}">{escape(mark.label)}</text>')
    if labels:
        parts.append(f'<text class="tick" x="{pad_left}" y="{height - 2}">{escape(labels[0])}</text>')
        parts.append(f'<text class="tick" x="{width - 2}" y="{height - 2}" text-anchor="end">'
                     f"{escape(labels[-1])}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))
