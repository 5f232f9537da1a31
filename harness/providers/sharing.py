"""Preflight for shared GPUs on the kind lane: MIG needs MIG-capable GPUs with MIG on and MIG devices
created on the host (kind passes host GPUs through; it cannot partition them). Time-slicing needs nothing
of the host: the device plugin's config (harness/render/sharing.py) does it on any NVIDIA GPU."""

from __future__ import annotations

from harness.config import Profile
from harness.gpu.result import ProbeResult
from harness.providers.base import PreflightCheck


def host_mig_check(profile: Profile, host: ProbeResult | None, reason: str) -> PreflightCheck | None:
    """None when the profile asks for no MIG; else one line saying whether the host's GPUs have it."""
    mig = profile.gpu.sharing.mig
    if mig is None:
        return None
    if host is None:
        return PreflightCheck("host.mig", False, f"gpu.sharing.mig needs MIG-enabled GPUs on the host, but host "
                                                 f"NVML is unusable: {reason}")
    ready = [d for d in host.devices if d.mig_enabled and d.mig_devices]
    off = [d.uuid or str(d.index) for d in host.devices if d not in ready]
    if not ready:
        return PreflightCheck("host.mig", False, (
            f"gpu.sharing.mig needs MIG-capable GPUs with MIG mode on and MIG devices created, but NVML on the "
            f"host sees none ({', '.join(off) or 'no GPU'}): enable MIG (`nvidia-smi -i <gpu> -mig 1`) and create "
            f"the devices ({', '.join(mig.profiles)}), or rehearse with profiles/sim-mig.yaml"))
    return PreflightCheck("host.mig", True, f"{len(ready)} host GPU(s) with MIG devices"
                          + (f"; MIG off or empty on {', '.join(off)}" if off else ""))
