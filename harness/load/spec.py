"""What to measure (`LoadSpec`); what was measured is `harness.load.result.LoadResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from harness.errors import UsageError
from harness.load.answers import Expected

if TYPE_CHECKING:
    from harness.config import Model, Profile, Tensor

Protocol = Literal["http", "grpc"]
Mode = Literal["open", "closed"]
# What a capacity-sweep step was for (harness/load/sweep.py); the report model takes the same type.
SweepPhase = Literal["ramp", "bisect", "confirm"]

DEFAULT_INPUT: dict[str, Any] = {"name": "predict", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
DATATYPES = ("FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL",
             "BYTES")


def tensor_dict(tensor: Tensor) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape), "data": list(tensor.data)}


def validate_inputs(inputs: Any, source: str) -> list[dict[str, Any]]:
    """Check an Open Inference Protocol `inputs` list; raise UsageError naming `source` and the field."""
    if not isinstance(inputs, list) or not inputs:
        raise UsageError(f"{source}: inputs: expected a non-empty list of tensors")
    for i, tensor in enumerate(inputs):
        where = f"{source}: inputs[{i}]"
        if not isinstance(tensor, dict):
            raise UsageError(f"{where}: expected an object with name, datatype, shape, data")
        missing = [k for k in ("name", "datatype", "shape", "data") if k not in tensor]
        if missing:
            raise UsageError(f"{where}: missing {', '.join(missing)}")
        if tensor["datatype"] not in DATATYPES:
            raise UsageError(f"{where}.datatype: expected one of {', '.join(DATATYPES)}, got {tensor['datatype']!r}")
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise UsageError(f"{where}.shape: expected a list of non-negative integers, got {shape!r}")
        if not isinstance(tensor["data"], list):
            raise UsageError(f"{where}.data: expected a flat list of values")
        if len(tensor["data"]) != math.prod(shape):
            needed = math.prod(shape)
            raise UsageError(f"{where}.data: has {len(tensor['data'])} values but shape {shape} needs {needed}")
    return inputs


@dataclass(frozen=True)
class Target:
    """Where requests go: host and port, plus an HTTP path prefix (for a mesh behind a path)."""

    host: str
    port: int
    prefix: str = ""


def parse_endpoint(endpoint: str, protocol: Protocol) -> Target:
    """`http://host:port[/prefix]`, `host:port` or, for gRPC, `grpc://host:port`."""
    text = endpoint.strip()
    if "://" not in text:
        text = f"{'http' if protocol == 'http' else 'grpc'}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "grpc"):
        note = " (TLS endpoints are not supported)" if parts.scheme in ("https", "grpcs") else ""
        raise UsageError(
            f"--endpoint: expected http://host:port, grpc://host:port or host:port, got {endpoint!r}{note}"
        )
    if protocol == "grpc" and parts.path not in ("", "/"):
        raise UsageError(f"--endpoint: a gRPC endpoint takes no path, got {endpoint!r}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--endpoint: invalid port in {endpoint!r}") from None
    if not parts.hostname:
        raise UsageError(f"--endpoint: expected a host in {endpoint!r}")
    if port is None:
        port = 80 if parts.scheme == "http" else 9000
    return Target(parts.hostname, port, parts.path.rstrip("/"))


@dataclass(frozen=True)
class LoadSpec:
    """One latency measurement. Open loop needs `rate`, closed loop `concurrency`.

    After `warmup_s`, the run measures back-to-back windows of `window` seconds; a trial is
    `duration_s` (`windows_per_trial` windows). After each trial the last three windows are judged
    (throughput and p99 within `tolerance`); the run stops when they agree or after `max_trials`.
    The figures reported are those of the last trial; `windows` lists every window measured.
    """

    endpoint: str
    model: str
    protocol: Protocol = "http"
    mode: Mode = "open"
    rate: float | None = None
    concurrency: int | None = None
    poisson: bool = False
    duration_s: float = 10.0
    warmup_s: float = 2.0
    # Stability window; None means a third of `duration_s`, so every trial can be judged on its own.
    window_s: float | None = None
    tolerance: float = 0.10
    max_trials: int = 1
    # Worker processes; None lets the engine decide from the load asked for.
    workers: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=lambda: [dict(DEFAULT_INPUT)])
    timeout_s: float = 10.0
    # Stop early (complete=False) when no request has succeeded for this long while every recent one
    # failed at the connection level: the server is gone, not slow.
    dead_after_s: float = 1.0
    seed: int | None = None
    # Answers are checked (answers.py): every 200 must be an inference answer for `model`; with
    # `expected` outputs, every `check_every`-th answer's values are compared too.
    expected: tuple[Expected, ...] = ()
    check_every: int = 10
    check_answers: bool = True
    # gRPC client: `raw` (a minimal HTTP/2 client, grpc_raw.py) or `aio` (grpc.aio), for comparison.
    grpc_client: Literal["raw", "aio"] = "raw"
    # Goodput: count the successful requests at or below this latency (the SLO's per-request bound).
    goodput_ms: float | None = None

    def validate(self) -> LoadSpec:
        if not self.model:
            raise UsageError("--model: expected a model name")
        parse_endpoint(self.endpoint, self.protocol)
        if self.mode == "open":
            if self.rate is None or not self.rate > 0:
                raise UsageError(f"--rate: open loop needs a rate > 0 requests/s, got {self.rate!r}")
            if self.concurrency is not None:
                raise UsageError("--concurrency: not allowed in open loop (give --rate only)")
        elif self.mode == "closed":
            if self.concurrency is None or self.concurrency < 1:
                raise UsageError(f"--concurrency: closed loop needs N >= 1, got {self.concurrency!r}")
            if self.rate is not None or self.poisson:
                raise UsageError("--rate/--poisson: not allowed in closed loop (give --concurrency only)")
        else:
            raise UsageError(f"mode: expected open or closed, got {self.mode!r}")
        if self.protocol not in ("http", "grpc"):
            raise UsageError(f"--protocol: expected http or grpc, got {self.protocol!r}")
        if not self.duration_s > 0:
            raise UsageError(f"--duration: expected seconds > 0, got {self.duration_s!r}")
        if self.warmup_s < 0:
            raise UsageError(f"--warmup: expected seconds >= 0, got {self.warmup_s!r}")
        if self.window_s is not None and not 0 < self.window_s <= self.duration_s:
            raise UsageError(f"--window: expected seconds in (0, duration={self.duration_s}], got {self.window_s!r}")
        if not 0 < self.tolerance <= 1:
            raise UsageError(f"--tolerance: expected a fraction in (0, 1], got {self.tolerance!r}")
        if self.max_trials < 1:
            raise UsageError(f"--max-trials: expected >= 1, got {self.max_trials!r}")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers: expected >= 1, got {self.workers!r}")
        if not self.timeout_s > 0:
            raise UsageError(f"--timeout: expected seconds > 0, got {self.timeout_s!r}")
        if self.check_every < 1:
            raise UsageError(f"--check-every: expected >= 1, got {self.check_every!r}")
        validate_inputs(self.inputs, "inputs")
        return self

    @property
    def window(self) -> float:
        return self.window_s if self.window_s is not None else self.duration_s / 3.0

    @property
    def windows_per_trial(self) -> int:
        return max(1, round(self.duration_s / self.window))

    @classmethod
    def from_profile(
        cls, profile: Profile, model: Model | str, endpoint: str, protocol: Protocol | None = None
    ) -> LoadSpec:
        """The profile's `load` settings for one of its models (input from `models[].input`)."""
        if isinstance(model, str):
            found = [m for m in profile.models if m.name == model]
            if not found:
                raise UsageError(f"{profile.source}: models: no model named {model!r}")
            model = found[0]
        load = profile.load
        return cls(
            endpoint=endpoint,
            model=model.name,
            protocol=protocol or load.protocol,
            mode=load.mode,
            rate=load.rate if load.mode == "open" else None,
            concurrency=load.concurrency if load.mode == "closed" else None,
            poisson=load.poisson if load.mode == "open" else False,
            duration_s=load.duration_s,
            warmup_s=load.warmup_s,
            window_s=min(load.window_s, load.duration_s),
            tolerance=load.stability_tolerance,
            max_trials=load.max_trials,
            workers=load.workers,
            inputs=[tensor_dict(t) for t in model.request_inputs] or [dict(DEFAULT_INPUT)],
            timeout_s=load.request_timeout_s,
            expected=(Expected(model.expected_output.name, tuple(model.expected_output.data)),)
            if model.expected_output is not None else (),
        ).validate()
