"""The benchmark's real-Triton rows: the harness's HTTP and gRPC clients against wrk, on loopback.

The server is the real Triton 2.51.0 of PyPI's nvidia-pytriton 0.7.0 (the `sim` extra; launcher
harness/localserver/tritonserver.py) serving a python-backend model with tfsimple's inputs and
outputs (harness/localserver/triton_models.py). wrk (`-t1`), the harness over HTTP and the harness
over gRPC take turns in every round (interleaved, so drifting machine load hits them alike), at 8
connections (throughput, client CPU per request) and at one (p50). Each ratio or difference is the
median over the rounds' adjacent pairs.

Client CPU per request: the harness's worker process CPU time over its measured requests; wrk's is
its whole process CPU time (user + system, from `getrusage(RUSAGE_CHILDREN)` around its run) over
the requests it made, so wrk is charged for its start and its Lua setup too (a few milliseconds).

gRPC against HTTP, client CPU per request: judged at the same offered rate (open loop, both protocols
at half the lower of their c=8 capacities, pairs interleaved), where both clients send and receive the
same number of calls per second. At c=8 in a closed loop each protocol runs at the pace Triton serves
it, and Triton serves gRPC slower and at more CPU per call (harness/commands/bench_server.py): on a
runner whose cores the client shares with the server, that made the client's CPU per call follow the
server's (a quiet run here: client ratio 1.29, Triton's own CPU ratio 1.29), so that figure is shown
beside Triton's own cost, not judged.

Targets (issue 31): HTTP client CPU per request at most 2x wrk's; HTTP throughput at 8 connections
at least 0.9x wrk's; HTTP p50 at one connection at most 0.05 ms above wrk's; gRPC client CPU per
request at most 1.2x the HTTP client's. A run whose load average shows other work on the machine is
noisy: its verdicts read "noisy: not judged" and none of its figures may be quoted as a target met.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.commands.bench_server import ServerCost, cost, read_counters
from harness.load.engine import run_load
from harness.load.result import LoadResult
from harness.load.spec import LoadSpec

MODEL = "simple"
TFSIMPLE_INPUTS: list[dict[str, Any]] = [
    {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(1, 17))},
    {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
]
TARGET_CPU_VS_WRK = 2.0
TARGET_TPUT_VS_WRK = 0.9
TARGET_P50_OVER_WRK_MS = 0.05
TARGET_GRPC_CPU_VS_HTTP = 1.2
_R = TypeVar("_R")


@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    cpu_ms_per_request: float


@dataclass
class TritonFigures:
    wrk8: list[WrkRun] = field(default_factory=list)
    http8: list[LoadResult] = field(default_factory=list)
    grpc8: list[LoadResult] = field(default_factory=list)
    wrk1: list[WrkRun] = field(default_factory=list)
    http1: list[LoadResult] = field(default_factory=list)
    grpc1: list[LoadResult] = field(default_factory=list)
    # Open loop at one rate for both protocols (`paced_rate`): the clients' CPU at the same pace.
    paced_rate: float = 0.0
    http_paced: list[LoadResult] = field(default_factory=list)
    grpc_paced: list[LoadResult] = field(default_factory=list)
    # What each c=8 run cost the server (harness/commands/bench_server.py); None where not readable.
    wrk8_server: list[ServerCost | None] = field(default_factory=list)
    http8_server: list[ServerCost | None] = field(default_factory=list)
    grpc8_server: list[ServerCost | None] = field(default_factory=list)


def wrk_script(path: Path, model: str, inputs: list[dict[str, Any]]) -> Path:
    """The same request the harness sends (JSON body, Content-Type, Seldon-Model)."""
    body = json.dumps({"inputs": inputs}, separators=(",", ":"))
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = '{body}'\n"
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f'wrk.headers["Seldon-Model"] = "{model}"\n')
    return path


def run_wrk_cpu(wrk: str, url: str, script: Path, connections: int, seconds: float) -> WrkRun:
    """One wrk run with its own CPU time: RUSAGE_CHILDREN grows by exactly the child reaped here."""
    from harness.commands.bench import parse_wrk

    args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    parsed = parse_wrk(proc.stdout)
    requests = parsed.rps * max(1, round(seconds))
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(parsed.rps, parsed.p50_ms, 1000.0 * cpu_s / requests if requests else 0.0)


def _open(endpoint: str, protocol: str, rate: float, seconds: float, warmup: float) -> LoadResult:
    return run_load(LoadSpec(endpoint=endpoint, model=MODEL, protocol=protocol, mode="open",  # type: ignore[arg-type]
                             rate=rate, duration_s=seconds, warmup_s=warmup, workers=1, inputs=TFSIMPLE_INPUTS))


def _closed(endpoint: str, protocol: str, concurrency: int, seconds: float, warmup: float) -> LoadResult:
    return run_load(LoadSpec(endpoint=endpoint, model=MODEL, protocol=protocol, mode="closed",  # type: ignore[arg-type]
                             concurrency=concurrency, duration_s=seconds, warmup_s=warmup, workers=1,
                             inputs=TFSIMPLE_INPUTS))


def measure(wrk: str | None, rounds: int, seconds: float, warmup: float,
            progress: Callable[[str], None] = print) -> tuple[TritonFigures | None, str]:
    """Interleaved rounds against a real Triton; (None, why) when it cannot run here."""
    from harness.errors import HarnessError
    from harness.localserver.triton_models import write_add_sub_model
    from harness.localserver.tritonserver import TRITON_VERSION, TritonServerProcess, find_tritonserver

    try:
        find_tritonserver()
    except HarnessError as exc:
        return None, f"skipped: {exc}"
    figures = TritonFigures()
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        server = TritonServerProcess(Path(tmp) / "server")
        try:
            server.start(timeout=120)
            server.load_model(MODEL, write_add_sub_model(Path(tmp) / "models" / MODEL), timeout=120)
            url = f"{server.http_url}/v2/models/{MODEL}/infer"
            script = wrk_script(Path(tmp) / "post.lua", MODEL, TFSIMPLE_INPUTS)
            _closed(server.http_url, "http", 8, 1.0, 0.5)  # warm the server: no cold start in the figures
            root = server.pid

            def counted(run: Callable[[], _R], costs: list[ServerCost | None]) -> _R:
                before = read_counters(root, server.metrics_url, MODEL) if root is not None else None
                result = run()
                costs.append(cost(before, read_counters(root, server.metrics_url, MODEL) if root is not None else None))
                return result

            for i in range(rounds):
                progress(f"bench: real Triton round {i + 1}/{rounds}, 8 connections")
                if wrk:
                    figures.wrk8.append(counted(lambda: run_wrk_cpu(wrk, url, script, 8, seconds), figures.wrk8_server))
                figures.http8.append(counted(lambda: _closed(server.http_url, "http", 8, seconds, warmup),
                                             figures.http8_server))
                figures.grpc8.append(counted(lambda: _closed(server.grpc_address, "grpc", 8, seconds, warmup),
                                             figures.grpc8_server))
            # Half the lower capacity: neither protocol's server side is near its limit, and the rate is
            # the same for both.
            figures.paced_rate = round(0.5 * min(statistics.median(r.throughput_rps for r in figures.http8),
                                                 statistics.median(r.throughput_rps for r in figures.grpc8)), 1)
            for i in range(rounds):
                progress(f"bench: real Triton round {i + 1}/{rounds}, open loop at {figures.paced_rate:g} req/s")
                figures.http_paced.append(_open(server.http_url, "http", figures.paced_rate, seconds, warmup))
                figures.grpc_paced.append(_open(server.grpc_address, "grpc", figures.paced_rate, seconds, warmup))
            for i in range(rounds):
                progress(f"bench: real Triton round {i + 1}/{rounds}, 1 connection")
                if wrk:
                    figures.wrk1.append(run_wrk_cpu(wrk, url, script, 1, seconds))
                figures.http1.append(_closed(server.http_url, "http", 1, seconds, warmup))
                figures.grpc1.append(_closed(server.grpc_address, "grpc", 1, seconds, warmup))
        except HarnessError as exc:
            return None, f"failed: {exc}"
        finally:
            server.stop()
    return figures, f"Triton {TRITON_VERSION} (nvidia-pytriton 0.7.0), python backend, model `{MODEL}` " \
                    "(tfsimple's INT32 [1,16] inputs and outputs), KIND_CPU"


def _per_round(results: list[LoadResult], achieved: bool = False) -> str:
    return ", ".join(f"{r.achieved_rate_rps if achieved else r.throughput_rps:.0f}/{r.client_cpu_ms_per_request:.4f}"
                     for r in results)


def lines(figures: TritonFigures | None, about: str, noisy: bool, wrk: str | None) -> list[str]:
    """The benchmark's section for the real-Triton rows (markdown)."""
    from harness.commands.bench import verdict as _verdict

    out = ["## Real Triton: HTTP and gRPC clients against wrk", "", f"Server: {about}.", ""]
    if figures is None:
        return [*out, f"Not measured: {about}", ""]
    med = statistics.median
    h_cpu = [r.client_cpu_ms_per_request for r in figures.http8]
    g_cpu = [r.client_cpu_ms_per_request for r in figures.grpc8]
    h_tput = [r.throughput_rps for r in figures.http8]
    g_tput = [r.throughput_rps for r in figures.grpc8]
    h_p50 = [r.latency_ms.p50 for r in figures.http1]
    g_p50 = [r.latency_ms.p50 for r in figures.grpc1]
    grpc_cpu = med(g / h for g, h in zip(g_cpu, h_cpu, strict=True))
    server_rows = _server_rows(figures)
    out += ["| figure | harness | reference | result | target | verdict |", "|---|---|---|---|---|---|"]
    if wrk and figures.wrk8:
        w_cpu = [w.cpu_ms_per_request for w in figures.wrk8]
        cpu_ratio = med(h / w for h, w in zip(h_cpu, w_cpu, strict=True) if w > 0)
        tput_ratio = med(h / w.rps for h, w in zip(h_tput, figures.wrk8, strict=True))
        p50_over = med(h - w.p50_ms for h, w in zip(h_p50, figures.wrk1, strict=True))
        out += [
            f"| HTTP client CPU per request, c=8 (ms) | {med(h_cpu):.4f} | wrk {med(w_cpu):.4f} | ratio "
            f"{cpu_ratio:.2f} | <= {TARGET_CPU_VS_WRK:g} | {_verdict(cpu_ratio <= TARGET_CPU_VS_WRK, noisy)} |",
            f"| HTTP throughput, c=8 (req/s) | {med(h_tput):.0f} | wrk {med(w.rps for w in figures.wrk8):.0f} "
            f"| ratio {tput_ratio:.2f} | >= {TARGET_TPUT_VS_WRK:g} "
            f"| {_verdict(tput_ratio >= TARGET_TPUT_VS_WRK, noisy)} |",
            f"| HTTP p50 at one connection (ms) | {med(h_p50):.3f} | wrk {med(w.p50_ms for w in figures.wrk1):.3f} "
            f"| {p50_over:+.3f} ms | <= +{TARGET_P50_OVER_WRK_MS:g} ms "
            f"| {_verdict(p50_over <= TARGET_P50_OVER_WRK_MS, noisy)} |",
        ]
    else:
        out += ["| HTTP client vs wrk | - | skipped | - | - | wrk not installed: `apt-get install -y wrk` "
                "(Debian/Ubuntu), then `make bench` again |"]
    out += _paced_rows(figures, noisy)
    out += [
        f"| gRPC client CPU per request, c=8 (ms) | {med(g_cpu):.4f} | HTTP {med(h_cpu):.4f} | ratio "
        f"{grpc_cpu:.2f} | - (each protocol at Triton's pace for it) | - |",
        f"| gRPC throughput, c=8 (req/s) | {med(g_tput):.0f} | HTTP {med(h_tput):.0f} | ratio "
        f"{med(g / h for g, h in zip(g_tput, h_tput, strict=True)):.2f} | - | - |",
        f"| gRPC p50 at one call in flight (ms) | {med(g_p50):.3f} | HTTP {med(h_p50):.3f} | - | - | - |",
        *server_rows,
        "",
        *([] if not server_rows else [
            "The two rows on Triton's own cost are the server's side of the gRPC client's CPU ratio (no target): "
            "each call that Triton passes between more of its threads can wake one on the core the client "
            "runs on, preempt the client and cool its caches, and a slower answer leaves the client fewer "
            "answers per wake-up. The clients' own costs at the same pace, where no server treats the "
            "protocols differently, are in the Detail section of a whole `make bench` "
            "(harness/commands/bench_server.py says how these rows are read).", ""]),
        "Per round (c=8: throughput req/s / client CPU ms per request; c=1: p50 ms):",
        "",
        f"- wrk c=8: {', '.join(f'{w.rps:.0f}/{w.cpu_ms_per_request:.4f}' for w in figures.wrk8) or 'skipped'}",
        f"- harness HTTP c=8: {_per_round(figures.http8)}",
        f"- harness gRPC c=8: {_per_round(figures.grpc8)}",
        f"- open loop at {figures.paced_rate:g} req/s (achieved req/s / client CPU ms per request): HTTP "
        f"{_per_round(figures.http_paced, achieved=True) or 'skipped'}; gRPC "
        f"{_per_round(figures.grpc_paced, achieved=True) or 'skipped'}",
        f"- wrk c=1 p50: {', '.join(f'{w.p50_ms:.3f}' for w in figures.wrk1) or 'skipped'}",
        f"- harness HTTP c=1 p50: {', '.join(f'{v:.3f}' for v in h_p50)}",
        f"- harness gRPC c=1 p50: {', '.join(f'{v:.3f}' for v in g_p50)}",
        f"- Triton's CPU ms / thread wake-ups per request (c=8): wrk {_per_round_server(figures.wrk8_server)}; "
        f"harness HTTP {_per_round_server(figures.http8_server)}; "
        f"harness gRPC {_per_round_server(figures.grpc8_server)}",
        "",
    ]
    return out


