"""The release gate on crafted reports: verdicts of the pure function and exit codes of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.checks.slo import evaluate_slo
from harness.cli import main
from harness.config import Slo
from harness.report import RunReport, format_verdict, gate, load_report, parse_report

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "reports"


def crafted(name: str) -> RunReport:
    return load_report(DATA / name)


def edited(name: str, edit: Any, producer: bool = True) -> RunReport:
    """`name` changed by `edit`; as the harness would have written it (SLO verdicts drawn from the edited
    figures, as `ReportBuilder.add_latency` draws them) unless `producer` is false (a tampered file)."""
    data = json.loads((DATA / name).read_text(encoding="utf-8"))
    edit(data)
    if producer:
        redraw_slo_verdicts(data)
    return parse_report(data, name)


def redraw_slo_verdicts(data: dict[str, Any]) -> None:
    for entry in data["latency"]:
        if entry.get("slo") is not None:
            entry["slo_verdicts"] = [v.model_dump() for v in evaluate_slo(entry["result"], Slo(**entry["slo"]))]


# So many samples that each percentile's uncertainty interval is a point: the bound alone decides.
EXACT = 10**9


def with_samples(data: dict[str, Any], samples: int) -> None:
    for entry in data["latency"]:
        result = entry["result"]
        result["ok"] = result["requests"] = samples
        result["late_send_fraction"] = result["late_sends"] / samples


def scale_p99(factor: float, samples: int | None = None) -> RunReport:
    """pass.json with iris-gpu's p99 (overall and per window) set to baseline p99 * factor."""
    base = crafted("baseline.json").latency[0].result.latency_ms.p99

    def edit(data: dict[str, Any]) -> None:
        result = data["latency"][0]["result"]
        result["latency_ms"]["p99"] = base * factor
        # Percentiles stay ordered, as measured ones are.
        for above in ("p99_9", "max"):
            result["latency_ms"][above] = max(result["latency_ms"][above], base * factor)
        for below in ("min", "mean", "p50", "p90", "p95"):
            result["latency_ms"][below] = min(result["latency_ms"][below], base * factor)
        for window in result["windows"]:
            window["p99_ms"] = base * factor
        if samples is not None:
            with_samples(data, samples)

    return edited("pass.json", edit)


def baseline_with(samples: int) -> RunReport:
    return edited("baseline.json", lambda data: with_samples(data, samples))


