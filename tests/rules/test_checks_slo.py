"""SLO verdicts: each limit passes at the bound and fails just past it."""

from __future__ import annotations

from typing import Any

from harness.checks.slo import evaluate_slo, failed
from harness.config import Slo


def result(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "latency_ms": {"p50": 4.0, "p95": 9.0, "p99": 20.0}, "throughput_rps": 50.0, "error_rate": 0.0,
        "errors": {}, "offered_rate_rps": 50.0, "achieved_rate_rps": 49.9, "complete": True, "failure": None,
    }
    base.update(over)
    return base


SLO = Slo(p50_ms=4, p95_ms=10, p99_ms=20, min_throughput_rps=40, max_error_rate=0.01)


def test_all_within_limits() -> None:
    assert failed(evaluate_slo(result(), SLO)) == []


def test_p99_just_over() -> None:
    bad = failed(evaluate_slo(result(latency_ms={"p50": 4.0, "p95": 9.0, "p99": 20.01}), SLO))
    assert [v.name for v in bad] == ["p99_ms"]
    assert bad[0].reason == "p99 20.01 ms > SLO 20 ms"


def test_error_rate_and_throughput() -> None:
    bad = failed(evaluate_slo(result(error_rate=0.02, errors={"http_503": 2}, throughput_rps=39.0), SLO))
    assert [v.name for v in bad] == ["min_throughput_rps", "max_error_rate"]
    assert "http_503" in bad[1].reason


def test_achieved_rate_short_of_offered_fails() -> None:
    bad = failed(evaluate_slo(result(achieved_rate_rps=40.0), SLO))
    assert [v.name for v in bad] == ["achieved_rate"]


def test_incomplete_run_fails_with_cause() -> None:
    bad = failed(evaluate_slo(result(complete=False, failure="connection refused after 812 requests"), SLO))
    assert [v.reason for v in bad] == ["run incomplete: connection refused after 812 requests"]


def test_unset_limits_are_not_judged() -> None:
    verdicts = evaluate_slo(result(), Slo())
    assert [v.name for v in verdicts] == ["max_error_rate", "achieved_rate"]
