"""What was measured: `LoadResult`, the shared result shape of both engines, the `harness load` JSON
and each latency entry of the report (which takes this class as its field type).

A module of its own, not imported by `harness.load.engine` at import time: spawned load workers
import the engine, never build a result, and so need not import pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_serializer

from harness.load.spec import Mode, Protocol
from harness.shapes import Record, rounded


class LatencyPercentiles(Record):
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p99_9: float
    max: float


class LatencyWindow(Record):
    throughput_rps: float
    p99_ms: float


class GeneratorPod(Record):
    """One in-cluster generator pod's own figures (harness/load/generator.py, merged by merge.py)."""

    index: int
    pod: str
    node: str
    requests: int
    ok: int
    recorded: int  # latencies in its histogram (== ok)
    late_sends: int
    errors: dict[str, int]
    cpu_s: Annotated[float, rounded(4)]
    client_cpu_ms_per_request: Annotated[float, rounded(4)]
    start_lag_s: Annotated[float, rounded(4)]
    p50_ms: float
    p99_ms: float
    failure: str | None


class LoadSource(Record):
    """Where the load came from: the runner's own processes, or generator pods in the cluster."""

    where: Literal["runner", "cluster"]
    pods: int  # generator pods (0: the runner's own processes, `workers` of the result)
    namespace: str | None = None
    job: str | None = None
    image: str | None = None
    target: str | None = None
    recorded: int = 0  # latencies in the merged histogram: exactly the sum of the pods' `recorded`
    generators: list[GeneratorPod] = Field(default_factory=list)


class LoadResult(Record):
    """The shared result shape (see docs/architecture.md and the report schema)."""

    engine: Literal["harness", "perf_analyzer"]
    mode: Mode
    protocol: Protocol
    endpoint: str
    model: str
    offered_rate_rps: float | None
    concurrency: int | None
    poisson: bool
    duration_s: Annotated[float, rounded(4)]
    warmup_s: float
    workers: int
    requests: int
    ok: int
    errors: dict[str, int]
    error_rate: Annotated[float, rounded(6)]
    achieved_rate_rps: Annotated[float, rounded(3)]
    throughput_rps: Annotated[float, rounded(3)]
    late_sends: int
    late_send_fraction: Annotated[float, rounded(6)]
    latency_ms: LatencyPercentiles
    stable: bool
    trials: int
    windows: list[LatencyWindow]
    client_cpu_ms_per_request: Annotated[float, rounded(4)]
    # No defaults: a report without these keys is incomplete evidence, not a complete run.
    complete: bool
    failure: str | None
    # Where the load came from (every producer writes it; None only in results written before it existed).
    source: LoadSource | None = None
    # Successful requests within `LoadSpec.goodput_ms` (None when not asked for). Not part of the
    # shared shape, so never written nor read back: the sweep reports it per step.
    _good: int | None = PrivateAttr(default=None)

    @field_serializer("errors")
    def _sorted_errors(self, errors: dict[str, int]) -> dict[str, int]:
        return dict(sorted(errors.items()))

    @property
    def good(self) -> int | None:
        return self._good

    def counting_good(self, good: int | None) -> LoadResult:
        """This result, with `good` requests within the goodput latency bound (set by the engine)."""
        self._good = good
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (`harness load --json`, the report's `latency[].result`)."""
        return self.model_dump()


def fraction(part: int, whole: int) -> float:
    """`part / whole`, 0 when nothing was sent (the error rate and late-send fraction of a result)."""
    return part / whole if whole else 0.0
