"""Capacity at SLO: the search decisions and the sweep driver against a modelled server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.config import Slo
from harness.errors import UsageError
from harness.load.result import LoadResult
from harness.load.spec import LoadSpec
from harness.load.sweep import SweepPlan, bracket, counted, next_rate, run_sweep, step_seconds
from tests.kit.load_servers import ModelledServer, OverloadedAt, StubServer, modelled_spec


def test_ramp_then_bisect() -> None:
    plan = SweepPlan(start_rate=10, growth=2, resolution=0.05)
    assert next_rate([], plan) == 10
    assert next_rate([(10, True)], plan) == 20
    assert next_rate([(10, True), (20, True), (40, False)], plan) == pytest.approx((20 * 40) ** 0.5)
    # Within 5 %: the candidate 20 is measured once more before it is the answer.
    assert next_rate([(10, True), (20, True), (20.9, False)], plan) == 20
    assert next_rate([(10, True), (20, True), (20.9, False), (20, True)], plan) is None
    # The first step already fails: ramp down, measure min_rate last, and give up below it.
    assert next_rate([(10, False)], plan) == 5
    assert next_rate([(1.5, False)], plan) == 1.0
    assert next_rate([(1.5, False), (1.0, False)], plan) is None


def test_a_candidate_that_misses_on_confirmation_becomes_the_bound() -> None:
    plan = SweepPlan(start_rate=10, growth=2, resolution=0.05)
    history = [(10.0, True), (20.0, True), (20.9, False), (20.0, False)]
    # 20 passed once and then missed: it now bounds the capacity, and the search goes on below it.
    assert bracket(history) == (10.0, 20.0)
    assert next_rate(history, plan) == pytest.approx((10 * 20) ** 0.5)
    assert next_rate([(10, True), (20, True), (20.9, False)], SweepPlan(start_rate=10, confirmations=1)) is None
    with pytest.raises(UsageError, match="confirmations"):
        SweepPlan(confirmations=0).validate()


class FlakyKnee:
    """A server that meets the SLO up to `capacity`, and once, by luck, at `lucky` just above it."""

    def __init__(self, capacity: float, lucky: float) -> None:
        self.inner = ModelledServer(capacity)
        self.lucky = lucky
        self.lucky_used = False

    def measure(self, spec: LoadSpec) -> LoadResult:
        if spec.rate is not None and abs(spec.rate - self.lucky) < 1e-9 and not self.lucky_used:
            self.lucky_used = True
            return self.inner.measure(dataclasses.replace(spec, rate=self.inner.capacity))
        return self.inner.measure(spec)


def test_a_lucky_window_above_the_knee_is_not_the_answer() -> None:
    # Ramp 20, 40, 80 (fails), bisect 56.6 (fails), 47.6 (passes only by luck), 43.6 ... : without
    # the confirmation step the answer would be 47.6, above the real capacity of 45.
    plan = SweepPlan(start_rate=20, budget_s=120, min_requests=0)
    server = FlakyKnee(capacity=45.0, lucky=(40 * (40 * 80) ** 0.5) ** 0.5)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), plan, measure=server.measure, clock=server.inner.clock)
    assert server.lucky_used
    assert result.converged, result.stop_reason
    assert 45 / 1.05 <= result.capacity_rps <= 45
    assert "confirm" in {s.phase for s in result.steps}


def test_low_rate_steps_last_long_enough_for_a_p99() -> None:
    plan = SweepPlan(step_s=3.0, min_requests=300, max_step_s=10.0)
    assert step_seconds(20, plan) == 10.0 and step_seconds(60, plan) == 5.0 and step_seconds(500, plan) == 3.0


def test_noise_never_raises_the_capacity_above_a_failure() -> None:
    # A pass above a failure (a lucky window) does not count: the lowest failure bounds the answer.
    assert bracket([(10, True), (20, False), (30, True)]) == (10, 20)
    assert bracket([(10, False)]) == (None, 10)
    assert bracket([(10, True)]) == (10, None)


@pytest.mark.parametrize("capacity", [37.0, 512.0, 3000.0])
def test_sweep_finds_the_capacity_within_resolution_and_budget(capacity: float) -> None:
    server = ModelledServer(capacity)
    plan = SweepPlan(start_rate=20, budget_s=120, min_requests=0)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), plan, measure=server.measure, clock=server.clock)
    assert result.converged and result.complete, result.stop_reason
    assert capacity / 1.05 <= result.capacity_rps <= capacity
    assert result.elapsed_s <= 120
    assert [s.offered_rate_rps for s in result.steps] == server.rates
    passing = [s for s in result.steps if s.meets_slo]
    assert all(s.goodput_fraction == 1.0 for s in passing)
    assert all(not s.meets_slo and "p99" in s.reasons[0] for s in result.steps if s.offered_rate_rps > capacity)
    assert {s.phase for s in result.steps} == {"ramp", "bisect", "confirm"}
    confirms = [s for s in result.steps if s.phase == "confirm"]
    assert confirms[-1].offered_rate_rps == result.capacity_rps and confirms[-1].meets_slo
    json.dumps(result.to_dict())


def test_sweep_stops_at_the_budget_with_a_lower_bound() -> None:
    server = ModelledServer(1e9)  # never fails within the budget
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), SweepPlan(start_rate=20, budget_s=20), measure=server.measure,
                       clock=server.clock)
    assert not result.converged and "budget" in result.stop_reason
    assert result.elapsed_s <= 20
    assert result.capacity_rps == max(server.rates)


def test_sweep_with_no_capacity_at_the_slo() -> None:
    server = ModelledServer(0.5)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), SweepPlan(start_rate=20), measure=server.measure,
                       clock=server.clock)
    assert result.capacity_rps == 0 and "no rate" in result.stop_reason


def test_sweep_needs_a_latency_slo_and_a_sane_plan() -> None:
    with pytest.raises(UsageError, match="latency SLO"):
        run_sweep(modelled_spec(), Slo(), SweepPlan())
    with pytest.raises(UsageError, match="growth"):
        SweepPlan(growth=1.0).validate()
    with pytest.raises(UsageError, match="shorter than one step"):
        SweepPlan(budget_s=2, step_s=3).validate()


def test_cli_sweep_against_a_stub_writes_the_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep.json"
    # A budget of a few short steps: the stub answers at once, so the ramp runs until the budget ends.
    with StubServer() as server:
        code = main(["load", "--endpoint", server.url, "--model", "stub", "--sweep", "--slo-p99-ms", "250",
                     "--duration", "0.4", "--warmup", "0.1", "--sweep-start-rate", "20", "--sweep-budget", "2.5",
                     "--json", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert code == 0, printed
    assert data["capacity_rps"] >= 20 and data["steps"] and data["steps"][0]["meets_slo"]
    assert data["steps"][0]["goodput_fraction"] == 1.0
    assert "capacity at SLO" in printed


def test_an_inconclusive_miss_is_measured_again_before_it_bounds_the_capacity() -> None:
    server = OverloadedAt(141.0, rate=100.0, times=1)
    plan = SweepPlan(start_rate=100, budget_s=120, min_requests=0)
    result = run_sweep(modelled_spec(), Slo(p99_ms=25.0), plan, measure=server.measure, clock=server.clock)
    assert server.rates[:2] == [100.0, 100.0], server.rates  # the inconclusive step, then the same rate again
    assert "inconclusive" in " ".join(result.steps[0].reasons) and result.steps[1].meets_slo
    assert [s.client_overloaded for s in result.steps[:2]] == [True, False]
    assert counted(result.steps)[0] == (100.0, True)  # the re-measured miss does not count
    assert result.converged and 141.0 / 1.05 <= result.capacity_rps <= 141.0, result.stop_reason
    # Inconclusive twice at one rate: the second counts as a miss, so the search stays bounded.
    twice = OverloadedAt(141.0, rate=100.0, times=2)
    again = run_sweep(modelled_spec(), Slo(p99_ms=25.0), plan, measure=twice.measure, clock=twice.clock)
    assert twice.rates[:3] == [100.0, 100.0, 50.0] and again.capacity_rps < 100.0


def test_cli_sweep_resolution_reaches_the_plan_and_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from harness.commands import load as load_command

    plans: list[SweepPlan] = []

    def capture(spec: Any, slo: Slo, plan: SweepPlan, **_: Any) -> Any:
        plans.append(plan)
        raise SystemExit(0)

    monkeypatch.setattr(load_command, "run_sweep", capture)
    args = ["load", "--endpoint", "http://127.0.0.1:1", "--model", "m", "--sweep", "--slo-p99-ms", "25",
            "--json", str(tmp_path / "s.json")]
    for given, expected in (([], 0.05), (["--sweep-resolution", "0.15"], 0.15), (["--sweep-resolution", "20%"], 0.2)):
        with pytest.raises(SystemExit):
            main([*args, *given])
        assert plans[-1].resolution == pytest.approx(expected)
    assert main([*args, "--sweep-resolution", "1"]) == 2  # (0, 1): a bisection that can never narrow
    assert "--sweep: resolution: expected a fraction in (0, 1), got 1.0" in capsys.readouterr().err