def _paced_rows(figures: TritonFigures, noisy: bool) -> list[str]:
    """The judged gRPC-vs-HTTP client CPU row: both in an open loop at the same rate, pair by pair."""
    from harness.commands.bench import verdict as _verdict

    if not figures.http_paced or not figures.grpc_paced:
        return []
    med = statistics.median
    h_cpu = [r.client_cpu_ms_per_request for r in figures.http_paced]
    g_cpu = [r.client_cpu_ms_per_request for r in figures.grpc_paced]
    ratio = med(g / h for g, h in zip(g_cpu, h_cpu, strict=True) if h > 0)
    return [f"| gRPC client CPU per request, open loop at {figures.paced_rate:g} req/s for both (ms) "
            f"| {med(g_cpu):.4f} | HTTP {med(h_cpu):.4f} | ratio {ratio:.2f} | <= {TARGET_GRPC_CPU_VS_HTTP:g} "
            f"| {_verdict(ratio <= TARGET_GRPC_CPU_VS_HTTP, noisy)} |"]


def _per_round_server(costs: list[ServerCost | None]) -> str:
    return ", ".join("-" if c is None else f"{c.cpu_ms_per_request:.3f}/{c.wakeups_per_request:.2f}"
                     for c in costs) or "skipped"


def _server_rows(figures: TritonFigures) -> list[str]:
    """What the c=8 runs cost Triton itself, gRPC against HTTP (no target: they explain the client's
    gRPC ratio, see harness/commands/bench_server.py); none where /proc or the metrics were unreadable."""
    pairs = [(g, h) for g, h in zip(figures.grpc8_server, figures.http8_server, strict=True)
             if g is not None and h is not None]
    if not pairs:
        return []
    med = statistics.median
    cpu = med(g.cpu_ms_per_request / h.cpu_ms_per_request for g, h in pairs if h.cpu_ms_per_request > 0)
    wakeups = med(g.wakeups_per_request / h.wakeups_per_request for g, h in pairs if h.wakeups_per_request > 0)
    return [
        f"| Triton's own CPU per request, c=8 (ms) | gRPC {med(g.cpu_ms_per_request for g, _ in pairs):.3f} "
        f"| HTTP {med(h.cpu_ms_per_request for _, h in pairs):.3f} | ratio {cpu:.2f} | - | - |",
        f"| Triton's thread wake-ups per request, c=8 | gRPC {med(g.wakeups_per_request for g, _ in pairs):.2f} "
        f"| HTTP {med(h.wakeups_per_request for _, h in pairs):.2f} | ratio {wakeups:.2f} | - | - |",
    ]
