"""The server's SVG charts (web/charts.py), table-driven: labels inside the box whatever
the counts and labels, values on the statistics chart's y axis, x labels thinned so that
they never touch."""

from __future__ import annotations

import re

import pytest

from coordinator.web.charts import (PHONE_FONT, PHONE_WIDTH, TICK, Mark, PeriodBar, bar_chart, for_screens,
                                    period_chart, text_width)

# (width, height, font): a stream's card, the incident page on a desktop, any chart on a phone
SIZES = [(320, 90, TICK), (720, 160, TICK), (PHONE_WIDTH, 150, PHONE_FONT)]


def texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, text) of each <text> in the chart."""
    out = []
    for attrs, body in re.findall(r"<text([^>]*)>([^<]*)</text>", svg):
        x = float(re.search(r' x="([\d.]+)"', attrs).group(1))  # type: ignore[union-attr]
        found = re.search(r'text-anchor="(\w+)"', attrs)
        anchor = found.group(1) if found else "start"
        out.append((x, anchor, body))
    return out


def baselines(svg: str) -> list[tuple[float, str]]:
    """(y, text) of each <text>: where its baseline is."""
    return [(float(y), body) for y, body in re.findall(r'<text[^>]* y="([\d.]+)"[^>]*>([^<]*)</text>', svg)]


def span(x: float, anchor: str, text: str, font: float = TICK) -> tuple[float, float]:
    w = text_width(text, font)
    return {"start": (x, x + w), "end": (x - w, x), "middle": (x - w / 2, x + w / 2)}[anchor]


def width_of(svg: str) -> float:
    return float(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize(("counts", "marks"), [
    ([0, 3, 10], [Mark(2, "resolved")]),
    ([5] * 36, [Mark(34, "起点"), Mark(35, "立案"), Mark(35, "解决")]),
    ([12345, 0, 99999], [Mark(0, "onset"), Mark(2, "opened")]),
    ([0] * 36, []),
])
@pytest.mark.parametrize(("width", "height", "font"), SIZES)
def test_every_label_of_a_stream_chart_is_inside_its_box(counts: list[int], marks: list[Mark],
                                                         width: int, height: int, font: int) -> None:
    svg = bar_chart(counts, labels=[f"10:{i:02d}" for i in range(len(counts))], marks=marks, title="t",
                    width=width, height=height, font=font)
    assert width_of(svg) == width and f'font-size="{font}"' in svg  # the size its labels were laid out at
    drawn = texts(svg)
    assert {m.label for m in marks} <= {t for _, _, t in drawn}
    for x, anchor, text in drawn:
        left, right = span(x, anchor, text, font)
        assert 0 <= left and right <= width, (text, left, right, width)
    for y, text in baselines(svg):
        assert font * 0.8 <= y <= height, (text, y, height)  # its top (about 0.8 of the size above y) inside


@pytest.mark.parametrize(("width", "font"), [(480, TICK), (PHONE_WIDTH, PHONE_FONT)])
@pytest.mark.parametrize(("n", "label"), [(1, "2026-11"), (12, "2026-11"), (24, "11-05"), (31, "11-05"), (366, "11-05")])
def test_the_period_chart_has_y_values_and_x_labels_that_never_touch(n: int, label: str, width: int, font: int) -> None:
    bars = [PeriodBar(label=label, count=i % 7, repeat=i % 3, hover=f"p{i}") for i in range(n)]
    svg = period_chart(bars, title="投诉量", width=width, font=font)
    assert width_of(svg) == width
    y = [t for _, _, t in texts(svg) if t.isdigit() and t != label]
    busiest = max(b.count for b in bars)
    assert y[0] == "0" and len(y) >= 2 and int(y[-1]) >= max(busiest, 1)  # 0 .. a round top over the busiest
    xs = sorted(span(x, anchor, t, font) for x, anchor, t in texts(svg) if t == label)
    assert xs and all(0 <= a and b <= width for a, b in xs)
    assert all(xs[i][1] < xs[i + 1][0] for i in range(len(xs) - 1)), "x labels overlap"
    assert svg.count("<rect") == 2 * n and "p0" in svg


def test_a_chart_for_both_screens_holds_both() -> None:
    wide = bar_chart([1, 2], labels=["10:00", "10:05"], width=720, height=160)
    narrow = bar_chart([1, 2], labels=["10:00", "10:05"], width=PHONE_WIDTH, height=150, font=PHONE_FONT)
    both = for_screens(wide, narrow)
    assert both.index(wide) < both.index(narrow) and 'class="chart-wide"' in both and 'class="chart-narrow"' in both
