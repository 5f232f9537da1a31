"""Optional external engine: Triton's `perf_analyzer` with the same settings, parsed into `LoadResult`.

Over HTTP it is asked for JSON tensors (MLServer rejects binary ones, design B3); requests carry the
`Seldon-Model` header (HTTP) or `seldon-model` metadata (gRPC). Latencies in its CSV (`-f FILE`) are
microseconds. Needs a perf_analyzer recent enough for `-H` and `--input-tensor-format`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.errors import UsageError
from harness.load.histogram import LATENCY_KEYS
from harness.load.result import LoadResult, LoadSource
from harness.load.spec import LoadSpec, parse_endpoint

EXECUTABLE = "perf_analyzer"


def perf_analyzer_args(spec: LoadSpec, csv_path: Path, input_path: Path, executable: str = EXECUTABLE) -> list[str]:
    """The argument list that asks perf_analyzer for what `spec` describes."""
    target = parse_endpoint(spec.endpoint, spec.protocol)
    args = [
        executable, "-m", spec.model, "-u", f"{target.host}:{target.port}", "-i", spec.protocol,
        "--measurement-interval", str(int(spec.window * 1000)),
        "--stability-percentage", str(round(spec.tolerance * 100)),
        "--max-trials", str(max(3, spec.max_trials * spec.windows_per_trial)),
        "--input-data", str(input_path),
        "-f", str(csv_path),
    ]
    if spec.protocol == "http":
        # MLServer rejects binary tensors (design B3); the mesh routes on the Seldon-Model header.
        args += ["--input-tensor-format", "json", "--output-tensor-format", "json", "-H", f"Seldon-Model:{spec.model}"]
    else:
        args += ["-H", f"seldon-model:{spec.model}"]  # gRPC metadata keys must be lowercase
    if spec.mode == "closed":
        args += ["--concurrency-range", f"{spec.concurrency}:{spec.concurrency}"]
    else:
        args += ["--request-rate-range", f"{spec.rate:g}:{spec.rate:g}"]
        if spec.poisson:
            args += ["--request-distribution", "poisson"]
    return args


def input_data(spec: LoadSpec) -> dict[str, object]:
    """perf_analyzer's `--input-data` JSON: one request with each tensor's values and shape."""
    return {"data": [{t["name"]: {"content": t["data"], "shape": t["shape"]} for t in spec.inputs}]}


def parse_csv(text: str, spec: LoadSpec) -> LoadResult:
    """The last row of perf_analyzer's CSV as a `LoadResult` (fields it does not measure are zero)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise UsageError("perf_analyzer CSV: no result rows (did the run fail?)")
    row = {k.strip(): (v or "").strip() for k, v in rows[-1].items() if k is not None}

    def number(name: str) -> float:
        try:
            value = float(row[name])
        except (KeyError, ValueError):
            raise UsageError(f"perf_analyzer CSV: column {name!r} missing or not a number") from None
        # A result holds finite numbers only (harness/shapes.py): `nan` here is bad input, not a traceback.
        if not math.isfinite(value):
            raise UsageError(f"perf_analyzer CSV: column {name!r} is {row[name]!r}, expected a finite number")
        return value

    throughput = number("Inferences/Second")
    latency = dict.fromkeys(LATENCY_KEYS, 0.0)
    for key in ("p50", "p90", "p95", "p99"):
        latency[key] = number(f"{key} latency") / 1000.0
    if "Avg latency" in row:
        latency["mean"] = number("Avg latency") / 1000.0
    # perf_analyzer reports neither min, max nor p99.9 in the CSV; p99 is the best upper bound it gives.
    latency["max"] = latency["p99"]
    latency["p99_9"] = latency["p99"]
    requests = round(throughput * spec.window)
    return LoadResult(
        engine="perf_analyzer", mode=spec.mode, protocol=spec.protocol, endpoint=spec.endpoint, model=spec.model,
        offered_rate_rps=spec.rate if spec.mode == "open" else None,
        concurrency=spec.concurrency if spec.mode == "closed" else None,
        poisson=spec.poisson, duration_s=spec.window, warmup_s=0.0, workers=1,
        requests=requests, ok=requests, errors={}, error_rate=0.0,
        achieved_rate_rps=throughput, throughput_rps=throughput, late_sends=0, late_send_fraction=0.0,
        latency_ms={k: round(v, 4) for k, v in latency.items()},
        # perf_analyzer only writes the CSV after it has judged the measurement stable.
        stable=True, trials=1, windows=[], client_cpu_ms_per_request=0.0, complete=True, failure=None,
        source=LoadSource(where="runner", pods=0),
    )


def run_perf_analyzer(spec: LoadSpec, timeout_s: float | None = None) -> LoadResult:
    spec.validate()
    executable = shutil.which(EXECUTABLE)
    if executable is None:
        raise UsageError("--engine perf_analyzer: perf_analyzer is not on PATH (install Triton's client SDK)")
    budget = timeout_s or (spec.warmup_s + (spec.max_trials * spec.windows_per_trial + 3) * spec.window * 2 + 60)
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        csv_path = Path(tmp) / "result.csv"
        input_path = Path(tmp) / "input.json"
        input_path.write_text(json.dumps(input_data(spec)))
        args = perf_analyzer_args(spec, csv_path, input_path, executable)
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            return _failed(spec, f"perf_analyzer did not finish within {budget:.0f} s")
        if proc.returncode != 0 or not csv_path.is_file():
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            return _failed(spec, f"perf_analyzer exited with {proc.returncode}: {tail}")
        return parse_csv(csv_path.read_text(), spec)


def _failed(spec: LoadSpec, failure: str) -> LoadResult:
    return LoadResult(
        engine="perf_analyzer", mode=spec.mode, protocol=spec.protocol, endpoint=spec.endpoint, model=spec.model,
        offered_rate_rps=spec.rate if spec.mode == "open" else None,
        concurrency=spec.concurrency if spec.mode == "closed" else None, poisson=spec.poisson,
        duration_s=0.0, warmup_s=0.0, workers=1, requests=0, ok=0, errors={}, error_rate=0.0,
        achieved_rate_rps=0.0, throughput_rps=0.0, late_sends=0, late_send_fraction=0.0,
        latency_ms=dict.fromkeys(LATENCY_KEYS, 0.0), stable=False, trials=0, windows=[],
        client_cpu_ms_per_request=0.0, complete=False, failure=failure,
        source=LoadSource(where="runner", pods=0),
    )
