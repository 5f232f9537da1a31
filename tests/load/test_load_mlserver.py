"""The latency engine against a real MLServer (parallel_workers=0) on 127.0.0.1, REST and gRPC."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.config import Tensor
from harness.load import InferenceError, LoadSpec, infer_once, run_load
from harness.load.result import LoadResult
from harness.load.spec import Protocol
from harness.localserver import IRIS_INPUT, MLServerProcess
from harness.localserver.process import group_members

# Fixtures `mlserver` and `mlserver_factory` come from the shared real-MLServer module.
pytestmark = [pytest.mark.slow, pytest.mark.latency]


def _endpoint(server: MLServerProcess, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_address


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_once_returns_the_parsed_response(mlserver: MLServerProcess, protocol: str) -> None:
    response = infer_once(_endpoint(mlserver, protocol), "iris", IRIS_INPUT, protocol=protocol)  # type: ignore[arg-type]
    assert response["model_name"] == "iris"
    assert response["outputs"][0]["data"] == [0]
    with pytest.raises(InferenceError) as info:
        infer_once(_endpoint(mlserver, protocol), "no-such-model", IRIS_INPUT, protocol=protocol)  # type: ignore[arg-type]
    assert info.value.kind in ("http_404", "grpc_NOT_FOUND", "grpc_INVALID_ARGUMENT")
    assert "no-such-model" in str(info.value)


def test_infer_once_takes_a_profile_tensor(mlserver: MLServerProcess) -> None:
    tensor = Tensor(name="predict", shape=[1, 4], data=[6.7, 3.0, 5.2, 2.3])
    response = infer_once(mlserver.http_url, "iris", tensor, "http", 10.0)
    assert response["outputs"][0]["data"] == [2]  # virginica


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_closed_loop(mlserver: MLServerProcess, protocol: str) -> None:
    result = run_load(LoadSpec(endpoint=_endpoint(mlserver, protocol), model="iris", protocol=protocol,  # type: ignore[arg-type]
                               mode="closed", concurrency=4, duration_s=1.2, warmup_s=0.3))
    assert result.complete, result.failure
    assert result.errors == {} and result.ok == result.requests > 20
    assert 0 < result.latency_ms.p50 <= result.latency_ms.p99 <= result.latency_ms.max
    assert result.throughput_rps == pytest.approx(result.ok / result.duration_s)
    assert result.client_cpu_ms_per_request > 0
    assert len(result.windows) == 3


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_open_loop(mlserver: MLServerProcess, protocol: str) -> None:
    result = run_load(LoadSpec(endpoint=_endpoint(mlserver, protocol), model="iris", protocol=protocol,  # type: ignore[arg-type]
                               rate=40.0, poisson=protocol == "grpc", seed=7, duration_s=1.5, warmup_s=0.3))
    assert result.complete, result.failure
    assert result.errors == {}
    assert result.offered_rate_rps == 40.0
    expected = 60 if protocol == "http" else None  # Poisson: the count varies around 60
    if expected is not None:
        assert result.requests == pytest.approx(expected, abs=2)
    else:
        assert 25 <= result.requests <= 110
    assert result.latency_ms.p50 > 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_model_counts_errors(mlserver: MLServerProcess, protocol: str) -> None:
    result = run_load(LoadSpec(endpoint=_endpoint(mlserver, protocol), model="no-such-model",  # type: ignore[arg-type]
                               protocol=protocol, rate=30.0, duration_s=0.9, warmup_s=0.1))
    assert result.complete  # the server answered every request: errors, not a failure
    assert result.ok == 0 and result.requests > 0
    assert sum(result.errors.values()) == result.requests
    assert set(result.errors) <= {"http_404", "grpc_NOT_FOUND", "grpc_INVALID_ARGUMENT"}
    assert result.error_rate == 1.0


def test_server_killed_mid_run(mlserver_factory: Callable[[], MLServerProcess]) -> None:
    server = mlserver_factory()
    pid = server.pid
    assert pid is not None
    results: dict[str, LoadResult] = {}

    def measure(protocol: Protocol) -> None:
        results[protocol] = run_load(LoadSpec(endpoint=_endpoint(server, protocol), model="iris", protocol=protocol,
                                              mode="closed", concurrency=2, duration_s=6.0, warmup_s=0.3,
                                              timeout_s=2.0))

    # REST and gRPC at once against one server (one MLServer start instead of two); the whole process
    # group is killed 1.2 s in, after the warm-up, while windows are being measured.
    runners = [threading.Thread(target=measure, args=(p,)) for p in ("http", "grpc")]
    killer = threading.Timer(1.2, server.kill)
    for thread in runners:
        thread.start()
    killer.start()
    try:
        for thread in runners:
            thread.join(timeout=60)
    finally:
        killer.cancel()
        killer.join()
    assert set(results) == {"http", "grpc"}
    assert not server.is_alive() and group_members(pid) == []  # kill() took the whole group down
    for protocol, result in results.items():
        assert result.complete is False, protocol
        assert result.failure is not None and "stopped answering" in result.failure, protocol
        assert result.ok > 0, protocol  # the partial figures before the kill are kept
        assert result.latency_ms.p50 > 0, protocol
        assert sum(result.errors.values()) > 0, protocol
        assert result.duration_s < 6.0, protocol


@pytest.mark.serial
def test_sweep_capacity_holds_at_085x_and_not_at_14x(paced_mlserver: MLServerProcess, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Done-when of the capacity sweep: within 120 s, `load --sweep --slo-p99-ms 25` finds a capacity
    that an open-loop run at 0.85x holds and one at 1.4x does not.

    The server is a real MLServer whose model holds the event loop 4 ms per request, so its knee
    is set by design (at most 250 req/s) rather than by the CPU that the test shares with other
    work; iris's knee on two shared cores moves by tens of percent from one minute to the next.
    Other processes only ever add latency, so one passing run of two at 0.85x shows the SLO can be
    held there, and one failing run of two at 1.4x shows it cannot; for the same reason a sweep can
    only err low, so when 1.4x of its capacity holds twice, a second sweep's higher capacity decides."""
    from harness.checks.slo import evaluate_slo, failed
    from harness.cli import main
    from harness.config import Slo
    from harness.load.sweep import SweepResult, bracket, counted
    from tests.kit.mlserver_fixtures import PACED, PACED_SERVICE_MS

    out = tmp_path / "sweep.json"
    printed = ""

    def sweep_once() -> float:
        nonlocal printed
        # A sweep whose bounding miss was measured while the load client was overloaded (the machine's
        # CPU went elsewhere for a while: once, every step from the 7th to the 22nd was) says only "at
        # least": the harness calls that inconclusive, and so does this test, which then sweeps once more.
        for _ in range(2):
            # Steps of 2 s after 0.5 s of warm-up (the default: 3 s, at least 300 requests, 1 s): each step
            # still holds 200+ requests. At a 15 % resolution the measured failing rate is at most 1.15x
            # the passing one, well under the 1.4x checked below, and it takes about one step fewer than
            # the default 5 %. (25 % was tried in session 10 and set back: docs/benchmarks.md, fifth round.)
            code = main(["load", "--endpoint", paced_mlserver.http_url, "--model", PACED, "--sweep",
                         "--slo-p99-ms", "25", "--sweep-start-rate", "100", "--sweep-resolution", "0.15",
                         "--duration", "2", "--warmup", "0.5", "--json", str(out)])
            printed += capsys.readouterr().out
            sweep = json.loads(out.read_text())
            assert code == 0, printed
            steps = SweepResult.model_validate(sweep).steps
            upper = bracket(counted(steps))[1]
            bounding = [s for s in steps if s.offered_rate_rps == upper and not s.meets_slo]
            if not (bounding and bounding[-1].client_overloaded):
                break
        assert sweep["converged"] and sweep["elapsed_s"] <= 120, printed
        capacity = float(sweep["capacity_rps"])
        # The sleep alone allows 250 req/s; MLServer's own work per request (~3 ms) lowers that: 141 req/s
        # on the 2-core machine, quiet or with both cores busy elsewhere. Never as low as 100.
        assert 0.4 * 1000 / PACED_SERVICE_MS <= capacity <= 1000 / PACED_SERVICE_MS, printed
        return capacity

    slo = Slo(p99_ms=25.0)
    seen: list[str] = []

    def holds(rate: float) -> bool:
        result = run_load(LoadSpec(endpoint=paced_mlserver.http_url, model=PACED, rate=rate, duration_s=2.0,
                                   window_s=2.0, warmup_s=0.5))
        verdicts = failed(evaluate_slo(result.to_dict(), slo))
        seen.append(f"{rate:.1f} req/s: p99 {result.latency_ms.p99:.2f} ms, achieved "
                    f"{result.achieved_rate_rps:.1f}/s, {'misses' if verdicts else 'meets'} the SLO")
        return not verdicts

    capacity = sweep_once()
    if holds(1.4 * capacity) and holds(1.4 * capacity):
        # On a shared machine a sweep errs low, never high: the lowest miss bounds its bracket
        # (harness/load/sweep.py), and one slow window, which other work can cause at any rate, is a
        # miss. Seen once: a miss at 141 req/s (p99 59 ms, p50 6.7 ms) with the knee near 170 bounded a
        # sweep at 119, and 1.4x that (166 req/s) held twice. Of two sweeps the higher capacity is the truer.
        capacity = max(capacity, sweep_once())
        assert not holds(1.4 * capacity) or not holds(1.4 * capacity), printed + "\n".join(seen)
    assert holds(0.85 * capacity) or holds(0.85 * capacity), printed + "\n".join(seen)
    print(printed + "\n".join(seen))  # shown with -rP: the curve and the two checks
