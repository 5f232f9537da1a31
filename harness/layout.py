"""`cluster.nodes.gpu_workers: auto`: GPU workers laid out from the host's GPUs (pure).

The rule (docs/real-clusters.md, "GPU layout"), for N GPUs that NVML shows on the host:
- N <= 4: N workers with one GPU each (1 -> 1x1, 2 -> 2x1, 4 -> 4x1): the GPU Servers land on
  separate workers, so with 4 GPUs two workers stay free (probes, the eviction test);
- N >= 5: N // 2 workers with two GPUs each (8 -> 4x2; an odd GPU stays unused), at most 8
  workers: however two one-GPU Servers are placed, one worker keeps two GPUs free (two probes side
  by side) and one runs no Server (the eviction test).
The product label and memory come from NVML (GPU 0's name with spaces as dashes, as
gpu-feature-discovery writes `nvidia.com/gpu.product`).
GPU Servers keep the profile's order; one whose replicas no longer fit in the host's GPUs is left
out of the run together with the models that can only land on it, and the layout says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import GpuWorkers, Profile, parse_profile
from harness.errors import UsageError

MAX_WORKERS = 8
# What `harness render` / `lint` lay an auto profile out for when no host is asked (the shape under which
# every test runs); a run always lays out from the host it runs on.
STATIC_HOST_GPUS = 8


@dataclass(frozen=True)
class GpuLayout:
    """The layout a run used: shown in the report (`gpu_layout`)."""

    host_gpus: int
    product: str
    memory_mib: int
    workers: int
    gpus_per_worker: int
    source: str  # "host NVML", "simulated host (--rehearse)", "no host (render/lint)"
    unused_gpus: int = 0
    left_out_servers: tuple[str, ...] = ()
    left_out_models: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        text = (f"{self.workers} GPU worker(s) x {self.gpus_per_worker} {self.product} GPU(s) from "
                f"{self.host_gpus} host GPU(s) ({self.source})")
        if self.unused_gpus:
            text += f"; {self.unused_gpus} GPU(s) unused"
        if self.left_out_servers:
            text += (f"; left out (not enough GPUs): Server(s) {', '.join(self.left_out_servers)}"
                     + (f", Model(s) {', '.join(self.left_out_models)}" if self.left_out_models else ""))
        return text

    def as_dict(self) -> dict[str, object]:
        return {"host_gpus": self.host_gpus, "product": self.product, "memory_mib": self.memory_mib,
                "workers": self.workers, "gpus_per_worker": self.gpus_per_worker, "source": self.source,
                "unused_gpus": self.unused_gpus, "left_out_servers": list(self.left_out_servers),
                "left_out_models": list(self.left_out_models), "summary": self.describe()}


def worker_shape(host_gpus: int) -> tuple[int, int]:
    """(workers, GPUs per worker) for `host_gpus` host GPUs (the rule above)."""
    if host_gpus < 1:
        raise ValueError("gpu_workers: auto needs at least one host GPU")
    if host_gpus <= 4:
        return host_gpus, 1
    return min(host_gpus // 2, MAX_WORKERS), 2


def product_label(nvml_name: str) -> str:
    """NVML's name as a label value: "NVIDIA H200 NVL" -> "NVIDIA-H200-NVL" (gpu-feature-discovery)."""
    label = "-".join(nvml_name.split())
    return label[:63] or "NVIDIA-GPU"


def is_auto(profile: Profile) -> bool:
    return profile.cluster.nodes.gpu_layout == "auto"


def resolve(profile: Profile, host_gpus: int, product: str, memory_mib: int, source: str) -> tuple[Profile, GpuLayout]:
    """`profile` with its GPU workers laid out for the host, and the layout used. A listed profile is
    returned unchanged (layout None is the caller's business: only auto profiles have one)."""
    workers, per_worker = worker_shape(host_gpus)
    data = profile.model_dump(exclude={"source"})
    data["cluster"]["nodes"]["gpu_layout"] = "listed"
    data["cluster"]["nodes"]["gpu_workers"] = [{"count": workers, "gpus": per_worker,
                                                "product": product, "memory_mib": memory_mib}]
    budget = workers * per_worker
    kept, left_out = [], []
    for server in data["servers"]:
        need = server.get("gpus", 0) * server.get("replicas", 1)
        if need and (need > budget or server.get("gpus", 0) > per_worker):
            left_out.append(server["name"])
            continue
        budget -= need
        kept.append(server)
    data["servers"] = kept
    left_models: list[str] = []
    if left_out:
        kept_names = {s["name"] for s in kept}
        trial = parse_profile({**data, "models": [], "source": profile.source}, profile.source)
        models = []
        for model in profile.models:
            pinned_away = model.server is not None and model.server not in kept_names
            if pinned_away or (model.server is None and not trial.servers_for(model)):
                left_models.append(model.name)
            else:
                models.append(data["models"][profile.models.index(model)])
        data["models"] = models
        data["model_slos"] = {k: v for k, v in data.get("model_slos", {}).items() if k not in left_models}
    try:
        resolved = parse_profile({**data, "source": profile.source}, profile.source)
    except UsageError as exc:
        raise UsageError(f"{exc} (cluster.nodes.gpu_workers: auto laid out {workers} x {per_worker} GPU(s) "
                         f"for {host_gpus} host GPU(s))") from None
    layout = GpuLayout(host_gpus=host_gpus, product=product, memory_mib=memory_mib, workers=workers,
                       gpus_per_worker=per_worker, source=source, unused_gpus=host_gpus - workers * per_worker,
                       left_out_servers=tuple(left_out), left_out_models=tuple(left_models))
    return resolved, layout


def static(profile: Profile) -> Profile:
    """An auto profile laid out without a host (render, lint, the skip predictor): the 8-GPU layout
    of GpuWorkers' default product. A listed profile is returned as it is."""
    if not is_auto(profile):
        return profile
    template = GpuWorkers()
    resolved, _ = resolve(profile, STATIC_HOST_GPUS, template.product, template.memory_mib,
                          "no host (render/lint)")
    return resolved


def from_inventory(profile: Profile, devices: list[tuple[str, int]], source: str) -> tuple[Profile, GpuLayout]:
    """Lay out from NVML's devices: (name, memory in bytes) in index order."""
    if not devices:
        raise UsageError(f"{profile.source}: cluster.nodes.gpu_workers: auto found no GPU on the host through NVML; "
                         "list the GPU workers in the profile, or use profiles/kind-cpu.yaml without GPUs")
    names = {name for name, _ in devices}
    if len(names) > 1:
        raise UsageError(f"{profile.source}: cluster.nodes.gpu_workers: auto needs GPUs of one product, NVML shows "
                         f"{', '.join(sorted(names))}: list the GPU workers and host_gpus in the profile")
    name, memory = devices[0]
    return resolve(profile, len(devices), product_label(name), max(1, memory // (1024 * 1024)), source)