def write(tmp_path: Path, report: RunReport, name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(report.model_dump_json(), encoding="utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr


# --- the pure verdict ------------------------------------------------------------------
def test_pass_against_baseline() -> None:
    verdict = gate(crafted("pass.json"), crafted("baseline.json"), 0.10, allow_simulated=False)
    assert verdict.passed and verdict.exit_code == 0 and not verdict.failures
    # two models x p50/p95/p99, each about 5 % slower than the baseline
    assert len(verdict.comparisons) == 6
    assert all(c.ok and c.change == pytest.approx(1 / 0.95 - 1) for c in verdict.comparisons)


def test_failed_check_fails_with_its_reason() -> None:
    verdict = gate(crafted("failed-check.json"), None, 0.10, allow_simulated=False)
    assert not verdict.passed and verdict.exit_code == 1
    (failure,) = verdict.failures
    assert failure.kind == "check"
    assert failure.subject == "gpu: a GPU pod sees exactly its allocated GPUs"
    assert "sees 2 GPUs" in failure.detail
    assert "no baseline given" in " ".join(verdict.notes)


@pytest.mark.parametrize(("factor", "passes"), [(1.099, True), (1.10, True), (1.101, False), (2.0, False)])
def test_regression_bound_when_the_measurement_is_exact(factor: float, passes: bool) -> None:
    verdict = gate(scale_p99(factor, EXACT), baseline_with(EXACT), 0.10, allow_simulated=False)
    assert verdict.passed is passes
    p99 = next(c for c in verdict.comparisons if c.load.startswith("iris-gpu") and c.percentile == "p99")
    assert p99.change == pytest.approx(factor - 1)
    if not passes:
        (failure,) = verdict.failures
        assert failure.kind == "regression" and failure.subject == "iris-gpu http open 100 rps p99"
        assert "combined uncertainty" in failure.detail


def test_a_change_within_the_measurements_uncertainty_is_not_a_regression() -> None:
    """3000 samples put p99 somewhere in [10.9, 14.6] ms: +20 % is within the noise, +100 % is not."""
    p99 = next(c for c in gate(scale_p99(1.2), crafted("baseline.json"), 0.10, False).comparisons
                if c.load.startswith("iris-gpu") and c.percentile == "p99")
    assert p99.ok and p99.within_noise
    assert p99.baseline_interval is not None and p99.current_interval is not None
    assert p99.current_interval.low <= p99.baseline_interval.high
    assert p99.current_ms - p99.baseline_ms <= p99.noise_ms
    verdict = gate(scale_p99(2.0), crafted("baseline.json"), 0.10, False)
    assert [f.subject for f in verdict.failures] == ["iris-gpu http open 100 rps p99"]


def test_the_minimum_absolute_change_keeps_tiny_shifts_from_regressing() -> None:
    exact_report = edited("pass.json", lambda data: with_samples(data, EXACT))
    # every percentile is ~5 % slower; p50 grows by 0.20-0.25 ms, p99 by 0.60-0.75 ms
    verdict = gate(exact_report, baseline_with(EXACT), 0.0, False, min_change_ms=0.5)
    assert {f.subject.rsplit(" ", 1)[1] for f in verdict.failures} == {"p99"}
    assert len(gate(exact_report, baseline_with(EXACT), 0.0, False, min_change_ms=0.0).failures) == 6
    with pytest.raises(ValueError, match="min_change_ms"):
        gate(exact_report, None, 0.1, False, min_change_ms=-1)


def test_a_tighter_bound_fails_the_same_report() -> None:
    exact_report = edited("pass.json", lambda data: with_samples(data, EXACT))
    assert gate(exact_report, baseline_with(EXACT), 0.10, False).passed
    verdict = gate(exact_report, baseline_with(EXACT), 0.05, False, min_change_ms=0.0)
    assert {f.kind for f in verdict.failures} == {"regression"} and len(verdict.failures) == 6


def test_faster_is_never_a_regression() -> None:
    # against itself every change is 0 % (at the bound 0); iris-gpu's p99 is 80 % faster
    verdict = gate(scale_p99(0.2), crafted("pass.json"), 0.0, allow_simulated=False)
    assert verdict.passed and min(c.change for c in verdict.comparisons) < -0.7


def test_simulated_report_is_refused_unless_allowed() -> None:
    sim = crafted("simulated.json")
    refused = gate(sim, None, 0.10, allow_simulated=False)
    assert refused.refused and not refused.passed and refused.exit_code == 1
    assert [f.kind for f in refused.failures] == ["refused"]
    first = format_verdict(refused, "simulated.json").splitlines()[0]
    assert first.startswith("REFUSED:") and "SIMULATED CLUSTER" in first
    allowed = gate(sim, None, 0.10, allow_simulated=True)
    assert allowed.passed and not allowed.refused
    first = format_verdict(allowed, "simulated.json").splitlines()[0]
    assert first.startswith("SIMULATED CLUSTER") and "PASS" in first


def test_simulated_baseline_cannot_judge_a_real_report() -> None:
    verdict = gate(crafted("pass.json"), crafted("simulated.json"), 0.10, allow_simulated=False)
    assert any(f.kind == "refused" and "baseline" in f.subject for f in verdict.failures)


def test_skipped_checks_fail_unless_their_suite_is_allowed() -> None:
    def skip_gpu(data: dict[str, Any]) -> None:
        check = next(c for c in data["checks"] if c["suite"] == "gpu")
        check.update(status="skip", reason="no NVIDIA driver on the node")

    report = edited("pass.json", skip_gpu)
    verdict = gate(report, None, 0.10, False)
    (failure,) = verdict.failures
    assert failure.kind == "skip" and "allowed-skips.yaml" in failure.detail
    assert gate(report, None, 0.10, False, allow_skip=["gpu"]).passed
    assert gate(report, None, 0.10, False, allow_skip=["*"]).passed
    assert not gate(report, None, 0.10, False, allow_skip=["latency"]).passed


def test_error_status_fails() -> None:
    report = edited("pass.json", lambda d: d["checks"][0].update(status="error", reason="fixture crashed"))
    assert [f.kind for f in gate(report, None, 0.1, False).failures] == ["check"]


def test_missing_measurement_and_different_load_fail() -> None:
    only_gpu = edited("pass.json", lambda d: d["latency"].pop(1))
    verdict = gate(only_gpu, crafted("baseline.json"), 0.10, False)
    assert [(f.kind, f.subject) for f in verdict.failures] == [("missing", "iris-cpu http open 100 rps")]
    other_rate = edited("pass.json", lambda d: d["latency"][0]["result"].update(offered_rate_rps=50.0))
    kinds = [f.kind for f in gate(other_rate, crafted("baseline.json"), 0.10, False).failures]
    assert kinds == ["missing"]
    extra = gate(crafted("pass.json"), edited("baseline.json", lambda d: d["latency"].pop(1)), 0.10, False)
    assert extra.passed and any("not in the baseline" in n for n in extra.notes)


def test_incomplete_run_and_slo_miss_fail() -> None:
    def incomplete(data: dict[str, Any]) -> None:
        data["latency"][0]["result"].update(complete=False, failure="server died mid-run")

    verdict = gate(edited("pass.json", incomplete), None, 0.10, False)
    assert [(f.kind, f.detail) for f in verdict.failures] == [
        ("incomplete", "load run incomplete: server died mid-run")
    ]

    def slo_miss(data: dict[str, Any]) -> None:
        data["latency"][1]["result"]["latency_ms"].update(p50=25.0, p90=25.0, p95=25.0, p99=25.0, p99_9=25.0)

    verdict = gate(edited("pass.json", slo_miss), None, 0.10, False)
    assert [(f.kind, f.detail) for f in verdict.failures] == [("slo", "p50 25.00 ms > SLO 20 ms")]


def test_empty_or_unfinished_report_fails() -> None:
    verdict = gate(edited("pass.json", lambda d: d.update(checks=[], finished=None)), None, 0.10, False)
    # the selected tests have no verdicts either
    assert [f.kind for f in verdict.failures] == ["partial", "unfinished", "empty"]


def test_negative_bound_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        gate(crafted("pass.json"), None, -0.1, False)


def test_failure_table_lists_every_problem() -> None:
    report = edited("failed-check.json", lambda d: d["latency"][0]["result"]["latency_ms"].update(p50=5.7))
    text = format_verdict(gate(report, crafted("baseline.json"), 0.10, False), "r.json")
    lines = text.splitlines()
    assert lines[0] == "FAIL: r.json: 2 problems"
    assert lines[2].split() == ["KIND", "SUBJECT", "DETAIL"]
    assert any(line.startswith("check ") and "sees 2 GPUs" in line for line in lines)
    assert any(line.startswith("regression ") and "iris-gpu http open 100 rps p50" in line for line in lines)
    assert any("REGRESSED" in line for line in lines)


# --- the command line ------------------------------------------------------------------
def test_cli_pass_and_fail_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = str(DATA / "baseline.json")
    assert main(["gate", "--report", str(DATA / "pass.json"), "--baseline", baseline]) == 0
    assert capsys.readouterr().out.startswith("PASS: ")
    assert main(["gate", "--report", str(DATA / "failed-check.json")]) == 1
    assert capsys.readouterr().out.startswith("FAIL: ")
    regressed = write(tmp_path, scale_p99(1.2, EXACT))
    baseline = str(write(tmp_path, baseline_with(EXACT), "b.json"))
    assert main(["gate", "--report", str(regressed), "--baseline", baseline, "--max-regression", "25%"]) == 0
    capsys.readouterr()
    assert main(["gate", "--report", str(regressed), "--baseline", baseline, "--max-regression", "0.15"]) == 1
    assert "+20.0%" in capsys.readouterr().out
    assert main(["gate", "--report", str(regressed), "--baseline", baseline, "--max-regression", "0.15",
                 "--min-change-ms", "3"]) == 0


def test_cli_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    sim = str(DATA / "simulated.json")
    assert main(["gate", "--report", sim]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith("REFUSED: ")
    assert main(["gate", "--report", sim, "--allow-simulated"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("SIMULATED CLUSTER")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--report", "MISSING.json"], "MISSING.json: report file not found"),
        (["--report", str(DATA / "not-json.json")], "not-json.json: not valid JSON at line 2"),
        (["--report", str(DATA / "wrong-version.json")], "wrong-version.json: schema_version: expected '1'"),
        (["--report", str(DATA / "missing-field.json")], "missing-field.json: latency[0].result.latency_ms.p99"),
        (["--report", str(DATA / "pass.json"), "--baseline", str(DATA / "not-json.json")], "not-json.json"),
    ],
)
def test_cli_unusable_input_exits_2_with_one_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_cli_in_a_real_process_never_shows_a_traceback() -> None:
    code, out, err = run_cli("gate", "--report", str(DATA / "missing-field.json"))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("gate", "--report", str(DATA / "pass.json"), "--max-regression", "lots")
    assert code == 2 and "--max-regression" in err and "Traceback" not in err


def test_table_rows_stay_one_line_for_long_multiline_reasons() -> None:
    reason = "def test_x():\n>       assert 1 == 2\nE       assert 1 == 2\n" + "x" * 500
    report = edited("pass.json", lambda d: d["checks"][0].update(status="fail", reason=reason))
    lines = format_verdict(gate(report, None, 0.10, False), "r.json").splitlines()
    row = next(line for line in lines if line.startswith("check "))
    assert "def test_x(): > assert 1 == 2 E assert 1 == 2" in row
    assert row.endswith("...") and len(row) < 320


# --- complete evidence ----------------------------------------------------------------
def _first_line(report: RunReport, allow_simulated: bool = False) -> str:
    return format_verdict(gate(report, None, 0.10, allow_simulated), "r.json").splitlines()[0]


def test_interrupted_run_is_refused_with_its_reason() -> None:
    report = edited("pass.json", lambda d: d.update(interrupted=True, interrupted_reason="stopped early: -x"))
    verdict = gate(report, None, 0.10, False)
    assert not verdict.passed and [f.kind for f in verdict.failures] == ["interrupted"]
    assert _first_line(report) == (
        "REFUSED: r.json: incomplete evidence: the run was stopped early (stopped early: -x); "
        "its evidence is partial; 1 problem"
    )


def test_partial_suite_report_is_refused() -> None:
    def latency_only(data: dict[str, Any]) -> None:
        data["checks"] = [c for c in data["checks"] if c["suite"] == "latency"]
        data["selection"].update(args=["suites/test_latency.py"],
                                 tests=[c["id"] for c in data["checks"]])

    report = edited("pass.json", latency_only)
    (failure,) = gate(report, None, 0.10, False).failures
    assert failure.kind == "partial" and "placement, isolation, scheduling, gpu did not run" in failure.detail
    assert _first_line(report).startswith("REFUSED: r.json: incomplete evidence: suite(s) placement")


def test_deselected_or_single_test_selection_is_refused() -> None:
    k = edited("pass.json", lambda d: d["selection"].update(keyword="latency", deselected=7, whole=False))
    (failure,) = gate(k, None, 0.10, False).failures
    assert failure.kind == "partial" and "7 test(s) deselected; -k 'latency'" in failure.detail
    one = edited("pass.json", lambda d: d["selection"].update(args=["suites/test_placement.py::test_a"],
                                                               whole=False))
    assert "single tests named: suites/test_placement.py::test_a" in gate(one, None, 0.10, False).failures[0].detail


def test_selected_test_without_verdict_and_missing_selection_are_refused() -> None:
    lost = edited("pass.json", lambda d: d["checks"].pop(0))
    assert [f.kind for f in gate(lost, None, 0.10, False).failures] == ["partial"]
    unknown = edited("pass.json", lambda d: d.update(selection=None))
    (failure,) = gate(unknown, None, 0.10, False).failures
    assert failure.kind == "partial" and "does not record which tests were selected" in failure.detail


def test_malformed_run_id_is_refused() -> None:
    report = edited("pass.json", lambda d: d.update(run_id="Nightly 1001; rm -rf"))
    assert [f.kind for f in gate(report, None, 0.10, False).failures] == ["tampered"]


def test_simulated_refusal_comes_first_even_when_also_incomplete() -> None:
    report = edited("simulated.json", lambda d: d.update(interrupted=True))
    assert _first_line(report).startswith("REFUSED: r.json is evidence from a SIMULATED CLUSTER")
    assert _first_line(report, allow_simulated=True).startswith(
        "SIMULATED CLUSTER (accepted with --allow-simulated): REFUSED: r.json: incomplete evidence")


def test_allow_list_accepts_exactly_the_listed_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.report.allowlist import AllowedSkip, AllowList

    def skip_cpu_pod(data: dict[str, Any]) -> None:
        check = next(c for c in data["checks"] if c["id"].endswith("test_cpu_pod_sees_no_gpu"))
        check.update(status="skip", reason="NVIDIA_VISIBLE_DEVICES=all cannot be hidden here")

    report = edited("pass.json", skip_cpu_pod)
    name = "a pod that asked for no GPU sees none"
    listed = AllowList((AllowedSkip("kind-gpu*", name, "the runtime exposes every GPU", "cannot be hidden"),),
                       "allow.yaml")
    verdict = gate(report, None, 0.10, False, allow_list=listed)
    assert verdict.passed and any("the runtime exposes every GPU" in n for n in verdict.notes)
    other_profile = AllowList((AllowedSkip("kind-cpu", name, "fake GPUs", ".*"),), "allow.yaml")
    assert [f.kind for f in gate(report, None, 0.10, False, allow_list=other_profile).failures] == ["skip"]
    path = write(tmp_path, report)
    allow = tmp_path / "allow.yaml"
    allow.write_text(f"allowed_skips:\n  - {{profile: kind-gpu, check: '{name}', reason: runtime shows all, "
                     "skip_reason: 'NVIDIA_VISIBLE_DEVICES=all'}\n")
    assert main(["gate", "--report", str(path), "--allow-list", str(allow)]) == 0
    assert main(["gate", "--report", str(path)]) == 1
    capsys.readouterr()
    allow.write_text("allowed_skips:\n  - {profile: kind-gpu, check: x}\n")
    assert main(["gate", "--report", str(path), "--allow-list", str(allow)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {allow}: allowed_skips[0]: missing reason, skip_reason (expected exactly profile, check, reason "
        "and skip_reason)")
