"""The latency engine without MLServer: pure parts, and a tiny in-test HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.load import LoadSpec, run_load
from harness.load.engine import LATE_FRACTION_LIMIT, Coordinator, more_workers, plan_workers
from harness.load.histogram import encode, merge_encoded, new_histogram, record_seconds, summary_ms
from harness.load.perf_analyzer import input_data, parse_csv, perf_analyzer_args
from harness.load.spec import parse_endpoint
from harness.load.stability import WindowStat, is_stable
from harness.load.worker import WindowRecord, Worker, WorkerPlan
from tests.kit.load_servers import StubServer


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------
def test_percentiles_from_a_known_sample() -> None:
    histogram = new_histogram()
    for ms in range(1, 1001):
        record_seconds(histogram, ms / 1000.0)
    summary = summary_ms(histogram)
    # 3 significant digits: every figure is within 0.1 % of the exact nearest-rank value.
    for key, exact in (("min", 1.0), ("p50", 500.0), ("p90", 900.0), ("p95", 950.0), ("p99", 990.0),
                       ("p99_9", 999.0), ("max", 1000.0), ("mean", 500.5)):
        assert summary[key] == pytest.approx(exact, rel=1e-3), key


def test_merged_worker_histograms_equal_one_histogram() -> None:
    a, b, whole = new_histogram(), new_histogram(), new_histogram()
    for i in range(1, 501):
        record_seconds(a, i / 1e4)
        record_seconds(whole, i / 1e4)
    for i in range(501, 1001):
        record_seconds(b, i / 1e4)
        record_seconds(whole, i / 1e4)
    assert summary_ms(merge_encoded([encode(a), encode(b)])) == summary_ms(whole)
    assert summary_ms(whole, total_seconds=sum(i / 1e4 for i in range(1, 1001)))["mean"] == pytest.approx(50.05)


def test_goodput_count_agrees_with_the_recorded_values_at_every_limit() -> None:
    """count_at_or_below_ms sums the counts array directly; it must say what walking the recorded
    values says (a value counts when its bucket's lowest equivalent value is within the limit), for a
    histogram recorded here and for one decoded from a worker's encoding (a shorter counts array)."""
    import random

    from hdrh.histogram import HdrHistogram

    from harness.load.histogram import count_at_or_below_ms

    rng = random.Random(7)
    recorded = new_histogram()
    for _ in range(3000):
        record_seconds(recorded, rng.lognormvariate(-6.0, 1.2))
    decoded = merge_encoded([encode(recorded)])

    def walked(histogram: HdrHistogram, limit_ms: float) -> int:
        total = 0
        for item in histogram.get_recorded_iterator():
            if histogram.get_lowest_equivalent_value(item.value_iterated_to) > int(limit_ms * 1000):
                break
            total += item.count_at_value_iterated_to
        return total

    limits = [0.0, 0.001, 0.5, 2.5, 2.501, 99.9, 1e9, *(rng.uniform(0.0, 20.0) for _ in range(5))]
    for histogram in (recorded, decoded):
        assert [count_at_or_below_ms(histogram, x) for x in limits] == [walked(histogram, x) for x in limits]
    assert count_at_or_below_ms(recorded, 1e9) == recorded.get_total_count() == 3000
    assert count_at_or_below_ms(recorded, -1.0) == 0


def test_empty_histogram_summary_is_zero() -> None:
    assert set(summary_ms(new_histogram()).values()) == {0.0}


@pytest.mark.parametrize(
    ("windows", "stable"),
    [
        ([(100, 10), (101, 10.5), (99, 9.8)], True),
        ([(50, 30), (100, 10), (101, 10.5), (99, 9.8)], True),  # only the last three count
        ([(100, 10), (101, 10.5), (130, 9.8)], False),  # throughput drifts by more than 10 %
        ([(100, 10), (101, 10.5), (99, 14.0)], False),  # p99 drifts
        ([(100, 10), (101, 10.5)], False),  # too few windows
        ([(0, 0), (0, 0), (0, 0)], True),
    ],
)
def test_stability_of_the_last_three_windows(windows: list[tuple[float, float]], stable: bool) -> None:
    stats = [WindowStat(throughput_rps=t, p99_ms=p) for t, p in windows]
    assert is_stable(stats, tolerance=0.10) is stable


def test_stability_tolerance_is_configurable() -> None:
    stats = [WindowStat(100, 10), WindowStat(120, 10), WindowStat(110, 10)]
    assert not is_stable(stats, 0.05)
    assert is_stable(stats, 0.10)


def _record(worker: int, index: int, ok: int, errors: dict[str, int], late: int = 0) -> WindowRecord:
    histogram = new_histogram()
    for _ in range(ok):
        record_seconds(histogram, 0.002)
    sent = ok + sum(errors.values())
    return WindowRecord(worker=worker, index=index, sent=sent, ok=ok, late=late, errors=errors,
                        histogram=encode(histogram), latency_sum_s=0.002 * ok, seconds=1.0)


def test_coordinator_merges_workers_and_counts_errors_by_kind() -> None:
    spec = LoadSpec(endpoint="http://127.0.0.1:1", model="m", rate=100.0, duration_s=3.0, window_s=1.0)
    coordinator = Coordinator(spec, workers=2)
    for index in range(3):
        coordinator.on_window(_record(0, index, 48, {"http_503": 2}, late=1))
        assert not coordinator.stop or index == 2
        coordinator.on_window(_record(1, index, 49, {"timeout": 1}))
    assert coordinator.stop and coordinator.stable and coordinator.trials == 1
    result = coordinator.result([]).to_dict()
    assert result["requests"] == 300 and result["ok"] == 291
    assert result["errors"] == {"http_503": 6, "timeout": 3}
    assert result["error_rate"] == pytest.approx(9 / 300)
    assert result["achieved_rate_rps"] == pytest.approx(100.0)
    assert result["throughput_rps"] == pytest.approx(97.0)
    assert result["late_sends"] == 3 and result["late_send_fraction"] == pytest.approx(0.01)
    assert result["latency_ms"]["p50"] == pytest.approx(2.0, rel=1e-3)
    assert result["latency_ms"]["mean"] == pytest.approx(2.0, rel=1e-6)
    assert result["complete"] is True and result["failure"] is None
    assert len(result["windows"]) == 3


def test_result_has_exactly_the_shared_keys() -> None:
    spec = LoadSpec(endpoint="http://127.0.0.1:1", model="m", rate=10.0, duration_s=1.0)
    coordinator = Coordinator(spec, workers=1)
    for index in range(3):
        coordinator.on_window(_record(0, index, 3, {}))
    keys = set(coordinator.result([]).to_dict())
    assert keys == {
        "engine", "mode", "protocol", "endpoint", "model", "offered_rate_rps", "concurrency", "poisson",
        "duration_s", "warmup_s", "workers", "requests", "ok", "errors", "error_rate", "achieved_rate_rps",
        "throughput_rps", "late_sends", "late_send_fraction", "latency_ms", "stable", "trials", "windows",
        "client_cpu_ms_per_request", "complete", "failure", "source",
    }
    assert coordinator.result([]).to_dict()["source"]["where"] == "runner"
    json.dumps(coordinator.result([]).to_dict())


def test_worker_count_follows_the_load() -> None:
    base = {"endpoint": "http://127.0.0.1:1", "model": "m"}
    assert plan_workers(LoadSpec(**base, rate=50.0), cpus=8) == 1
    assert plan_workers(LoadSpec(**base, rate=5000.0), cpus=8) == 3
    assert plan_workers(LoadSpec(**base, rate=50000.0), cpus=2) == 2
    assert plan_workers(LoadSpec(**base, rate=50000.0, workers=5), cpus=2) == 5
    assert plan_workers(LoadSpec(**base, mode="closed", concurrency=8), cpus=8) == 1


def test_more_workers_only_when_the_client_is_late_and_busy() -> None:
    spec = LoadSpec(endpoint="http://127.0.0.1:1", model="m", rate=100.0, duration_s=1.0)
    coordinator = Coordinator(spec, workers=1)
    for index in range(3):
        coordinator.on_window(_record(0, index, 100, {}, late=5))
    late = coordinator.result([])
    assert late.late_send_fraction == pytest.approx(0.05)
    late.client_cpu_ms_per_request = 8.0  # 100 req/s x 8 ms = 0.8 of a core
    assert more_workers(late, workers=1, cpus=4) == 2
    assert more_workers(late, workers=4, cpus=4) is None  # no CPU left to spread over
    late.client_cpu_ms_per_request = 1.0  # 0.1 of a core: the machine, not the client, was slow
    assert more_workers(late, workers=1, cpus=4) is None
    late.client_cpu_ms_per_request = 8.0
    late.late_sends, late.late_send_fraction = 0, 0.0
    assert more_workers(late, workers=1, cpus=4) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": None}, "--rate"),
        ({"rate": 10.0, "concurrency": 2}, "--concurrency"),
        ({"mode": "closed", "concurrency": 0, "rate": None}, "--concurrency"),
        ({"mode": "closed", "concurrency": 2, "rate": None, "poisson": True}, "--poisson"),
        ({"rate": 10.0, "endpoint": "https://x:1"}, "--endpoint"),
        ({"rate": 10.0, "window_s": 99.0}, "--window"),
        ({"rate": 10.0, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}, "inputs[0].data"),
    ],
)
def test_spec_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"endpoint": "http://127.0.0.1:1", "model": "m", **kwargs}
    with pytest.raises(UsageError, match=field.replace("[", r"\[").replace("]", r"\]")):
        LoadSpec(**args).validate()  # type: ignore[arg-type]


