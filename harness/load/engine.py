"""The coordinator: plans workers, merges their windows, judges stability, builds the result."""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.heap import freeze_startup_heap
from harness.load.clients import grpc_request_bytes, http_request_bytes
from harness.load.histogram import count_at_or_below_ms, merge_encoded, summary_ms
from harness.load.spec import LoadSpec, parse_endpoint
from harness.load.stability import WindowStat, is_stable
from harness.load.worker import WindowRecord, WorkerPlan, WorkerSummary, run_worker

if TYPE_CHECKING:
    from harness.load.result import LoadResult

# Requests per second one worker process offers comfortably. Measured on a shared 2-core machine
# (docs/benchmarks.md): ~0.05-0.1 ms client CPU per request for HTTP and for gRPC (the raw HTTP/2
# client; grpc.aio cost ~0.5 ms), so these keep one worker well under a core even on a slower or
# busier machine.
PER_WORKER_RPS = {"http": 2000.0, "grpc": 2000.0}
PER_WORKER_CONCURRENCY = 128
# Spawned workers need a moment to import and connect before the shared start time.
WORKER_START_TIMEOUT_S = 60.0
START_MARGIN_S = 0.1
# Open loop: more late sends than this, with the client busier than this share of a core per
# worker, means the client is the bottleneck and needs more processes.
LATE_FRACTION_LIMIT = 0.01
BUSY_CORE_FRACTION = 0.6


def plan_workers(spec: LoadSpec, cpus: int | None = None) -> int:
    """How many worker processes the load needs (a pure decision from the spec and the machine)."""
    if spec.workers is not None:
        return spec.workers
    cpus = cpus or os.cpu_count() or 1
    if spec.mode == "open":
        assert spec.rate is not None
        wanted = math.ceil(spec.rate / PER_WORKER_RPS[spec.protocol])
    else:
        assert spec.concurrency is not None
        wanted = math.ceil(spec.concurrency / PER_WORKER_CONCURRENCY)
    return max(1, min(wanted, cpus))


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def make_plans(spec: LoadSpec, workers: int, start_at: float) -> list[WorkerPlan]:
    target = parse_endpoint(spec.endpoint, spec.protocol)
    payload = (
        http_request_bytes(target, spec.model, spec.inputs)
        if spec.protocol == "http"
        else grpc_request_bytes(spec.model, spec.inputs)
    )
    if spec.mode == "closed":
        assert spec.concurrency is not None
        workers = min(workers, spec.concurrency)
    plans = []
    for index in range(workers):
        rate = concurrency = None
        offset = 0.0
        if spec.mode == "open":
            assert spec.rate is not None
            rate = spec.rate / workers
            offset = index / spec.rate
        else:
            assert spec.concurrency is not None
            concurrency = _split(spec.concurrency, workers, index)
        plans.append(WorkerPlan(
            index=index, count=workers, protocol=spec.protocol, target=target, endpoint=spec.endpoint,
            model=spec.model, payload=payload, mode=spec.mode, rate=rate, concurrency=concurrency,
            poisson=spec.poisson, seed=spec.seed, start_at=start_at, warmup_s=spec.warmup_s,
            window_s=spec.window, max_windows=spec.max_trials * spec.windows_per_trial, timeout_s=spec.timeout_s,
            dead_after_s=spec.dead_after_s, offset_s=offset, check_answers=spec.check_answers,
            expected=spec.expected, check_every=spec.check_every, grpc_client=spec.grpc_client,
        ))
    return plans


@dataclass
class _Merged:
    index: int
    records: list[WindowRecord] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max((r.seconds for r in self.records), default=0.0)

    def stat(self) -> WindowStat:
        ok = sum(r.ok for r in self.records)
        merged = merge_encoded(r.histogram for r in self.records)
        p99 = merged.get_value_at_percentile(99.0) / 1000.0 if merged.get_total_count() else 0.0
        return WindowStat(throughput_rps=ok / self.seconds if self.seconds else 0.0, p99_ms=p99)


