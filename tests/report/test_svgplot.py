"""The report's SVG charts: round ticks, scales that keep every point inside the plot, escaped labels."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from harness.report import svgplot
from harness.report.svgplot import BOTTOM, LEFT, RIGHT, TOP, Chart, RefLine, Series, fit, linear_ticks, log_ticks

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (18.0, 162.0, [25.0, 50.0, 75.0, 100.0, 125.0, 150.0]),
    (-3.0, 3.0, [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]),
    (5.0, 5.0, [5.0]),
])
def test_linear_ticks_are_round_and_cover_the_span(lo: float, hi: float, expected: list[float]) -> None:
    assert linear_ticks(lo, hi) == pytest.approx(expected)


def test_log_ticks_are_one_two_five_per_decade_even_within_one_decade() -> None:
    assert log_ticks(3.0, 120.0) == pytest.approx([5.0, 10.0, 20.0, 50.0, 100.0])
    assert log_ticks(11.0, 19.0) == []
    widened = fit([11.0, 19.0], True, 0, 1)  # the margin that fit adds brings the neighbours in
    assert log_ticks(widened.lo, widened.hi) == pytest.approx([10.0, 20.0])


@pytest.mark.parametrize("log", [False, True])
def test_every_point_lands_inside_the_plot_and_order_is_kept(log: bool) -> None:
    values = [0.7, 3.0, 45.0, 1200.0]
    scale = fit(values, log, BOTTOM, TOP)
    pixels = [scale(v) for v in values]
    assert all(TOP < p < BOTTOM for p in pixels)
    assert pixels == sorted(pixels, reverse=True)  # larger values are higher up (smaller y)


def test_degenerate_data_still_gets_a_span() -> None:
    for values, log in (([], False), ([], True), ([4.0], False), ([0.0], False), ([4.0], True)):
        scale = fit(values, log, LEFT, RIGHT)
        assert scale.hi > scale.lo
        assert all(math.isfinite(scale(v)) for v in values)


def _chart(**changes: object) -> Chart:
    base = dict(title="T", x_label="x", y_label="y", series=[
        Series("a <b>&", [1.0, 2.0, 3.0], [1.0, float("nan"), 9.0], svgplot.PALETTE[0]),
        Series("rate", [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], svgplot.PALETTE[4], marker="x", right_axis=True),
        Series("limits", [2.0], [5.0], svgplot.PALETTE[0], marker="bar", in_legend=False),
    ], lines=[RefLine(4.0, "SLO 4 ms", "#7f7f7f"), RefLine(2.5, "capacity", "#000", vertical=True)],
        right_label="req/s", y_log=True)
    base.update(changes)
    return Chart(**base)  # type: ignore[arg-type]


def test_the_svg_is_well_formed_escaped_and_holds_what_was_drawn() -> None:
    svg = svgplot.render(_chart())
    root = ET.fromstring(svg)  # well-formed XML, labels escaped
    assert root.tag == "svg" and root.attrib["role"] == "img"
    texts = [t.text for t in root.iter("text")]
    assert "a <b>&" in texts and "SLO 4 ms" in texts and "capacity" in texts and "req/s" in texts
    assert "limits" not in texts  # a series kept out of the legend
    # The NaN point is left out: the line of "a" joins its two finite points only.
    lines = [p.attrib["d"] for p in root.iter("path") if p.attrib.get("stroke") == svgplot.PALETTE[0]
             and p.attrib.get("stroke-width") == "1.8" and p.attrib["d"].count("L") == 1 and "H" not in p.attrib["d"]]
    assert lines, svg
    assert len(list(root.iter("circle"))) == 2 + 1  # two points of "a", one legend marker
    assert not re.search(r"(?i)https?:|xmlns|<script|href", svg)


def test_a_log_axis_leaves_out_values_it_cannot_draw() -> None:
    chart = _chart(series=[Series("zero", [1.0, 2.0], [0.0, 3.0], "#000")], lines=[RefLine(0.0, "", "#000")])
    root = ET.fromstring(svgplot.render(chart))
    assert len(list(root.iter("circle"))) == 1 + 1  # the 0 is not drawn on the log axis; one legend marker