def test_spec_from_profile() -> None:
    from harness.config import parse_profile

    profile = parse_profile({
        "servers": [{"name": "cpu", "gpus": 0}],
        "models": [{"name": "iris", "storage_uri": "gs://x", "requirements": ["sklearn"],
                    "input": {"name": "predict", "shape": [1, 4], "data": [1, 2, 3, 4]}}],
        "cluster": {"nodes": {"gpu_workers": []}},
        "load": {"mode": "closed", "concurrency": 3, "duration_s": 4, "window_s": 9, "protocol": "grpc"},
    }, "p.yaml")
    spec = LoadSpec.from_profile(profile, "iris", "127.0.0.1:9500")
    assert spec.mode == "closed" and spec.concurrency == 3 and spec.rate is None
    assert spec.protocol == "grpc" and spec.window_s == 4  # a window never exceeds the duration
    assert spec.inputs == [{"name": "predict", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]
    assert spec.timeout_s == profile.load.request_timeout_s  # an inference request, not an API request
    with pytest.raises(UsageError, match="no model named 'nope'"):
        LoadSpec.from_profile(profile, "nope", "127.0.0.1:9500")


def test_endpoint_forms() -> None:
    assert parse_endpoint("http://h:81/mesh/", "http").prefix == "/mesh"
    assert parse_endpoint("h:9500", "grpc").port == 9500
    assert parse_endpoint("grpc://h:9500", "grpc").host == "h"
    with pytest.raises(UsageError):
        parse_endpoint("h:notaport", "http")


def test_perf_analyzer_csv_and_arguments(tmp_path: Path) -> None:
    spec = LoadSpec(endpoint="127.0.0.1:9500", model="iris", protocol="grpc", rate=40.0, poisson=True,
                    duration_s=6.0).validate()
    text = (
        "Request Rate,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
        "Avg latency,request/response,response wait\n"
        "40,39.8,20,800,30,10,900,10,5,2100,3200,3900,5100,2300,0,0\n"
    )
    result = parse_csv(text, spec).to_dict()
    assert result["engine"] == "perf_analyzer" and result["mode"] == "open"
    assert result["throughput_rps"] == pytest.approx(39.8)
    assert result["latency_ms"]["p50"] == pytest.approx(2.1)
    assert result["latency_ms"]["p99"] == pytest.approx(5.1)
    assert result["latency_ms"]["mean"] == pytest.approx(2.3)
    with pytest.raises(UsageError, match="latency' missing"):
        parse_csv("Concurrency,Inferences/Second\n1,10\n", spec)
    # A result holds finite numbers only: a `nan` column is one line naming it, not a validation traceback.
    with pytest.raises(UsageError, match="'p99 latency' is 'nan', expected a finite number"):
        parse_csv(text.replace(",5100,", ",nan,"), spec)
    args = perf_analyzer_args(spec, tmp_path / "r.csv", tmp_path / "in.json")
    assert args[:3] == ["perf_analyzer", "-m", "iris"]
    assert "--request-rate-range" in args and args[args.index("--request-rate-range") + 1] == "40:40"
    assert args[args.index("--request-distribution") + 1] == "poisson"
    assert args[args.index("-i") + 1] == "grpc"
    assert args[args.index("-H") + 1] == "seldon-model:iris"
    http_args = perf_analyzer_args(LoadSpec(endpoint="http://127.0.0.1:9000", model="iris", mode="closed",
                                            concurrency=4).validate(), tmp_path / "r.csv", tmp_path / "in.json")
    assert http_args[http_args.index("--input-tensor-format") + 1] == "json"
    assert http_args[http_args.index("--concurrency-range") + 1] == "4:4"
    assert http_args[http_args.index("-u") + 1] == "127.0.0.1:9000"
    assert input_data(spec)["data"] == [{"predict": {"content": [5.1, 3.5, 1.4, 0.2], "shape": [1, 4]}}]


# --------------------------------------------------------------------------------------------
# Against the stub server
# --------------------------------------------------------------------------------------------
# Not `serial`: each judgement here holds on a busy machine (stalls and rates are judged side by side or
# against the run's own late-send count), so these run beside the other tests in the parallel phase.
def test_open_loop_shows_a_server_stall_in_p99_and_closed_loop_hides_it() -> None:
    # A 400 ms stall of the whole server. Timed from the intended send, every request scheduled
    # during the stall waits for it, so about 40 % of 1 s at 200 req/s ... well above 1 % of them.
    with StubServer(stall_after_s=0.8, stall_s=0.4) as server:
        open_result = run_load(LoadSpec(endpoint=server.url, model="stub", rate=200.0, duration_s=1.5,
                                        warmup_s=0.2, window_s=0.5))
    assert open_result.complete and open_result.ok == open_result.requests
    assert open_result.latency_ms.p99 >= 250.0
    assert open_result.latency_ms.max >= 350.0
    with StubServer(stall_after_s=0.8, stall_s=0.4) as server:
        closed_result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=1,
                                          duration_s=1.5, warmup_s=0.2, window_s=0.5))
    # Closed loop: only the one request in flight during the stall sees it (coordinated omission).
    # Judged side by side, never by a fixed figure: a busy machine slows every ordinary request of
    # both runs alike, but cannot make the closed loop's p99 reach its own stalled request.
    assert closed_result.latency_ms.max >= 350.0
    assert closed_result.latency_ms.p99 < closed_result.latency_ms.max / 3
    assert open_result.latency_ms.p99 > 2 * closed_result.latency_ms.p99


