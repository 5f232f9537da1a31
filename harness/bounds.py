"""Upper bounds on every number a user can give: each profile field and each `load` flag.

A finite but huge value (a rate of 1e9, a duration of a year, a tensor dimension of 1e12) passes
type checks and then runs away at run time: memory for every intended send time, a run that never
ends. Each number has a documented ceiling here (docs/bounds.md is generated from these tables and
checked against them by tests/rules/test_bounds.py); a value above it is refused with one line naming
the field, the ceiling and the value. Pure: no I/O, nothing else of the harness.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

DAY_S = 86_400.0
HOUR_S = 3_600.0
MAX_RATE = 100_000.0
# Requests one trial may plan (rate x (warm-up + duration)): the engine keeps a send time per request.
MAX_PLANNED_REQUESTS = 10_000_000

# Profile field (dotted, `*` = any list index or map key) -> (ceiling, why).
PROFILE_BOUNDS: dict[str, tuple[float, str]] = {
    "cluster.mesh_host_port": (65_535, "a TCP port"),
    "cluster.mesh_node_port": (32_767, "the NodePort range"),
    "cluster.nodes.control_plane.count": (20, "nodes of one cluster"),
    "cluster.nodes.cpu_workers.count": (20, "nodes of one cluster"),
    "cluster.nodes.gpu_workers.*.count": (16, "nodes of one group"),
    "cluster.nodes.gpu_workers.*.gpus": (16, "GPUs of one node"),
    "cluster.nodes.gpu_workers.*.memory_mib": (16 * 1024 * 1024, "16 TiB of GPU memory"),
    "servers.*.replicas": (16, "replicas of one Server"),
    "servers.*.gpus": (16, "GPUs of one pod"),
    "models.*.replicas": (16, "replicas of one Model"),
    "models.*.input.shape.*": (1_000_000, "one tensor dimension"),
    "models.*.expected_output.shape.*": (1_000_000, "one tensor dimension"),
    "models.*.inputs.*.shape.*": (1_000_000, "one tensor dimension"),
    "models.*.expected_outputs.*.shape.*": (1_000_000, "one tensor dimension"),
    "slo.p50_ms": (HOUR_S * 1000, "one hour"),
    "slo.p95_ms": (HOUR_S * 1000, "one hour"),
    "slo.p99_ms": (HOUR_S * 1000, "one hour"),
    "slo.min_throughput_rps": (MAX_RATE, "the highest rate the load engine offers"),
    "slo.max_error_rate": (1, "a fraction"),
    "model_slos.*.p50_ms": (HOUR_S * 1000, "one hour"),
    "model_slos.*.p95_ms": (HOUR_S * 1000, "one hour"),
    "model_slos.*.p99_ms": (HOUR_S * 1000, "one hour"),
    "model_slos.*.min_throughput_rps": (MAX_RATE, "the highest rate the load engine offers"),
    "model_slos.*.max_error_rate": (1, "a fraction"),
    "gpu.device_plugin.replicas": (128, "time-sliced replicas of one GPU"),
    "gpu.sharing.time_slicing.replicas": (128, "time-sliced replicas of one GPU"),
    "load.generators.pods": (64, "generator pods of one Job"),
    "load.generators.start_margin_s": (HOUR_S, "one hour"),
    "load.rate": (MAX_RATE, "requests per second"),
    "load.concurrency": (1024, "requests in flight"),
    "load.duration_s": (DAY_S, "one day"),
    "load.warmup_s": (HOUR_S, "one hour"),
    "load.window_s": (HOUR_S, "one hour"),
    "load.stability_tolerance": (1, "a fraction"),
    "load.max_trials": (50, "trials"),
    "load.workers": (64, "worker processes"),
    "load.request_timeout_s": (HOUR_S, "one hour"),
    "load.sweep.start_rate": (MAX_RATE, "requests per second"),
    "load.sweep.growth": (10, "a factor per step"),
    "load.sweep.resolution": (1, "a fraction"),
    "load.sweep.budget_s": (DAY_S, "one day"),
    "load.sweep.step_s": (HOUR_S, "one hour"),
    "load.sweep.warmup_s": (HOUR_S, "one hour"),
    "load.sweep.min_requests": (MAX_PLANNED_REQUESTS, "requests per step"),
    "load.sweep.confirmations": (10, "confirmations"),
    "timeouts.request_s": (HOUR_S, "one hour"),
    "timeouts.preflight_s": (HOUR_S, "one hour"),
    "timeouts.*": (DAY_S, "one day"),
}
# Numbers that are data, not settings: tensor values are sent as given (any finite number).
DATA_FIELDS = ("models.*.input.data.*", "models.*.expected_output.data.*", "models.*.inputs.*.data.*",
               "models.*.expected_outputs.*.data.*", "seldon.setup_values.*", "seldon.runtime_values.*")

# `load` flag (argparse dest) -> (ceiling, why); the gate's percentages too.
FLAG_BOUNDS: dict[str, tuple[float, str]] = {
    "rate": (MAX_RATE, "requests per second"),
    "concurrency": (1024, "requests in flight"),
    "duration": (DAY_S, "one day"),
    "warmup": (HOUR_S, "one hour"),
    "window": (HOUR_S, "one hour"),
    "tolerance": (1, "a fraction"),
    "max_trials": (50, "trials"),
    "workers": (64, "worker processes"),
    "pods": (64, "generator pods of one Job"),
    "start_margin": (HOUR_S, "one hour"),
    "timeout": (HOUR_S, "one hour"),
    "check_every": (1_000_000, "requests"),
    "slo_p50_ms": (HOUR_S * 1000, "one hour"),
    "slo_p95_ms": (HOUR_S * 1000, "one hour"),
    "slo_p99_ms": (HOUR_S * 1000, "one hour"),
    "slo_max_error_rate": (1, "a fraction"),
    "sweep_budget": (DAY_S, "one day"),
    "sweep_start_rate": (MAX_RATE, "requests per second"),
    "sweep_resolution": (1, "a fraction"),
    "max_regression": (100, "10000 %"),
    "min_change_ms": (HOUR_S * 1000, "one hour"),
    "max_capacity_drop": (1, "a fraction"),
    "port": (65_535, "a TCP port"),
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _numbers(data: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(data, bool):
        return
    if isinstance(data, int | float):
        yield path, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _numbers(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            yield from _numbers(value, f"{path}.{i}")


def _pattern(path: str) -> str:
    return ".".join("*" if part.isdigit() else part for part in path.split("."))


def bound_for(path: str) -> tuple[float, str] | None:
    """The ceiling of a profile field (None: a data field with no ceiling). Exact entries win over `*`."""
    generic = _pattern(path)
    if any(fnmatch.fnmatchcase(generic, d) for d in DATA_FIELDS):
        return None
    if generic in PROFILE_BOUNDS:
        return PROFILE_BOUNDS[generic]
    for pattern, bound in PROFILE_BOUNDS.items():
        if "*" in pattern and fnmatch.fnmatchcase(generic, pattern):
            return bound
    # A field added without an entry (tests/rules/test_bounds.py fails on one) still gets a ceiling.
    return (1e9, "no documented bound: report this")


def _planned(rate: Any, duration: Any, warmup: Any) -> float | None:
    """Requests one trial plans at a fixed rate (None when not all three are numbers)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (rate, duration, warmup)):
        return None
    return float(rate) * (float(duration) + float(warmup))


