"""report.json, junit.xml and report.html: content, self-containment, and the simulated first line."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.report import RunReport, load_report, parse_report, summary_text, write_outputs
from harness.report.html import latency_plot_svg, render_html
from harness.report.junit import render_junit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "reports"
URL = re.compile(r"(?i)\b(?:https?|ftp)://|//[a-z0-9.-]+\.[a-z]{2,}/")


def crafted(name: str) -> RunReport:
    return load_report(DATA / name)


class _Refs(HTMLParser):
    """Every tag and every attribute that could fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data") and value is not None:
                self.refs.append(value)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rendering the report tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_write_outputs_writes_three_files(tmp_path: Path) -> None:
    report = crafted("pass.json")
    written = write_outputs(report, tmp_path / "out")
    assert set(written) == {"json", "junit", "html"}
    assert [p.name for p in written.values()] == ["report.json", "junit.xml", "report.html"]
    assert load_report(written["json"]) == report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html", "report.json"]
    only_json = write_outputs(report, tmp_path / "j", html=False, junit=False)
    assert list(only_json) == ["json"]


@pytest.mark.parametrize("name", ["pass.json", "failed-check.json", "simulated.json"])
def test_html_is_self_contained_and_renders_offline(name: str, no_network: None) -> None:
    page = render_html(crafted(name))
    parser = _Refs()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert "@import" not in page and "url(" not in page
    # The only references are relative artifact links; the plots are inline SVG text, not images.
    for ref in parser.refs:
        assert not re.match(r"[a-z][a-z0-9+.-]*:|//", ref), ref
    assert not URL.search(page), URL.search(page)
    assert "<img" not in page and "xmlns" not in page and "xlink" not in page
    report = crafted(name)
    assert page.count("<svg ") == (1 if report.latency else 0) + len(report.capacity)
    if report.latency:
        plot = page[page.index('<svg '):page.index("</svg>") + 6]
        assert 'role="img"' in plot and 'aria-label="Latency by percentile (bars: SLO limits)"' in plot
        assert all(escape(entry.load_key) in plot for entry in report.latency)


def test_html_sections_hold_the_evidence() -> None:
    report = crafted("failed-check.json")
    page = render_html(report)
    for heading in ("Placement matrix", "GPU inventory", "Latency", "NVML probes", "Lifecycle phases", "Artifacts"):
        assert f"<h2>{heading}</h2>" in page
    uuid = report.nodes[2].gpu_uuids[0]
    # GPU inventory: the UUID and who holds it
    assert f"<code>{uuid}</code> → seldon-mesh/mlserver-gpu-0" in page
    # placement matrix: one column per node, the GPU pod marked in the GPU node's column
    assert "seldon-gpu-worker2 (gpu)" in page and "● 1 GPU" in page
    # latency table figures
    lat = report.latency[0].result.latency_ms
    assert f"{lat.p99:.2f}" in page and f"{lat.p50:.2f}" in page
    assert '<a href="evidence/seldon-mesh/events.txt">' in page
    assert "sees 2 GPUs" in page


def test_html_escapes_report_text() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["checks"][0].update(status="fail", reason='<script>alert("x")</script>')

    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    edit(data)
    page = render_html(parse_report(data, "x"))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_simulated_first_lines() -> None:
    sim, real = crafted("simulated.json"), crafted("pass.json")
    for render in (render_html, render_junit, summary_text):
        first = render(sim).splitlines()[0]
        assert "SIMULATED CLUSTER" in first, (render.__name__, first)
        assert "SIMULATED" not in render(real), render.__name__
    assert "<title>SIMULATED CLUSTER: harness report sim-local</title>" in render_html(sim)
    assert 'class="banner"' in render_html(sim) and 'class="banner"' not in render_html(real)