def test_trials_stop_when_stable_and_are_bounded_when_not(stub: StubServer) -> None:
    base = {"endpoint": stub.url, "model": "stub", "mode": "closed", "concurrency": 2, "duration_s": 0.6,
            "window_s": 0.2, "warmup_s": 0.1, "max_trials": 3}
    lenient = run_load(LoadSpec(**base, tolerance=1.0))  # type: ignore[arg-type]
    # Stops at the first trial whose three windows agree within 100 %: on a quiet machine the first.
    # A busy machine can make one 0.2 s window's p99 several times the others', so the test judges
    # the stop against the windows the run itself measured, not against "always the first trial".
    # Every trial's windows are kept (three per trial); the stop is judged on the last trial's three.
    assert 1 <= lenient.trials <= 3 and len(lenient.windows) == 3 * lenient.trials
    assert lenient.stable == is_stable([WindowStat(w.throughput_rps, w.p99_ms) for w in lenient.windows[-3:]], 1.0)
    assert lenient.stable or lenient.trials == 3  # an unstable trial never ends the run early
    strict = run_load(LoadSpec(**base, tolerance=1e-6))  # type: ignore[arg-type]
    assert not strict.stable and strict.trials == 3 and len(strict.windows) == 9
    # The figures are the last trial's: its three windows, not all nine.
    assert strict.duration_s == pytest.approx(0.6)


