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
from typing import Any

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
            plan = ((8, figures.wrk8, figures.http8, figures.grpc8), (1, figures.wrk1, figures.http1, figures.grpc1))
            for connections, wrk_runs, http_runs, grpc_runs in plan:
                for i in range(rounds):
                    progress(f"bench: real Triton round {i + 1}/{rounds}, {connections} connection(s)")
                    if wrk:
                        wrk_runs.append(run_wrk_cpu(wrk, url, script, connections, seconds))
                    http_runs.append(_closed(server.http_url, "http", connections, seconds, warmup))
                    grpc_runs.append(_closed(server.grpc_address, "grpc", connections, seconds, warmup))
        except HarnessError as exc:
            return None, f"failed: {exc}"
        finally:
            server.stop()
    return figures, f"Triton {TRITON_VERSION} (nvidia-pytriton 0.7.0), python backend, model `{MODEL}` " \
                    "(tfsimple's INT32 [1,16] inputs and outputs), KIND_CPU"


def _per_round(results: list[LoadResult]) -> str:
    return ", ".join(f"{r.throughput_rps:.0f}/{r.client_cpu_ms_per_request:.4f}" for r in results)


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
    out += [
        f"| gRPC client CPU per request, c=8 (ms) | {med(g_cpu):.4f} | HTTP {med(h_cpu):.4f} | ratio "
        f"{grpc_cpu:.2f} | <= {TARGET_GRPC_CPU_VS_HTTP:g} | {_verdict(grpc_cpu <= TARGET_GRPC_CPU_VS_HTTP, noisy)} |",
        f"| gRPC throughput, c=8 (req/s) | {med(g_tput):.0f} | HTTP {med(h_tput):.0f} | ratio "
        f"{med(g / h for g, h in zip(g_tput, h_tput, strict=True)):.2f} | - | - |",
        f"| gRPC p50 at one call in flight (ms) | {med(g_p50):.3f} | HTTP {med(h_p50):.3f} | - | - | - |",
        "",
        "Per round (c=8: throughput req/s / client CPU ms per request; c=1: p50 ms):",
        "",
        f"- wrk c=8: {', '.join(f'{w.rps:.0f}/{w.cpu_ms_per_request:.4f}' for w in figures.wrk8) or 'skipped'}",
        f"- harness HTTP c=8: {_per_round(figures.http8)}",
        f"- harness gRPC c=8: {_per_round(figures.grpc8)}",
        f"- wrk c=1 p50: {', '.join(f'{w.p50_ms:.3f}' for w in figures.wrk1) or 'skipped'}",
        f"- harness HTTP c=1 p50: {', '.join(f'{v:.3f}' for v in h_p50)}",
        f"- harness gRPC c=1 p50: {', '.join(f'{v:.3f}' for v in g_p50)}",
        "",
    ]
    return out