class Coordinator:
    """Collects window records from every worker and decides when to stop (stable or out of trials)."""

    def __init__(self, spec: LoadSpec, workers: int) -> None:
        self.spec = spec
        self.workers = workers
        self.per_trial = spec.windows_per_trial
        self.windows: dict[int, _Merged] = {}
        self.complete_windows: list[_Merged] = []
        self.trials = 0
        self.stable = False
        self.stop = False

    def on_window(self, record: WindowRecord) -> None:
        merged = self.windows.setdefault(record.index, _Merged(record.index))
        merged.records.append(record)
        if len(merged.records) < self.workers or any(r.partial for r in merged.records):
            return
        # Windows complete in order per worker, so the merged ones complete in order too.
        self.complete_windows.append(merged)
        if len(self.complete_windows) % self.per_trial == 0 and not self.stop:
            self.trials = len(self.complete_windows) // self.per_trial
            self.stable = is_stable([w.stat() for w in self.complete_windows], self.spec.tolerance)
            if self.stable or self.trials >= self.spec.max_trials:
                self.stop = True

    def result(self, summaries: list[WorkerSummary]) -> LoadResult:
        # Imported here: spawned workers import this module and never build a result (result.py says why).
        from harness.load.result import LoadResult, LoadSource, fraction

        spec = self.spec
        failures = [s.failure for s in summaries if s.failure]
        failure = failures[0] if failures else None
        if failure is None and self.trials == 0:
            failure = "no trial completed: the workers ended before the first measurement trial was over"
        complete = failure is None
        if complete:
            first = (self.trials - 1) * self.per_trial
            reported = [w for w in self.complete_windows if first <= w.index < first + self.per_trial]
        else:
            # Partial figures: everything measured before the failure, partial windows included.
            reported = [self.windows[i] for i in sorted(self.windows)]
        records = [r for w in reported for r in w.records]
        seconds = sum(w.seconds for w in reported)
        requests = sum(r.sent for r in records)
        ok = sum(r.ok for r in records)
        errors: dict[str, int] = {}
        for r in records:
            for kind, n in r.errors.items():
                errors[kind] = errors.get(kind, 0) + n
        histogram = merge_encoded(r.histogram for r in records)
        cpu = sum(s.cpu_s for s in summaries)
        measured = sum(s.measured_requests for s in summaries)
        stats = [w.stat() for w in self.complete_windows]
        late = sum(r.late for r in records)
        return LoadResult(
            engine="harness", mode=spec.mode, protocol=spec.protocol, endpoint=spec.endpoint, model=spec.model,
            offered_rate_rps=spec.rate if spec.mode == "open" else None,
            concurrency=spec.concurrency if spec.mode == "closed" else None,
            poisson=spec.poisson, duration_s=seconds, warmup_s=spec.warmup_s, workers=self.workers,
            requests=requests, ok=ok, errors=errors, error_rate=fraction(requests - ok, requests),
            achieved_rate_rps=requests / seconds if seconds else 0.0,
            throughput_rps=ok / seconds if seconds else 0.0,
            late_sends=late, late_send_fraction=fraction(late, requests),
            latency_ms=summary_ms(histogram, sum(r.latency_sum_s for r in records)),
            stable=self.stable, trials=max(self.trials, 1 if reported else 0),
            windows=[{"throughput_rps": round(s.throughput_rps, 3), "p99_ms": s.p99_ms} for s in stats],
            client_cpu_ms_per_request=1000.0 * cpu / measured if measured else 0.0,
            complete=complete, failure=failure, source=LoadSource(where="runner", pods=0),
        ).counting_good(count_at_or_below_ms(histogram, spec.goodput_ms) if spec.goodput_ms is not None else None)


def _worker_process(plan: WorkerPlan, out: Any, stop: Any, go: Any, start_at: Any,
                    parent_pid: int | None = None) -> None:
    """Entry point of a spawned worker: report ready, wait for the shared start, stream windows."""
    import dataclasses

    from harness.lifeline import die_with_parent

    # A worker never outlives its coordinator (SIGKILL of `load` or pytest included): SIGTERM ends it.
    die_with_parent(parent_pid, signal.SIGTERM, pdeathsig=True)
    # A spawned process starts with the default collector settings: a full collection mid-run would
    # stall every call in flight and show up in the latencies as the server's.
    freeze_startup_heap()

    out.put(("ready", plan.index, None))
    if not go.wait(WORKER_START_TIMEOUT_S):
        out.put(("summary", plan.index, WorkerSummary(plan.index, 0.0, 0, "coordinator never started the run", 0.0)))
        return
    plan = dataclasses.replace(plan, start_at=start_at.value)
    try:
        summary = run_worker(plan, lambda r: out.put(("window", plan.index, r)), stop.is_set)
    except Exception as exc:  # a worker must always report back, or the coordinator waits in vain
        summary = WorkerSummary(plan.index, 0.0, 0, f"worker {plan.index} crashed: {type(exc).__name__}: {exc}", 0.0)
    out.put(("summary", plan.index, summary))