def test_open_loop_rate_is_kept(stub: StubServer) -> None:
    result = run_load(LoadSpec(endpoint=stub.url, model="stub", rate=300.0, duration_s=1.5, warmup_s=0.2))
    assert result.complete and result.errors == {}
    # The rate is kept, or the run says it was not: a machine too busy to wake the client on time
    # shows as late sends (the client's own measure, taken in the same run), never as a silent shortfall.
    # Every send of the schedule is made, late or not.
    assert result.requests == pytest.approx(450, abs=3)
    if result.late_send_fraction <= LATE_FRACTION_LIMIT:
        assert result.achieved_rate_rps == pytest.approx(300.0, rel=0.02)
    else:
        assert result.late_sends > 0
    assert result.offered_rate_rps == 300.0 and result.concurrency is None
    assert result.client_cpu_ms_per_request > 0


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_response_framings(framing: str) -> None:
    with StubServer(framing=framing) as server:
        result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=2,
                                   duration_s=0.6, warmup_s=0.1))
    assert result.complete and result.errors == {} and result.ok > 10


def test_errors_are_counted_by_kind_not_retried() -> None:
    with StubServer(fail_every=4) as server:
        result = run_load(LoadSpec(endpoint=server.url, model="stub", mode="closed", concurrency=2,
                                   duration_s=0.9, warmup_s=0.1))
        served = server.count
    assert result.complete
    assert set(result.errors) == {"http_503"}
    assert result.errors["http_503"] == pytest.approx(result.requests / 4, rel=0.1, abs=3)
    assert result.ok + result.errors["http_503"] == result.requests
    assert served >= result.requests  # every counted request reached the server exactly once
    assert result.error_rate == pytest.approx(0.25, abs=0.03)


