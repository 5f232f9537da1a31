"""Proof that Triton really serves on its GPU: three views that must agree, as pure decisions.

1. **config**: Triton's model config (`/v2/models/<served name>/config`, read through the API server's
   pod proxy to the Triton container: Seldon 2.10.2's mesh answers only inference) has an instance
   group of kind KIND_GPU.
2. **nvml**: NVML on the Server's node (a diagnostic probe with `NVIDIA_VISIBLE_DEVICES=all`) lists a
   compute process holding memory on exactly the GPUs the pod was allocated, and on no other GPU
   that the pod holds none of.
3. **metrics**: Triton's own metrics (`:8002/metrics` through the API server's pod proxy) name the
   GPUs Triton sees (`gpu_uuid` labels), and each of them computed during a sustained load window
   (utilization and compute-time counters; `harness/gpu/gpu_use.py`; memory is never evidence).

The pod's allocation is what Triton itself reports in the metrics (Triton sees only the GPUs the
device plugin gave its container); a view that cannot be taken (NVML not allowed on a cluster the
harness did not create) is recorded as not used, and the others decide. Each disagreement becomes a
failed verdict whose reason carries the evidence of all three views side by side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.gpu.checks import Verdict
from harness.gpu.gpu_use import TRITON_METRICS_INTERVAL_S, TimedScrape, judge_gpu_use, timed_scrape

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition: (metric, labels, value) per sample; comments and junk skipped."""
    out: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        out.append((match.group(1), dict(_LABEL.findall(match.group(3) or "")), value))
    return out


@dataclass(frozen=True)
class GpuSample:
    """Triton's GPU metrics at one moment, by GPU UUID."""

    utilization: Mapping[str, float]
    memory_used: Mapping[str, float]

    @property
    def uuids(self) -> list[str]:
        return sorted(set(self.utilization) | set(self.memory_used))


def gpu_sample(text: str) -> GpuSample:
    scrape = timed_scrape(text, 0.0)  # the same reading, without the time and compute counters
    return GpuSample(scrape.utilization, scrape.memory_used)


def gpu_instance_groups(config: Mapping[str, Any]) -> list[tuple[str, list[int]]]:
    """(kind, device indices) of each instance group in a Triton model config document."""
    groups = []
    for group in config.get("instance_group") or []:
        if isinstance(group, Mapping):
            gpus = [int(g) for g in group.get("gpus") or []]
            groups.append((str(group.get("kind") or "KIND_AUTO"), gpus))
    return groups


@dataclass
class Views:
    """What each view saw for one Triton Server pod; None where the view was not taken."""

    server: str
    pod: str
    node: str
    model: str
    config: Mapping[str, Any] | None = None
    config_error: str | None = None
    # NVML: per GPU UUID of the node, the memory used by compute processes (bytes).
    nvml: Mapping[str, int] | None = None
    nvml_note: str | None = None
    metrics: Sequence[GpuSample] = field(default_factory=list)
    metrics_error: str | None = None
    # The same scrapes with their times and compute counters: what the metrics verdict judges
    # (harness/gpu/gpu_use.py), over Triton's metrics interval.
    timed: Sequence[TimedScrape] = field(default_factory=list)
    metrics_interval_s: float = TRITON_METRICS_INTERVAL_S

    @property
    def used(self) -> list[str]:
        return [name for name, taken in (("config", self.config is not None),
                                         ("nvml", self.nvml is not None),
                                         ("metrics", bool(self.metrics))) if taken]


def triton_gpus(views: Views) -> list[str]:
    """The GPUs Triton sees in its pod, from its metrics labels (its allocation)."""
    seen: set[str] = set()
    for sample in views.metrics:
        seen |= set(sample.uuids)
    return sorted(seen)


def _side_by_side(views: Views) -> str:
    groups = gpu_instance_groups(views.config) if views.config is not None else None
    config = (f"instance groups {groups}" if groups is not None else f"not taken ({views.config_error or 'n/a'})")
    nvml = ({u: b for u, b in sorted(views.nvml.items())} if views.nvml is not None
            else f"not taken ({views.nvml_note or 'n/a'})")
    if views.metrics:
        first, last = views.metrics[0], views.metrics[-1]
        peak = {u: max(s.utilization.get(u, 0.0) for s in views.metrics) for u in last.uuids}
        metrics = (f"GPUs {last.uuids}, memory used {dict(last.memory_used)} (first {dict(first.memory_used)}), "
                   f"peak utilization {peak} over {len(views.metrics)} scrape(s)")
    else:
        metrics = f"not taken ({views.metrics_error or 'n/a'})"
    return f"[config: {config}] [nvml: {nvml}] [metrics: {metrics}]"


def check_triton_gpu_use(views: Views) -> list[Verdict]:
    """The three views' verdicts for one pod, plus their agreement; every reason shows all views."""
    where = f"Server {views.server} pod {views.pod} on {views.node}, model {views.model}"
    evidence = _side_by_side(views)
    verdicts: list[Verdict] = []
    allocated = set(triton_gpus(views))
    if not views.used or views.used == ["nvml"]:
        return [Verdict("gpu.triton.views", False,
                        f"{where}: neither Triton's model config nor its metrics could be read; {evidence}")]

    says: dict[str, bool] = {}
    if views.config is not None:
        groups = gpu_instance_groups(views.config)
        on_gpu = any(kind == "KIND_GPU" for kind, _ in groups)
        says["config"] = on_gpu
        verdicts.append(Verdict("gpu.triton.config", on_gpu,
                                f"{where}: model config {'has' if on_gpu else 'has no'} KIND_GPU instance group; "
                                f"{evidence}"))
    if views.metrics:
        # Sustained compute on each of the pod's GPUs over a window of several metrics intervals; memory
        # alone (an allocator that grew once) is never evidence.
        use = judge_gpu_use(views.timed, sorted(allocated), interval_s=views.metrics_interval_s)
        says["metrics"] = use.ok
        verdicts.append(Verdict("gpu.triton.metrics", use.ok, f"{where}: Triton metrics: {use.reason}; {evidence}"))
    if views.nvml is not None:
        holders = {u for u, b in views.nvml.items() if b > 0}
        if allocated:
            # NVML reports host PIDs, which a pod cannot map to containers: the evidence is memory held
            # on every GPU the pod was allocated (other GPUs of the node may belong to other pods).
            ok = allocated <= holders
            why = (f"processes hold memory on {sorted(holders)}; the pod's GPUs (from Triton) are {sorted(allocated)}")
        else:
            ok = False
            why = f"processes hold memory on {sorted(holders)}, but the pod's GPUs are unknown (no Triton metrics)"
        says["nvml"] = ok
        verdicts.append(Verdict("gpu.triton.nvml", ok, f"{where}: NVML on the node: {why}; {evidence}"))
    agree = len(set(says.values())) <= 1
    verdicts.append(Verdict("gpu.triton.agree", agree and all(says.values()),
                            f"{where}: views used {', '.join(views.used)}; "
                            f"{'they agree' if agree else 'they DISAGREE'} "
                            f"({', '.join(f'{k}={v}' for k, v in says.items())}); {evidence}"))
    return verdicts