def profile_problem(data: Mapping[str, Any]) -> str | None:
    """`field: expected at most N (why), got V` for the first number above its ceiling, else None."""
    for path, value in _numbers(data):
        bound = bound_for(path)
        if bound is not None and not (math.isfinite(value) and value <= bound[0]):
            shown = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", path)  # `models[0].inputs[1]`, as other profile errors
            return f"{shown}: expected at most {_num(bound[0])} ({bound[1]}), got {value:g}"
    load = data.get("load") or {}
    planned = _planned(load.get("rate"), load.get("duration_s"), load.get("warmup_s"))
    if planned is not None and planned > MAX_PLANNED_REQUESTS:
        return (f"load.rate x (load.warmup_s + load.duration_s): expected at most {MAX_PLANNED_REQUESTS} "
                f"planned requests per trial, got {planned:.0f}")
    return None


def flag_problem(values: Mapping[str, Any]) -> str | None:
    """`--flag: expected at most N (why), got V` for the first command-line number above its ceiling."""
    for dest, (ceiling, why) in FLAG_BOUNDS.items():
        value = values.get(dest)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > ceiling:
            return f"--{dest.replace('_', '-')}: expected at most {_num(ceiling)} ({why}), got {value:g}"
    planned = _planned(values.get("rate"), values.get("duration"), values.get("warmup"))
    if planned is not None and planned > MAX_PLANNED_REQUESTS:
        return (f"--rate x (--warmup + --duration): expected at most {MAX_PLANNED_REQUESTS} planned "
                f"requests per trial, got {planned:.0f}")
    return None


def table() -> str:
    """The bounds as a Markdown table (docs/bounds.md holds this text)."""
    rows = ["| profile field | at most | why |", "|---|---|---|"]
    rows += [f"| `{p}` | {_num(c)} | {w} |" for p, (c, w) in PROFILE_BOUNDS.items()]
    rows += ["", "| `load`/`gate`/`sim up` flag | at most | why |", "|---|---|---|"]
    rows += [f"| `--{d.replace('_', '-')}` | {_num(c)} | {w} |" for d, (c, w) in FLAG_BOUNDS.items()]
    rows += ["", f"Also: `load.rate` x (`load.warmup_s` + `load.duration_s`) and `--rate` x (`--warmup` + "
             f"`--duration`) at most {MAX_PLANNED_REQUESTS} planned requests per trial. Tensor `data` values "
             "are data, not settings: any finite number."]
    return "\n".join(rows) + "\n"
