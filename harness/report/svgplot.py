"""Line charts as inline SVG text for report.html: axes, ticks, lines with markers, reference lines, a
legend. Pure: a `Chart` in, a string out, no I/O and no plotting library.

Why not matplotlib: drawing one PNG cost about 1.4 CPU-seconds in a fresh process (1.1 of them the
import), and every end-to-end run renders its report once, in a new process. An SVG written as
text costs milliseconds, is a few kilobytes, scales with the page, and its labels stay searchable text
(which the credential scan reads like the rest of the page). No `xmlns` attribute: inside HTML the
parser puts <svg> in the SVG namespace itself, and the page keeps no URL of any kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Literal

# matplotlib's "tab10" colours, in its order: the series colours people know from its plots.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

WIDTH, HEIGHT = 800, 420
# Plot area inside the figure (pixels): room for tick labels, axis labels, the title and a right axis.
LEFT, RIGHT, TOP, BOTTOM = 72, 720, 38, 364


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    marker: Literal["o", "x", "bar"] = "o"
    # "bar": no line, each point drawn as a short horizontal bar (an SLO limit at that percentile).
    right_axis: bool = False
    opacity: float = 1.0
    in_legend: bool = True


@dataclass(frozen=True)
class RefLine:
    """A dashed or dotted line across the plot at `value` (horizontal: a y value; vertical: an x value)."""

    value: float
    label: str
    color: str
    vertical: bool = False
    dash: str = "6 4"


@dataclass(frozen=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    # Fixed x ticks (position, label); None: nice round numbers over the data.
    x_ticks: Sequence[tuple[float, str]] | None = None
    y_log: bool = False
    right_label: str | None = None
    lines: Sequence[RefLine] = field(default_factory=tuple)
    legend: Literal["upper left", "upper right"] = "upper right"
    description: str = ""


def linear_ticks(lo: float, hi: float, want: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / want
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for i in range(first, first + want * 3):
        value = i * step
        if value > hi + step * 1e-9:
            break
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 per decade within [lo, hi] (both > 0): labels even when the data span less than one
    decade."""
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0 ** exponent
            if lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9):
                ticks.append(value)
    return ticks


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    log: bool
    start: float  # pixel of lo
    end: float  # pixel of hi

    def __call__(self, value: float) -> float:
        if self.log:
            low, high, value = math.log10(self.lo), math.log10(self.hi), math.log10(value)
        else:
            low, high = self.lo, self.hi
        return self.start + (value - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        return log_ticks(self.lo, self.hi) if self.log else linear_ticks(self.lo, self.hi)


def _usable(value: float, log: bool) -> bool:
    return math.isfinite(value) and (value > 0 or not log)


def fit(values: Sequence[float], log: bool, start: float, end: float) -> Scale:
    """A scale over `values` with a margin on both sides (5 % of the span, or of a decade on a log
    axis); a single value or none gets a span around it."""
    usable = [v for v in values if _usable(v, log)]
    if log:
        if not usable:
            return Scale(1.0, 10.0, True, start, end)
        low, high = math.log10(min(usable)), math.log10(max(usable))
        pad = max(high - low, 1.0) * 0.05
        return Scale(10 ** (low - pad), 10 ** (high + pad), True, start, end)
    if not usable:
        return Scale(0.0, 1.0, False, start, end)
    low, high = min(usable), max(usable)
    if high == low:
        low, high = (low - 1, high + 1) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)
    pad = (high - low) * 0.05
    return Scale(low - pad, high + pad, False, start, end)


def _num(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 12, extra: str = "") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{size}"{extra}>'
            f"{escape(text)}</text>")


def _marker(kind: str, x: float, y: float, color: str) -> str:
    if kind == "x":
        return (f'<path d="M{_num(x - 4)} {_num(y - 4)}L{_num(x + 4)} {_num(y + 4)}M{_num(x - 4)} {_num(y + 4)}'
                f'L{_num(x + 4)} {_num(y - 4)}" stroke="{color}" stroke-width="1.5"/>')
    if kind == "bar":
        return f'<path d="M{_num(x - 9)} {_num(y)}H{_num(x + 9)}" stroke="{color}" stroke-width="2.5"/>'
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3.5" fill="{color}"/>'


