"""Say what is not known: an unbounded capacity, a throughput floor, an overloaded load client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checks.slo import CLIENT_OVERLOADED, evaluate_slo
from harness.config import Slo
from harness.load.sweep import SweepPlan, run_sweep
from harness.report import format_verdict, gate, parse_report
from harness.report.html import render_html
from tests.kit.load_servers import ModelledServer, OverloadedAt, modelled_spec

DATA = Path(__file__).resolve().parents[1] / "data" / "reports"


def _result(**changes: Any) -> dict[str, Any]:
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    result: dict[str, Any] = data["latency"][0]["result"]
    result.update(changes)
    return result


SLO = Slo(p50_ms=20, p95_ms=50, p99_ms=100, min_throughput_rps=50, max_error_rate=0.001)


def test_a_failure_while_the_client_was_overloaded_is_inconclusive() -> None:
    slow = {"min": 2.0, "mean": 80.0, "p50": 60.0, "p90": 90.0, "p95": 120.0, "p99": 200.0, "p99_9": 220.0,
            "max": 240.0}
    late = _result(latency_ms=slow, late_sends=2850, late_send_fraction=0.95)
    (verdict,) = [v for v in evaluate_slo(late, SLO) if v.name == CLIENT_OVERLOADED]
    assert not verdict.ok and verdict.reason.startswith(
        "inconclusive: the load client was overloaded (95.0% of sends late > 5%")
    busy = _result(latency_ms=slow, client_cpu_ms_per_request=20.0, workers=2)  # 20 ms x 99.8/s / 2 = 1.0 core
    assert "client CPU 1.00 of a core per worker > 0.9" in next(
        v for v in evaluate_slo(busy, SLO) if v.name == CLIENT_OVERLOADED).reason
    # A pass is a pass however busy the client was; a failure with a calm client is the server's.
    assert all(v.ok for v in evaluate_slo(_result(late_sends=2850, late_send_fraction=0.95), SLO))
    assert CLIENT_OVERLOADED not in {v.name for v in evaluate_slo(_result(latency_ms=slow), SLO)}


def test_the_gate_names_an_inconclusive_latency_failure() -> None:
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    result = data["latency"][0]["result"]
    result.update(latency_ms={"min": 2.0, "mean": 80.0, "p50": 60.0, "p90": 90.0, "p95": 120.0, "p99": 200.0,
                              "p99_9": 220.0, "max": 240.0}, late_sends=2850, late_send_fraction=0.95)
    entry = data["latency"][0]
    entry["slo_verdicts"] = [v.model_dump() for v in evaluate_slo(result, Slo(**entry["slo"]))]
    verdict = gate(parse_report(data, "r.json"), None, 0.10, False)
    assert not verdict.passed
    inconclusive = [f for f in verdict.failures if f.kind == "inconclusive"]
    assert len(inconclusive) == 1 and "95.0% of sends late" in inconclusive[0].detail
    assert "inconclusive" in format_verdict(verdict, "r.json")


def test_a_capacity_never_bounded_says_so_in_json_html_and_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.report.html as html_module

    monkeypatch.setattr(html_module, "capacity_plot_svg", lambda entry: "")  # the text is judged, not the plot
    server = ModelledServer(1e9)  # never misses within the budget
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), SweepPlan(start_rate=20, budget_s=20), measure=server.measure,
                       clock=server.clock)
    assert result.bounded is False and result.to_dict()["bounded"] is False
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    data["capacity"] = [{**result.to_dict(), "server": "mlserver-gpu", "node": "gpu-0"}]
    report = parse_report(data, "r.json")
    html = render_html(report)
    assert f"&ge; {result.capacity_rps:.1f} req/s (not bounded within the budget" in html
    verdict = gate(report, None, 0.10, False)
    assert verdict.passed and any(f">= {result.capacity_rps:.1f} req/s (not bounded within the budget" in n
                                  for n in verdict.notes)


def test_a_report_without_the_bounded_field_reads_it_from_its_steps() -> None:
    server = ModelledServer(60.0)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), SweepPlan(start_rate=20, budget_s=120, min_requests=0),
                       measure=server.measure, clock=server.clock)
    old = {k: v for k, v in result.to_dict().items() if k != "bounded"}
    assert result.bounded and type(result).model_validate(old).bounded


def test_the_sweep_never_measures_below_a_throughput_floor() -> None:
    server = ModelledServer(30.0)  # capacity 30 req/s, under the SLO's floor of 50 req/s
    spec = modelled_spec()
    result = run_sweep(spec, Slo(p99_ms=25.0, min_throughput_rps=50.0), SweepPlan(start_rate=20, budget_s=120),
                       measure=server.measure, clock=server.clock)
    assert server.rates and min(server.rates) >= 50.0, server.rates
    assert result.capacity_rps == 0 and "no rate down to 50 req/s" in result.stop_reason


def test_a_capacity_drop_shown_only_by_an_overloaded_client_is_inconclusive() -> None:
    from tests.kit.reports import capacity_step, with_capacity

    base = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    with_capacity(base)  # capacity 100 req/s, missed at 105
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    with_capacity(data)
    late = capacity_step(84.0, 90.0, False)
    late.update(late_send_fraction=0.6, reasons=["p99 90 ms > 25", "inconclusive: the load client was overloaded "
                                                 "(60.0% of sends late > 5%); the figures may describe the client"])
    data["capacity"][0].update(capacity_rps=80.0, steps=[capacity_step(80.0, 10.0, True), late])
    baseline = parse_report(base, "b.json")
    verdict = gate(parse_report(data, "r.json"), baseline, 0.10, False)
    (failure,) = verdict.failures
    assert failure.kind == "inconclusive" and "100.0 -> 80.0 req/s" in failure.detail
    assert "that step is inconclusive: the load client was overloaded (60.0% of sends late" in failure.detail
    late["reasons"] = late["reasons"][:1]  # the same drop with a calm client is a capacity failure
    assert [f.kind for f in gate(parse_report(data, "r.json"), baseline, 0.10, False).failures] == ["capacity"]


@pytest.mark.parametrize("times", [1, 2])
def test_a_sweep_that_measured_an_inconclusive_miss_again_passes_the_gate_as_it_was_written(times: int) -> None:
    """The sweep measures an overloaded client's miss again before it counts; the gate's consistency check
    and capacity bound read the steps the same way (`counted`), so the honest report is not "tampered"
    (a rehearsal on a loaded machine was refused so) and its capacity is the sweep's own."""
    server = OverloadedAt(141.0, rate=100.0, times=times)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), SweepPlan(start_rate=100, budget_s=120, min_requests=0),
                       measure=server.measure, clock=server.clock)
    assert result.steps[0].client_overloaded and not result.steps[0].meets_slo
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    data["capacity"] = [{**json.loads(json.dumps(result.to_dict())), "server": "mlserver-gpu", "node": "gpu-0"}]
    report = parse_report(data, "r.json")
    verdict = gate(report, None, 0.10, False)
    assert verdict.passed, verdict.failures
    # Against a baseline of itself: no drop, and the bound is the miss that counted, not the first one.
    same = gate(report, parse_report(data, "b.json"), 0.10, False)
    assert same.passed, same.failures
    (note,) = [n for n in same.notes if "capacity in [" in n]
    upper = 100.0 if times == 2 else min(s.offered_rate_rps for s in result.steps[1:] if not s.meets_slo)
    assert f"capacity in [{result.capacity_rps:.1f}, {upper:.1f})" in note, note
