"""Did a GPU compute during a load run? Triton's metrics judged over a sustained window, as a pure decision.

Triton refreshes its GPU metrics every `--metrics-interval-ms` (2000 ms by default), so one scrape says
little and a short run can land between two refreshes. And device memory is a poor witness: an
allocator grows once (at load, at the first request) and stays, whether or not the GPU computes. So the
judgement:

- needs a window (first to last scrape) of at least `MIN_INTERVALS` metrics intervals, and enough
  scrapes in it to see each refresh;
- for each GPU the pod was given, needs both signals that move only when that GPU computes:
  `nv_gpu_utilization` above zero in at least `MIN_BUSY_SCRAPES` scrapes, and the compute-time
  counter `nv_inference_compute_infer_duration_us` of the models whose instances run on that GPU
  (Triton labels them with the GPU's `gpu_uuid`) growing over the window;
- reports memory, but never counts it: memory that grew once without compute is a failure.

The window, the number of scrapes and the interval are part of every reason, so the evidence says how
much was seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Triton's default `--metrics-interval-ms` (the 23.03 image of Seldon's ServerConfig sets none).
TRITON_METRICS_INTERVAL_S = 2.0
# The window must span this many metrics intervals: each signal is then refreshed at least twice.
MIN_INTERVALS = 3.0
# Utilization must be seen above zero in this many scrapes (one nonzero gauge can be a stray refresh).
MIN_BUSY_SCRAPES = 2
_COMPUTE = "nv_inference_compute_infer_duration_us"


@dataclass(frozen=True)
class TimedScrape:
    """One scrape of Triton's metrics, per GPU UUID, at `at_s` seconds (any monotonic clock)."""

    at_s: float
    utilization: Mapping[str, float]
    memory_used: Mapping[str, float]
    # Cumulative compute time of the model instances on each GPU (summed over models), microseconds.
    compute_us: Mapping[str, float]


def timed_scrape(text: str, at_s: float) -> TimedScrape:
    from harness.gpu.triton import parse_metrics  # here: harness.gpu.triton imports this module

    util: dict[str, float] = {}
    used: dict[str, float] = {}
    compute: dict[str, float] = {}
    for name, labels, value in parse_metrics(text):
        uuid = labels.get("gpu_uuid")
        if not uuid:
            continue
        if name == "nv_gpu_utilization":
            util[uuid] = value
        elif name == "nv_gpu_memory_used_bytes":
            used[uuid] = value
        elif name == _COMPUTE:
            compute[uuid] = compute.get(uuid, 0.0) + value
    return TimedScrape(at_s, util, used, compute)


@dataclass(frozen=True)
class GpuUse:
    """The judgement for one pod's GPUs, with the evidence it rests on."""

    ok: bool
    reason: str
    window_s: float
    scrapes: int
    interval_s: float


def judge_gpu_use(scrapes: Sequence[TimedScrape], gpus: Sequence[str], *,
                  interval_s: float = TRITON_METRICS_INTERVAL_S) -> GpuUse:
    """Whether every GPU in `gpus` computed during the window the scrapes span (see the module doc)."""
    ordered = sorted(scrapes, key=lambda s: s.at_s)
    window = ordered[-1].at_s - ordered[0].at_s if ordered else 0.0
    seen = f"{len(ordered)} scrape(s) over {window:.1f} s, metrics interval {interval_s:g} s"

    def verdict(ok: bool, why: str) -> GpuUse:
        return GpuUse(ok, f"{why} ({seen})", window, len(ordered), interval_s)

    if not gpus:
        return verdict(False, "Triton reports no GPU at all")
    needed = MIN_INTERVALS * interval_s
    if window < needed or len(ordered) < MIN_INTERVALS + 1:
        return verdict(False, f"the window is too short to judge: it must span {needed:g} s "
                              f"({MIN_INTERVALS:g} metrics intervals) with at least {int(MIN_INTERVALS) + 1} scrapes")
    first, last = ordered[0], ordered[-1]
    idle: list[str] = []
    details: list[str] = []
    for uuid in sorted(gpus):
        busy = sum(1 for s in ordered if s.utilization.get(uuid, 0.0) > 0)
        computed = last.compute_us.get(uuid, 0.0) - first.compute_us.get(uuid, 0.0)
        grew = last.memory_used.get(uuid, 0.0) - first.memory_used.get(uuid, 0.0)
        details.append(f"{uuid}: utilization > 0 in {busy} scrape(s), compute time +{computed:.0f} us, "
                       f"memory {'+' if grew >= 0 else ''}{grew:.0f} B (not evidence)")
        if busy < MIN_BUSY_SCRAPES or computed <= 0:
            idle.append(uuid)
    if idle:
        return verdict(False, f"no sustained compute on {idle}: each GPU needs utilization > 0 in "
                              f"{MIN_BUSY_SCRAPES}+ scrapes and growing compute time; " + "; ".join(details))
    return verdict(True, "every GPU computed during the window: " + "; ".join(details))
