"""In-cluster generators: the plan each pod runs, and the exact merge of what the pods print.

Pure: the plan is data for the ConfigMap (harness/load/job.py ships it), the outputs are
the pods' logs. Each pod's histogram holds HdrHistogram bucket values (generator.lowest_equivalent_us),
so adding them with `record_value(value, count)` puts every count in the bucket it came from: the
merged histogram is exactly the sum of the pods' (its total count is the sum of their counts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.errors import HarnessError
from harness.load.clients import json_body
from harness.load.generator import FORMAT, lowest_equivalent_us
from harness.load.histogram import HIGHEST_US, bucket_counts_to_histogram, count_at_or_below_ms, merge, summary_ms
from harness.load.result import GeneratorPod, LoadResult, LoadSource, fraction
from harness.load.spec import LoadSpec
from harness.load.stability import WindowStat, is_stable


class GeneratorOutputError(HarnessError):
    """A generator pod printed something that is not a result the harness can merge."""


def generator_plan(spec: LoadSpec, pods: int, start_at: float) -> dict[str, Any]:
    """What every generator pod runs: the whole schedule; each pod takes its share by its index.

    `start_at` is wall-clock (Unix) seconds: the one time all pods agree on. In-cluster runs are one
    trial of `duration_s` split into windows (the runner's engine may run several trials)."""
    if spec.protocol != "http":
        raise HarnessError("in-cluster generators speak HTTP only (the pods have nothing but the standard "
                           "library); set load.protocol: http")
    if pods < 1:
        raise HarnessError(f"generator pods: expected 1 or more, got {pods}")
    if spec.mode == "closed" and spec.concurrency is not None and spec.concurrency < pods:
        raise HarnessError(f"closed loop with concurrency {spec.concurrency} cannot keep {pods} generator pods busy")
    return {
        "format": FORMAT, "model": spec.model, "body": json_body(spec.inputs).decode(), "mode": spec.mode,
        "rate": spec.rate, "concurrency": spec.concurrency, "poisson": spec.poisson, "seed": spec.seed,
        "pods": pods, "start_at": start_at, "warmup_s": spec.warmup_s, "window_s": spec.window,
        "windows": spec.windows_per_trial, "timeout_s": spec.timeout_s, "check_every": spec.check_every,
    }


def plan_json(plan: dict[str, Any]) -> str:
    return json.dumps(plan, indent=1, sort_keys=True) + "\n"


def parse_output(log: str, where: str) -> dict[str, Any]:
    """The generator's JSON document: the last log line that is one (stderr lines may precede it)."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            return doc
    tail = log.strip()[-500:] or "(empty)"
    raise GeneratorOutputError(f"{where}: no generator result ({FORMAT}) in its log; last output: {tail}")


def _int(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise GeneratorOutputError(f"{where}: {key}: expected a count >= 0, got {value!r}")
    return value


def _histogram(pairs: Any, where: str) -> dict[int, int]:
    """Bucket value -> count; refuses values that are not HdrHistogram bucket values (not mergeable)."""
    if not isinstance(pairs, list):
        raise GeneratorOutputError(f"{where}: histogram_us: expected a list of [microseconds, count]")
    out: dict[int, int] = {}
    for pair in pairs:
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, int) for x in pair)
                or pair[1] < 1 or not 1 <= pair[0] <= HIGHEST_US):
            raise GeneratorOutputError(f"{where}: histogram_us: bad entry {pair!r}")
        value, count = pair
        if lowest_equivalent_us(value) != value:
            raise GeneratorOutputError(f"{where}: histogram_us: {value} us is not a bucket value (not mergeable)")
        out[value] = out.get(value, 0) + count
    return out


@dataclass
class PodWindow:
    sent: int
    ok: int
    late: int
    errors: dict[str, int]
    latency_sum_s: float
    histogram: dict[int, int]


@dataclass
class PodOutput:
    index: int
    pod: str
    node: str
    cpu_s: float
    measured_requests: int
    start_lag_s: float
    failure: str | None
    windows: list[PodWindow] = field(default_factory=list)


def read_pod(doc: dict[str, Any], where: str, windows: int) -> PodOutput:
    """One pod's document, checked: counts add up and its histogram holds exactly its successes."""
    failure = doc.get("failure")
    out = PodOutput(index=_int(doc, "index", where), pod=str(doc.get("pod") or ""), node=str(doc.get("node") or ""),
                    cpu_s=float(doc.get("cpu_s") or 0.0), measured_requests=_int(doc, "measured_requests", where),
                    start_lag_s=float(doc.get("start_lag_s") or 0.0),
                    failure=str(failure) if failure is not None else None)
    raw = doc.get("windows")
    if not isinstance(raw, list) or (out.failure is None and len(raw) != windows):
        raise GeneratorOutputError(f"{where}: windows: expected {windows} measurement windows, got {raw!r:.80}")
    for i, w in enumerate(raw):
        at = f"{where}: windows[{i}]"
        if not isinstance(w, dict):
            raise GeneratorOutputError(f"{at}: expected an object")
        errors = w.get("errors")
        if not isinstance(errors, dict) or not all(isinstance(v, int) and v >= 0 for v in errors.values()):
            raise GeneratorOutputError(f"{at}: errors: expected kind -> count")
        window = PodWindow(sent=_int(w, "sent", at), ok=_int(w, "ok", at), late=_int(w, "late", at),
                           errors={str(k): v for k, v in errors.items()},
                           latency_sum_s=float(w.get("latency_sum_s") or 0.0),
                           histogram=_histogram(w.get("histogram_us"), at))
        if window.ok + sum(window.errors.values()) != window.sent:
            raise GeneratorOutputError(f"{at}: ok {window.ok} + errors {sum(window.errors.values())} != sent "
                                       f"{window.sent}")
        if sum(window.histogram.values()) != window.ok:
            raise GeneratorOutputError(f"{at}: histogram holds {sum(window.histogram.values())} latencies for "
                                       f"{window.ok} successes")
        out.windows.append(window)
    return out


def to_hdr(counts: dict[int, int]) -> HdrHistogram:
    return bucket_counts_to_histogram(counts)


def add_counts(parts: list[dict[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for part in parts:
        for value, count in part.items():
            total[value] = total.get(value, 0) + count
    return total


def merge_pods(spec: LoadSpec, pods: list[PodOutput], expected: int, source: LoadSource) -> LoadResult:
    """One `LoadResult` from every pod's windows, merged exactly, with per-pod figures in `source`."""
    failures = [f"generator {p.index} ({p.pod or '?'}): {p.failure}" for p in pods if p.failure]
    missing = sorted(set(range(expected)) - {p.index for p in pods})
    failures += [f"generator {i}: no result" for i in missing]
    windows = spec.windows_per_trial
    merged_windows: list[dict[int, int]] = []
    stats: list[WindowStat] = []
    for i in range(windows):
        parts = [p.windows[i].histogram for p in pods if len(p.windows) > i]
        counts = add_counts(parts)
        merged_windows.append(counts)
        ok = sum(p.windows[i].ok for p in pods if len(p.windows) > i)
        hist = to_hdr(counts)
        p99 = hist.get_value_at_percentile(99.0) / 1000.0 if hist.get_total_count() else 0.0
        stats.append(WindowStat(throughput_rps=ok / spec.window, p99_ms=p99))
    every = [w for p in pods for w in p.windows]
    histogram = merge(to_hdr(c) for c in merged_windows)
    requests = sum(w.sent for w in every)
    ok = sum(w.ok for w in every)
    late = sum(w.late for w in every)
    errors = _sum_errors(every)
    seconds = spec.window * windows if every else 0.0
    generators = []
    for p in sorted(pods, key=lambda p: p.index):
        own = to_hdr(add_counts([w.histogram for w in p.windows]))
        sent = sum(w.sent for w in p.windows)
        lat = summary_ms(own)
        generators.append(GeneratorPod(
            index=p.index, pod=p.pod, node=p.node, requests=sent, ok=sum(w.ok for w in p.windows),
            recorded=own.get_total_count(), late_sends=sum(w.late for w in p.windows),
            errors=_sum_errors(p.windows), cpu_s=p.cpu_s,
            client_cpu_ms_per_request=1000.0 * p.cpu_s / p.measured_requests if p.measured_requests else 0.0,
            start_lag_s=p.start_lag_s, p50_ms=lat["p50"], p99_ms=lat["p99"], failure=p.failure))
    source = source.model_copy(update={"generators": generators, "recorded": histogram.get_total_count(),
                                       "pods": expected})
    cpu = sum(p.cpu_s for p in pods)
    measured = sum(p.measured_requests for p in pods)
    failure = "; ".join(failures) or None
    if failure is None and not every:
        failure = "no generator measured anything"
    return LoadResult(
        engine="harness", mode=spec.mode, protocol=spec.protocol, endpoint=spec.endpoint, model=spec.model,
        offered_rate_rps=spec.rate if spec.mode == "open" else None,
        concurrency=spec.concurrency if spec.mode == "closed" else None,
        poisson=spec.poisson, duration_s=seconds, warmup_s=spec.warmup_s, workers=expected,
        requests=requests, ok=ok, errors=errors, error_rate=fraction(requests - ok, requests),
        achieved_rate_rps=requests / seconds if seconds else 0.0, throughput_rps=ok / seconds if seconds else 0.0,
        late_sends=late, late_send_fraction=fraction(late, requests),
        latency_ms=summary_ms(histogram, sum(w.latency_sum_s for w in every)),
        stable=is_stable(stats, spec.tolerance), trials=1 if every else 0,
        windows=[{"throughput_rps": round(s.throughput_rps, 3), "p99_ms": s.p99_ms} for s in stats],
        client_cpu_ms_per_request=1000.0 * cpu / measured if measured else 0.0,
        complete=failure is None, failure=failure, source=source,
    ).counting_good(count_at_or_below_ms(histogram, spec.goodput_ms) if spec.goodput_ms is not None else None)


def _sum_errors(windows: list[PodWindow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in windows:
        for kind, n in w.errors.items():
            out[kind] = out.get(kind, 0) + n
    return dict(sorted(out.items()))
