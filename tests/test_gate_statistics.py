"""The baseline comparison on real measurements: identical sim runs pass against each other, a model
made 2x slower (the sim mesh's `slow_model` fault) fails, and the uncertainty interval is honest.

Each run is the profile's own load (open loop, 40 req/s, three 1 s windows, as profiles/sim.yaml)
through the simulated mesh to a real MLServer, judged by the `gate` command as a user runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.config import parse_profile
from harness.lifecycle import ClusterSession, RunOptions
from harness.load import LoadSpec, run_load
from harness.report import RunReport
from harness.report.builder import ReportBuilder
from harness.report.model import LatencyPercentiles, LatencyWindow, LoadResultData
from harness.report.uncertainty import percentile_interval, quantile_at, quantile_curve

IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"
PROFILE: dict[str, Any] = {
    "name": "gate-statistics",
    "cluster": {"provider": "sim", "name": "gs", "nodes": {
        "cpu_workers": {"count": 1},
        "gpu_workers": [{"count": 1, "gpus": 1, "product": "NVIDIA-H200"}],
    }},
    "servers": [{"name": "mlserver-gpu", "gpus": 1}],
    "models": [{"name": "iris-gpu", "storage_uri": IRIS, "requirements": ["sklearn", "model-on-gpu"],
                "input": {"name": "predict", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}}],
    "slo": {"p99_ms": 1000, "max_error_rate": 0.0},
    "load": {"rate": 40, "duration_s": 3, "warmup_s": 1, "window_s": 1, "max_trials": 1},
    "timeouts": {"server_ready_s": 120, "model_ready_s": 120},
}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSession]:
    profile = parse_profile(PROFILE, "gate-statistics")
    run = ClusterSession(profile, RunOptions(run_id="gs", workdir=tmp_path_factory.mktemp("gate-sim")))
    try:
        run.up()
        run.deploy()
        assert run.deploy_error is None, run.deploy_error
        yield run
    finally:
        run.down()


def measured_report(run: ClusterSession, tmp_path: Path, name: str) -> Path:
    assert run.mesh is not None
    model = run.profile.models[0]
    result = run_load(LoadSpec.from_profile(run.profile, model, run.mesh.http_url)).to_dict()
    builder = ReportBuilder.from_profile(run.profile, name)
    builder.add_check(f"latency::{name}", "one measurement", "pass", suite="latency")
    builder.add_latency(result, slo=run.profile.slo_for(model.name))
    path = tmp_path / f"{name}.json"
    report: RunReport = builder.finish()
    path.write_text(report.model_dump_json(), encoding="utf-8")
    return path


def test_identical_runs_pass_and_a_2x_slower_model_fails(
    session: ClusterSession, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    first = measured_report(session, tmp_path, "first")
    second = measured_report(session, tmp_path, "second")
    code = main(["gate", "--report", str(second), "--baseline", str(first), "--allow-simulated"])
    assert code == 0, capsys.readouterr().out
    capsys.readouterr()
    provider: Any = session.provider
    provider.cluster.faults.slow_model(session.profile.seldon.namespace, "iris-gpu", 2.0)
    try:
        slow = measured_report(session, tmp_path, "slow")
    finally:
        provider.cluster.faults.slow_model(session.profile.seldon.namespace, "iris-gpu", 1.0)
    code = main(["gate", "--report", str(slow), "--baseline", str(first), "--allow-simulated"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "REGRESSED" in out and "regression" in out


# --- the interval on its own ---------------------------------------------------------------
def _result(ok: int, windows: list[float]) -> LoadResultData:
    return LoadResultData(
        engine="harness", mode="open", protocol="http", endpoint="http://127.0.0.1:1", model="m",
        offered_rate_rps=40.0, concurrency=None, poisson=False, duration_s=3, warmup_s=1, workers=1,
        requests=ok, ok=ok, errors={}, error_rate=0.0, achieved_rate_rps=40.0, throughput_rps=40.0,
        late_sends=0, late_send_fraction=0.0,
        latency_ms=LatencyPercentiles(min=2, mean=4, p50=3, p90=5, p95=6, p99=10, p99_9=20, max=30),
        stable=False, trials=1, windows=[LatencyWindow(throughput_rps=40.0, p99_ms=w) for w in windows],
        client_cpu_ms_per_request=0.5, complete=True, failure=None,
    )


def test_the_interval_narrows_with_more_samples_and_covers_every_windows_p99() -> None:
    small, large = _result(120, []), _result(100_000, [])
    for pct in ("p50", "p95", "p99"):
        wide, narrow = percentile_interval(small, pct), percentile_interval(large, pct)
        assert wide.low <= narrow.low <= narrow.high <= wide.high
        value = getattr(small.latency_ms, pct)
        assert narrow.low <= value <= narrow.high
    assert percentile_interval(small, "p99").high == 30  # 120 samples: p99 may be the maximum
    windowed = percentile_interval(_result(100_000, [7.0, 12.0, 25.0]), "p99")
    assert (windowed.low, windowed.high) == (7.0, 25.0)
    nothing = percentile_interval(_result(0, []), "p50")
    assert nothing.samples == 0 and nothing.high == float("inf")


def test_quantile_curve_is_monotone_and_interpolates() -> None:
    curve = quantile_curve(LatencyPercentiles(min=1, mean=2, p50=2, p90=4, p95=5, p99=9, p99_9=8.9, max=12))
    assert [v for _, v in curve] == [1, 2, 4, 5, 9, 9, 12]
    assert quantile_at(curve, 0.25) == pytest.approx(1.5)
    assert quantile_at(curve, -1) == 1 and quantile_at(curve, 2) == 12
