"""Where `gpu_workers: auto` reads the host's GPUs: NVML on the runner, or a simulated host on `--rehearse`."""

from __future__ import annotations

from harness.config import GpuWorkers, Profile
from harness.errors import UsageError
from harness.layout import GpuLayout, from_inventory, is_auto

# A rehearsal's simulated host: GPUs of GpuWorkers' default product unless the profile says otherwise.
REHEARSAL_SOURCE = "simulated host (--rehearse --rehearse-host-gpus)"


def host_layout(profile: Profile) -> tuple[Profile, GpuLayout | None]:
    """Lay an auto profile out from the runner's GPUs through NVML (listed profiles pass through)."""
    if not is_auto(profile):
        return profile, None
    from harness.gpu.host import host_inventory_with_reason

    result, reason = host_inventory_with_reason()
    if result is None:
        raise UsageError(f"{profile.source}: cluster.nodes.gpu_workers: auto reads the host's GPUs through NVML: "
                         f"{reason}; rehearse it with --rehearse --rehearse-host-gpus N, or list the GPU workers")
    ordered = sorted(result.devices, key=lambda d: d.index)
    devices = [(d.name or "NVIDIA GPU", d.memory_total_bytes or 0) for d in ordered]
    return from_inventory(profile, devices, "host NVML")


def rehearsal_layout(profile: Profile, host_gpus: int) -> tuple[Profile, GpuLayout | None]:
    """Lay an auto profile out for a simulated host with `host_gpus` GPUs."""
    if not is_auto(profile):
        return profile, None
    if host_gpus < 1:
        raise UsageError(f"--rehearse-host-gpus: expected at least 1, got {host_gpus}")
    template = GpuWorkers()
    name = template.product.replace("-", " ")
    return from_inventory(profile, [(name, template.memory_mib * 1024 * 1024)] * host_gpus, REHEARSAL_SOURCE)
