"""Inline SVG for the status page (pure; no JavaScript, no library): stacked bar charts over time and quota
meters. Every mark carries its numbers as `data-*` attributes and a `<title>` (the browser's tooltip), so
a test or a curious user can read the chart's data from the DOM. All text is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

#: Series colours, told apart in colour-blind palettes (Okabe–Ito, then a few more); `other` is grey.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#7f3c8d")
OTHER_COLOUR = "#9a9a9a"


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per series name, in the order given (so one account keeps its colour across charts)."""
    out: dict[str, str] = {}
    for name in names:
        if name in out:
            continue
        out[name] = OTHER_COLOUR if name == "other" else PALETTE[sum(1 for n in out if n != "other") % len(PALETTE)]
    return out


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2, 2.5 or 5 × 10^k (at least 1) at or above `value`: a round top for an axis."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return math.ceil(step * power)
    return math.ceil(10 * power)  # not reached: 10 × power is always enough


def short_number(value: float) -> str:
    """`950`, `1.2k`, `3.4M`: axis and legend labels."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:g}"


def bar_chart(
    chart_id: str,
    title: str,
    times: Sequence[float],
    series: Mapping[str, Sequence[int]],
    palette: Mapping[str, str],
    time_label: Callable[[float], str],
    unit: str,
    width: int = 560,
    height: int = 220,
) -> str:
    """Stacked bars, one per time bucket, one colour per series; an empty range says so in the plot."""
    left, right, top, bottom = 48, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(times), 1)
    totals = [sum(values[i] for values in series.values()) for i in range(len(times))]
    peak = nice_ceiling(max(totals, default=0))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-unit="{escape(unit)}" data-peak="{peak}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(3):  # gridlines and labels at 0, half and the top
        value = peak * k / 2
        y = top + plot_h - plot_h * k / 2
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(short_number(value))}</text>')
    every = max(1, math.ceil(n / 6))
    for i, t in enumerate(times):
        if i % every == 0:
            x = left + slot * i + slot / 2
            parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 8}" text-anchor="middle">{escape(time_label(t))}</text>')
    marks = 0
    for i, t in enumerate(times):
        base = 0
        for name, values in series.items():
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / peak
            y = top + plot_h - plot_h * (base + value) / peak
            x = left + slot * i + (slot - bar_w) / 2
            label = f"{name} · {time_label(t)}: {value:,} {unit}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{palette.get(name, OTHER_COLOUR)}" data-series="{escape(name)}" data-t="{int(t)}" data-value="{value}">'
                f"<title>{escape(label)}</title></rect>"
            )
            base += value
            marks += 1
    if not marks:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle">nothing in this range</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend(names: Sequence[str], palette: Mapping[str, str], totals: Mapping[str, int], unit: str) -> str:
    """The series of a chart with their colour and total, as an HTML list."""
    items = "".join(
        f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" fill="{palette.get(name, OTHER_COLOUR)}"/></svg> '
        f'{escape(name)} <span class="num">{totals.get(name, 0):,} {escape(unit.removesuffix("s") if totals.get(name) == 1 else unit)}</span></li>'
        for name in names
    )
    return f'<ul class="legend">{items}</ul>'


def meter(used_percent: float, width: int = 140, height: int = 10) -> str:
    """A quota bar: green below 70 %, amber below 90 %, red beyond."""
    used = min(max(used_percent, 0.0), 100.0)
    colour = "#2e9d4f" if used < 70 else "#e0a100" if used < 90 else "#d23c3c"
    return (
        f'<svg class="meter" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" data-used="{used:g}">'
        f"<title>{used:g}% used</title>"
        f'<rect width="{width}" height="{height}" rx="3" fill="#e4e7eb"/>'
        f'<rect width="{width * used / 100:.1f}" height="{height}" rx="3" fill="{colour}"/></svg>'
    )