def render(chart: Chart) -> str:
    """The chart as one <svg> element."""
    left_series = [s for s in chart.series if not s.right_axis]
    right_series = [s for s in chart.series if s.right_axis]
    xs = [x for s in chart.series for x in s.xs] + [r.value for r in chart.lines if r.vertical]
    if chart.x_ticks:
        xs += [position for position, _ in chart.x_ticks]
    x_scale = fit(xs, False, LEFT, RIGHT)
    y_scale = fit([y for s in left_series for y in s.ys] + [r.value for r in chart.lines if not r.vertical],
                  chart.y_log, BOTTOM, TOP)
    right_scale = fit([y for s in right_series for y in s.ys], False, BOTTOM, TOP) if right_series else None

    out = [f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(chart.title)}" font-family="system-ui,Helvetica,Arial,sans-serif">',
           f"<title>{escape(chart.description or chart.title)}</title>",
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>']
    # Grid and ticks.
    x_ticks = list(chart.x_ticks) if chart.x_ticks else [(v, f"{v:g}") for v in x_scale.ticks()]
    for position, label in x_ticks:
        px = x_scale(position)
        out.append(f'<path d="M{_num(px)} {TOP}V{BOTTOM}" stroke="#d0d7de" stroke-width="0.8"/>')
        out.append(_text(px, BOTTOM + 16, label))
    for value in y_scale.ticks():
        py = y_scale(value)
        out.append(f'<path d="M{LEFT} {_num(py)}H{RIGHT}" stroke="#d0d7de" stroke-width="0.8"/>')
        out.append(_text(LEFT - 6, py + 4, f"{value:g}", anchor="end"))
    if right_scale is not None:
        for value in right_scale.ticks():
            out.append(_text(RIGHT + 6, right_scale(value) + 4, f"{value:g}", anchor="start"))
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{RIGHT - LEFT}" height="{BOTTOM - TOP}" fill="none" '
               f'stroke="#57606a"/>')
    # Labels.
    out.append(_text((LEFT + RIGHT) / 2, 22, chart.title, size=14))
    out.append(_text((LEFT + RIGHT) / 2, HEIGHT - 16, chart.x_label))
    middle = (TOP + BOTTOM) / 2
    out.append(_text(18, middle, chart.y_label, extra=f' transform="rotate(-90 18 {_num(middle)})"'))
    if chart.right_label:
        out.append(_text(WIDTH - 14, middle, chart.right_label,
                         extra=f' transform="rotate(90 {WIDTH - 14} {_num(middle)})"'))
    # Reference lines, then the series on top.
    for ref in chart.lines:
        if ref.vertical:
            px = x_scale(ref.value)
            out.append(f'<path d="M{_num(px)} {TOP}V{BOTTOM}" stroke="{ref.color}" stroke-dasharray="{ref.dash}"/>')
        elif _usable(ref.value, chart.y_log):
            py = y_scale(ref.value)
            out.append(f'<path d="M{LEFT} {_num(py)}H{RIGHT}" stroke="{ref.color}" stroke-dasharray="{ref.dash}"/>')
    for series in chart.series:
        scale = right_scale if series.right_axis and right_scale is not None else y_scale
        log = chart.y_log and not series.right_axis
        points = [(x_scale(x), scale(y)) for x, y in zip(series.xs, series.ys, strict=False)
                  if math.isfinite(x) and _usable(y, log)]
        group = [f'<g opacity="{series.opacity:g}">']
        if series.marker != "bar" and len(points) > 1:
            path = "".join(("M" if i == 0 else "L") + f"{_num(x)} {_num(y)}" for i, (x, y) in enumerate(points))
            group.append(f'<path d="{path}" fill="none" stroke="{series.color}" stroke-width="1.8"/>')
        group.extend(_marker(series.marker, x, y, series.color) for x, y in points)
        group.append("</g>")
        out.extend(group)
    out.extend(_legend(chart))
    out.append("</svg>")
    return "".join(out)


def _legend(chart: Chart) -> list[str]:
    entries: list[tuple[str, str, str, str]] = [
        (s.label, s.color, s.marker, "") for s in chart.series if s.in_legend]
    entries += [(r.label, r.color, "", r.dash) for r in chart.lines if r.label]
    if not entries:
        return []
    longest = max(len(label) for label, *_ in entries)
    width = 40 + 6.6 * longest
    x0 = LEFT + 8 if chart.legend == "upper left" else RIGHT - 8 - width
    y0 = TOP + 8
    out = [f'<rect x="{_num(x0)}" y="{y0}" width="{_num(width)}" height="{8 + 16 * len(entries)}" '
           'fill="#fff" fill-opacity="0.85" stroke="#d0d7de"/>']
    for i, (label, color, marker, dash) in enumerate(entries):
        y = y0 + 14 + 16 * i
        if marker != "bar":
            style = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<path d="M{_num(x0 + 6)} {y - 4}H{_num(x0 + 30)}" stroke="{color}" '
                       f'stroke-width="1.8"{style}/>')
        if marker:
            out.append(_marker(marker, x0 + 18, y - 4, color))
        out.append(_text(x0 + 36, y, label, anchor="start", size=11))
    return out