def test_timeouts_are_counted_and_every_request_is_accounted_for() -> None:
    with StubServer(stall_after_s=0.0, stall_s=1.0) as server:
        result = run_load(LoadSpec(endpoint=server.url, model="stub", rate=50.0, duration_s=0.6, warmup_s=0.0,
                                   timeout_s=0.3))
    assert result.complete  # a slow server is measured, not declared dead
    assert result.ok == 0 and result.requests == pytest.approx(30, abs=2)
    assert result.errors.get("timeout", 0) >= result.requests - 1
    assert sum(result.errors.values()) == result.requests


def _late_worker(mode: str, should_stop: bool = False) -> tuple[Worker, list[Any], list[WindowRecord]]:
    """A worker whose whole schedule (1000 sends at 1/s) ended 1 s ago: its pacer is far behind."""
    plan = WorkerPlan(index=0, count=1, protocol="http", target=parse_endpoint("http://127.0.0.1:1", "http"),
                      endpoint="x", model="m", payload=b"", mode=mode,  # type: ignore[arg-type]
                      rate=1.0 if mode == "open" else None, concurrency=None if mode == "open" else 1,
                      poisson=False, seed=None, start_at=time.monotonic() - 1001.0, warmup_s=0.0, window_s=100.0,
                      max_windows=10, timeout_s=10.0, dead_after_s=10.0)
    sent: list[Any] = []

    class Pool:
        def submit(self, callback: Any) -> None:
            sent.append(callback)

    records: list[WindowRecord] = []
    worker = Worker(plan, records.append, lambda: should_stop)
    worker.pool = Pool()  # type: ignore[assignment]
    return worker, sent, records


def test_a_starved_open_loop_pacer_still_sends_everything_due_and_counts_it_late() -> None:
    """The ticker and the pacer share one event loop. On a starved machine the ticker can wake first
    after the planned end: it must not end an open-loop run then, or the sends the pacer still owes
    vanish from the count and from the late count (CI saw 27 of 30 requests)."""
    worker, sent, records = _late_worker("open")
    worker._tick()
    assert not worker.stopping  # the planned end is the pacer's to reach
    asyncio.run(worker._open_loop())
    assert len(sent) == worker.measured == 1000
    now = time.monotonic()
    for callback in sent:
        callback(None, now)
    assert [r.index for r in records] == list(range(10))  # every window whole and handed over
    assert sum(r.sent for r in records) == sum(r.ok for r in records) == sum(r.late for r in records) == 1000
    # A closed loop and an asked-for stop still end at the ticker.
    closed, _, _ = _late_worker("closed")
    closed._tick()
    assert closed.stopping
    asked, _, _ = _late_worker("open", should_stop=True)
    asked._tick()
    assert asked.stopping


def test_unreachable_server_ends_incomplete_with_partial_figures() -> None:
    with StubServer() as server:
        url = server.url
    # The port is closed now: every connection is refused.
    result = run_load(LoadSpec(endpoint=url, model="stub", rate=100.0, duration_s=3.0, warmup_s=0.0,
                               dead_after_s=0.3))
    assert result.complete is False
    assert result.failure is not None and "connection_refused" in result.failure
    assert result.errors.get("connection_refused", 0) > 0 and result.ok == 0
    assert result.duration_s < 3.0