def _run_in_process(spec: LoadSpec, coordinator: Coordinator) -> list[WorkerSummary]:
    plan = make_plans(spec, 1, time.monotonic() + START_MARGIN_S)[0]
    return [run_worker(plan, coordinator.on_window, lambda: coordinator.stop)]


def _run_in_workers(spec: LoadSpec, coordinator: Coordinator, workers: int) -> list[WorkerSummary]:
    ctx = multiprocessing.get_context("spawn")  # fork would copy grpc/event-loop state
    out = ctx.Queue()
    stop = ctx.Event()
    go = ctx.Event()
    start_value = ctx.Value("d", 0.0)
    plans = make_plans(spec, workers, 0.0)
    parent = os.getpid()
    procs = [ctx.Process(target=_worker_process, args=(p, out, stop, go, start_value, parent), daemon=True)
             for p in plans]
    for proc in procs:
        proc.start()
    summaries: dict[int, WorkerSummary] = {}
    try:
        ready: set[int] = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(ready) < len(plans) and time.monotonic() < deadline:
            try:
                kind, index, _ = out.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if kind == "ready":
                ready.add(index)
        if len(ready) < len(plans):
            failure = (f"load workers did not start within {WORKER_START_TIMEOUT_S:.0f} s "
                       f"({len(ready)} of {len(plans)} ready)")
            return [WorkerSummary(p.index, 0.0, 0, failure, 0.0) for p in plans]
        start_value.value = time.monotonic() + 0.2
        go.set()
        run_s = spec.warmup_s + spec.max_trials * spec.duration_s + spec.timeout_s + 30.0
        deadline = time.monotonic() + run_s
        while len(summaries) < len(plans):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                kind, index, payload = out.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if kind == "window":
                coordinator.on_window(payload)
                if coordinator.stop:
                    stop.set()
            elif kind == "summary":
                summaries[index] = payload
    finally:
        stop.set()
        go.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    for plan in plans:
        if plan.index not in summaries:
            missing = f"worker {plan.index} ended without a result"
            summaries[plan.index] = WorkerSummary(plan.index, 0.0, 0, missing, 0.0)
    return [summaries[i] for i in sorted(summaries)]


def more_workers(result: LoadResult, workers: int, cpus: int) -> int | None:
    """A larger worker count when the client itself could not keep the open-loop schedule, else None.

    Late sends alone do not prove the client is short of CPU (a busy machine delays wake-ups too),
    so the client's own CPU use must also be high: above `BUSY_CORE_FRACTION` of a core per worker.
    """
    if result.mode != "open" or not result.complete or result.late_send_fraction <= LATE_FRACTION_LIMIT:
        return None
    if workers >= cpus:
        return None
    cores_per_worker = result.client_cpu_ms_per_request * result.achieved_rate_rps / 1000.0 / workers
    if cores_per_worker < BUSY_CORE_FRACTION:
        return None
    return min(cpus, workers * 2)


def _measure(spec: LoadSpec, workers: int) -> LoadResult:
    coordinator = Coordinator(spec, workers)
    summaries = _run_in_process(spec, coordinator) if workers == 1 else _run_in_workers(spec, coordinator, workers)
    return coordinator.result(summaries)


def run_load(spec: LoadSpec, progress: Callable[[str], None] | None = None) -> LoadResult:
    """Measure latency as `spec` says. Never raises for server-side trouble: errors are counted
    and a dead server ends the run with `complete=False` and the partial figures.

    With `spec.workers` unset, a run whose client could not keep the schedule (late sends while the
    client was busy) is measured once more with twice the worker processes, and that run is reported.
    """
    spec.validate()
    workers = plan_workers(spec)
    if spec.mode == "closed":
        assert spec.concurrency is not None
        workers = min(workers, spec.concurrency)
    if progress is not None:
        progress(f"load: {spec.mode} loop, {workers} worker(s), {spec.protocol} {spec.endpoint} model {spec.model}")
    result = _measure(spec, workers)
    bigger = more_workers(result, workers, os.cpu_count() or 1) if spec.workers is None else None
    if bigger is not None:
        if progress is not None:
            late = f"{result.late_send_fraction:.1%}"
            progress(f"load: {late} late sends with a busy client; measuring again with {bigger} workers")
        result = _measure(spec, bigger)
    return result