def test_junit_cases_and_properties() -> None:
    report = crafted("failed-check.json")
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(report.checks) == int(suite.attrib["tests"])
    assert suite.attrib["failures"] == "1" and suite.attrib["skipped"] == "0"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.attrib["name"] for c in failed] == ["a GPU pod sees exactly its allocated GPUs"]
    failure = failed[0].find("failure")
    assert failure is not None and "sees 2 GPUs" in failure.attrib["message"]
    assert failed[0].attrib["classname"] == "gpu"
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["simulated"] == "false" and props["gpu_count"] == "1"
    gpu = report.latency[0].result
    assert float(props["latency.iris-gpu.http.open.p50_ms"]) == pytest.approx(gpu.latency_ms.p50)
    assert float(props["latency.iris-gpu.http.open.p95_ms"]) == pytest.approx(gpu.latency_ms.p95)
    assert float(props["latency.iris-gpu.http.open.p99_ms"]) == pytest.approx(gpu.latency_ms.p99)
    assert float(props["latency.iris-cpu.http.open.achieved_rate_rps"]) == pytest.approx(
        report.latency[1].result.achieved_rate_rps
    )
    assert float(props["latency.iris-cpu.http.open.error_rate"]) == 0.0


def test_junit_skip_and_error() -> None:
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    data["checks"][0].update(status="skip", reason="no GPU; run with --require-gpu on a GPU runner")
    data["checks"][1].update(status="error", reason="fixture failed: timeout")
    suite = ET.fromstring(render_junit(parse_report(data, "x"))).find("testsuite")
    assert suite is not None
    assert suite.attrib["skipped"] == "1" and suite.attrib["errors"] == "1"
    skipped = suite.find("testcase/skipped")
    assert skipped is not None and skipped.attrib["message"].startswith("no GPU")
    assert ET.fromstring(render_junit(crafted("simulated.json"))).attrib["name"].startswith("SIMULATED CLUSTER")


def test_plot_without_latency_is_still_an_svg() -> None:
    assert latency_plot_svg([]).startswith("<svg ")
    page = render_html(parse_report({**json.loads((DATA / "pass.json").read_text()), "latency": []}, "x"))
    assert "No latency measured." in page and "<svg" not in page


def test_report_command_renders_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    html, junit = tmp_path / "again.html", tmp_path / "sub" / "again.xml"
    assert main(["report", "--report", str(DATA / "simulated.json"), "--html", str(html), "--junit", str(junit)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("SIMULATED CLUSTER")
    assert html.read_text(encoding="utf-8") == render_html(crafted("simulated.json"))
    assert junit.read_text(encoding="utf-8") == render_junit(crafted("simulated.json"))


def test_report_command_bad_input_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", "--report", str(DATA / "wrong-version.json"), "--html",
         str(tmp_path / "x.html")],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "schema_version" in proc.stderr
    assert not (tmp_path / "x.html").exists()


def test_gpu_inventory_shows_holders_at_snapshot_time_only() -> None:
    """A probe pod held its GPU earlier and is gone: the inventory (a snapshot as the run ended)
    does not name it as the holder, and says when the snapshot was taken."""
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    uuid = data["nodes"][2]["gpu_uuids"][0]
    data["placement"][0]["gpu_uuids"] = []
    page = render_html(parse_report(data, "x"))
    assert f"<code>{uuid}</code> →" not in page and "(probe)" not in page
    assert "Holders as of the cluster snapshot taken before cleanup (report finished" in page


def test_headline_names_a_rehearsal_and_an_interruption() -> None:
    from harness.report.model import Rehearsal
    from harness.report.text import headline

    report = load_report(DATA / "simulated.json")
    rehearsed = report.model_copy(update={"rehearsal": Rehearsal(provider="kind", host_gpus_simulated=True)})
    line = headline(rehearsed)
    assert line.startswith("SIMULATED CLUSTER") and "(sim, rehearsal of the kind profile, profile sim)" in line
    cut = report.model_copy(update={"interrupted": True, "interrupted_reason": "stopped early: -x"})
    assert "INTERRUPTED (stopped early: -x), not a pass:" in headline(cut) and "passed:" not in headline(cut)


def test_log_latency_axes_are_labelled_in_plain_milliseconds() -> None:
    """The plots' log axes say "1", "10", "200", "0.5" (plain milliseconds beside the SLO figures)."""
    import xml.etree.ElementTree as ET

    from harness.report.html import latency_plot_svg

    report = crafted("pass.json")
    labels = {t.text for t in ET.fromstring(latency_plot_svg(list(report.latency))).iter("text")}
    assert {"5", "10", "20"} <= labels and not any("e+" in (label or "") for label in labels), labels