def test_two_worker_processes_share_the_rate(stub: StubServer) -> None:
    result = run_load(LoadSpec(endpoint=stub.url, model="stub", rate=200.0, duration_s=1.2, warmup_s=0.2,
                               workers=2))
    assert result.workers == 2 and result.complete, result.failure
    assert result.requests == pytest.approx(240, abs=4)
    assert result.errors == {}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["load", *args])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "args",
    [
        ["--endpoint", "ftp://h:1", "--model", "m", "--rate", "5", "--duration", "1"],
        ["--endpoint", "http://h:1", "--model", "m", "--duration", "1"],  # neither --rate nor --concurrency
        ["--endpoint", "http://h:1", "--model", "m", "--rate", "5", "--concurrency", "2", "--duration", "1"],
        ["--endpoint", "http://h:1", "--model", "m", "--concurrency", "2", "--poisson", "--duration", "1"],
        ["--endpoint", "http://h:1", "--model", "m", "--rate", "-5", "--duration", "1"],
        ["--endpoint", "http://h:1", "--model", "m", "--rate", "5", "--duration", "1", "--input", "/nonexistent.json"],
        ["--endpoint", "http://h:1", "--model", "m", "--rate", "5", "--duration", "1", "--window", "5"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(args: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli([*args, "--json", str(tmp_path / "r.json")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_cli_bad_input_file_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "in.json"
    bad.write_text(json.dumps({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}))
    code, err = _cli(["--endpoint", "http://h:1", "--model", "m", "--rate", "5", "--duration", "1",
                      "--input", str(bad), "--json", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "inputs[0].datatype" in err


def test_cli_writes_json_and_summary(stub: StubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "r.json"
    code = main(["load", "--endpoint", stub.url, "--model", "stub", "--concurrency", "2", "--duration", "0.6",
                 "--warmup", "0.1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "closed" and data["concurrency"] == 2 and data["ok"] > 0
    assert "latency ms" in printed and "p99" in printed and str(out) in printed


def test_wrk_output_is_parsed() -> None:
    from harness.commands.bench import parse_wrk

    output = """Running 5s test @ http://127.0.0.1:8080/v2/models/iris/infer
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.41ms    2.10ms  30.01ms   80.00%
  Latency Distribution
     50%  850.00us
     75%   10.10ms
     90%   11.20ms
     99%    1.02s
  4321 requests in 5.00s, 1.10MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    864.20
Transfer/sec:    220.00KB
"""
    result = parse_wrk(output)
    assert result.rps == pytest.approx(864.2)
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.errors == 3
    with pytest.raises(ValueError):
        parse_wrk("nothing here")


def test_perf_analyzer_engine_runs_the_executable_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from harness.load.perf_analyzer import run_perf_analyzer

    spec = LoadSpec(endpoint="127.0.0.1:9500", model="iris", protocol="grpc", mode="closed", concurrency=2,
                    duration_s=3.0).validate()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="not on PATH"):
        run_perf_analyzer(spec)
    # A recording fake: keeps its arguments and writes the CSV where -f says.
    fake = tmp_path / "perf_analyzer"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(tmp_path / 'args.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "out = sys.argv[sys.argv.index('-f') + 1]\n"
        "open(out, 'w').write('Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,"
        "p95 latency,p99 latency\\n2,250.5,10,3000,4000,4500,6000\\n')\n"
    )
    fake.chmod(0o755)
    result = run_perf_analyzer(spec)
    assert result.complete and result.engine == "perf_analyzer"
    assert result.throughput_rps == pytest.approx(250.5) and result.latency_ms.p99 == pytest.approx(6.0)
    recorded = json.loads((tmp_path / "args.json").read_text())
    assert recorded[recorded.index("--concurrency-range") + 1] == "2:2"
    out = tmp_path / "r.json"
    code = main(["load", "--engine", "perf_analyzer", "--endpoint", "127.0.0.1:9500", "--protocol", "grpc",
                 "--model", "iris", "--concurrency", "2", "--duration", "3", "--json", str(out)])
    assert code == 0 and json.loads(out.read_text())["engine"] == "perf_analyzer"
    assert "perf_analyzer" in capsys.readouterr().out
    fake.write_text("#!/bin/sh\necho 'error: failed to connect' >&2\nexit 3\n")
    failed = run_perf_analyzer(spec)
    assert failed.complete is False and failed.failure is not None and "failed to connect" in failed.failure
