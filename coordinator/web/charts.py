"""Charts drawn on the server as inline SVG: no chart library, nothing to download, and
the page prints as it shows. Pure: counts in, markup out.

Text in an SVG scales with it: a 720-unit chart squeezed into a phone's 366 px would
draw its 10-unit labels at 5 px. A chart wider than a phone is therefore drawn twice,
at the desktop's size and at a phone's (for_screens; console.css shows one of them),
and every chart carries its font size, so that its labels are laid out at the size
they are drawn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup, escape


TICK = 10  # font size of the axes' text, in the chart's units (at 1:1, px)
PHONE_WIDTH, PHONE_FONT = 340, 11  # a phone's chart: fits 366 px (390 less the page's margins), drawn about 1:1


@dataclass(frozen=True)
class Mark:
    """A vertical line at a bucket (onset, opened, resolved)."""

    index: int
    label: str


def text_width(text: str, size: float) -> float:
    """About how wide `text` draws at font size `size` (a CJK character is a square, a
    digit or Latin letter about 0.6 of one): enough to keep labels inside the box."""
    return sum(size if ord(c) > 0x2E80 else size * 0.6 for c in text)


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
    font: int = TICK,
) -> Markup:
    """Bars of `counts` (one per bucket, oldest first; `labels` their times), a dashed
    line at `baseline`, and `marks`. `filling_last`: the last bucket is still filling
    (drawn lighter, it would read as a drop otherwise)."""
    if len(labels) != len(counts):
        raise ValueError("one label per count")
    top = _nice_max(max([*counts, baseline or 0, 1]))
    # room on the left for the y axis's widest value, so that it is never cut off
    pad_left, pad_bottom, pad_top = int(text_width(str(top), font) + 6), font + 5, 6
    plot_w, plot_h = width - pad_left - 2, height - pad_bottom - pad_top
    n = max(1, len(counts))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)

    def y(value: float) -> float:
        return pad_top + plot_h - plot_h * value / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-size="{font}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 2}" y2="{pad_top + plot_h}"/>',
        f'<text class="tick" x="{pad_left - 3}" y="{pad_top + font - 1}" text-anchor="end">{top}</text>',
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
    for row, mark in enumerate(m for m in marks if 0 <= m.index < n):
        mx = pad_left + (mark.index + 0.5) * slot
        # a label that would run past the right edge is drawn to the left of its line
        fits = mx + 2 + text_width(mark.label, font) <= width - 1
        lx, anchor = (mx + 2, "") if fits else (mx - 2, ' text-anchor="end"')
        parts.append(f'<line class="mark" x1="{mx:.1f}" y1="{pad_top}" x2="{mx:.1f}" y2="{pad_top + plot_h}"/>'
                     f'<text class="mark-label" x="{lx:.1f}" y="{pad_top + font - 1 + font * (row % 3)}"{anchor}>'
                     f"{escape(mark.label)}</text>")
    if labels:
        under = height - font * 0.3 - 1  # the baseline, leaving room below it for the glyphs' descent
        parts.append(f'<text class="tick" x="{pad_left}" y="{under:.1f}">{escape(labels[0])}</text>')
        if len(labels) > 1 and text_width(labels[0] + labels[-1], font) + 8 < width - pad_left:
            parts.append(f'<text class="tick" x="{width - 2}" y="{under:.1f}" text-anchor="end">'
                         f"{escape(labels[-1])}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class PeriodBar:
    """One period of the statistics: its count with the repeats part of it."""

    label: str  # on the x axis (short: 11-05, 2026-11)
    count: int
    repeat: int
    hover: str  # the bar's tooltip, in the page's language


def period_chart(bars: Sequence[PeriodBar], *, title: str, width: int = 480, height: int = 200,
                 font: int = TICK) -> Markup:
    """Bars per period, the repeat complaints drawn over each, with a y axis of values
    (0, half, top, on light grid lines) and as many x labels as fit side by side."""
    top = _nice_max(max([b.count for b in bars] + [1]))
    pad_left, pad_bottom, pad_top, pad_right = int(text_width(str(top), font) + 8), font + 7, 8, 4
    plot_w, plot_h = width - pad_left - pad_right, height - pad_bottom - pad_top
    n = max(1, len(bars))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)
    base = pad_top + plot_h
    parts = [
        f'<svg class="chart periods" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-size="{font}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for value in sorted({0, top // 2, top} if top >= 2 else {0, top}):
        y = base - plot_h * value / top
        parts.append(f'<line class="grid" x1="{pad_left}" y1="{y:.1f}" x2="{width - pad_right}" y2="{y:.1f}"/>'
                     f'<text class="tick ytick" x="{pad_left - 4}" y="{y + font / 3:.1f}" text-anchor="end">'
                     f"{value}</text>")
    widest = max([text_width(b.label, font) for b in bars] + [1.0]) + 6
    every = max(1, -(-int(widest) // max(1, int(slot))))  # label every `every`th bar, so that they never touch
    last_right = float("-inf")
    for i, b in enumerate(bars):
        x = pad_left + i * slot + (slot - bar_w) / 2
        h, rh = plot_h * b.count / top, plot_h * b.repeat / top
        parts.append(f'<g><title>{escape(b.hover)}</title>'
                     f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}"/>'
                     f'<rect class="bar repeat" x="{x:.1f}" y="{base - rh:.1f}" width="{bar_w:.1f}" height="{rh:.1f}"/>'
                     "</g>")
        if i % every == 0:
            cx = pad_left + (i + 0.5) * slot
            # centred under its bar, but held inside the box at either end
            half = text_width(b.label, font) / 2
            cx = min(max(cx, pad_left + half), width - pad_right - half)
            if cx - half < last_right + 4:  # one pushed inward at an end would touch its neighbour
                continue
            last_right = cx + half
            parts.append(f'<text class="tick xtick" x="{cx:.1f}" y="{height - 4}" text-anchor="middle">'
                         f"{escape(b.label)}</text>")
    parts.append(f'<line class="axis" x1="{pad_left}" y1="{base}" x2="{width - pad_right}" y2="{base}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def for_screens(wide: Markup, narrow: Markup) -> Markup:
    """One chart drawn for a desktop and for a phone (PHONE_WIDTH, PHONE_FONT): the page
    shows the one that fits (console.css, .chart-wide and .chart-narrow)."""
    return Markup(f'<div class="chart-screens"><div class="chart-wide">{wide}</div>'
                  f'<div class="chart-narrow">{narrow}</div></div>')
