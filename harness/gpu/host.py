"""Host NVML inventory: the GPUs of the machine the harness runs on (kind preflight, host-vs-cluster check).

Runs the same collection code as the in-cluster probe, in-process, against the real `pynvml`, so
host and pod documents have one shape and one parser.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.gpu import bindings, probe
from harness.gpu.result import ProbeResult, probe_result_from_dict


def _import_nvml() -> ModuleType | None:
    """The installed nvidia-ml-py (the package whose pynvml.py the probe ships), so host and pods
    read NVML with the same bindings."""
    try:
        return importlib.import_module("pynvml")
    except Exception:
        # A broken install is as unusable as a missing one; the caller says what to reinstall.
        return None


def host_inventory_with_reason(nvml: ModuleType | None = None) -> tuple[ProbeResult | None, str]:
    """(inventory, reason). The inventory is None when NVML is unusable here; the reason says why.

    `nvml` replaces the imported `pynvml` (tests pass the simulated one).
    """
    module = nvml if nvml is not None else _import_nvml()
    if module is None:
        return None, f"the NVML bindings (module pynvml) cannot be imported: reinstall them with {bindings.REINSTALL}"
    result = probe_result_from_dict(probe.collect(module, devices_dir="/nonexistent"), "host")
    if not result.nvml_available:
        hint = " (no NVIDIA driver on this host?)" if result.no_driver else ""
        return None, f"host NVML unavailable{hint}: {result.errors_text()}"
    if result.errors:
        return result, f"host NVML sees {len(result.devices)} GPU(s), with errors: {result.errors_text()}"
    return result, f"host NVML sees {len(result.devices)} GPU(s): {', '.join(sorted(result.visible_uuids)) or 'none'}"


def host_inventory(nvml: ModuleType | None = None) -> ProbeResult | None:
    """The host's GPUs as a probe result, or None without a usable driver (see `host_inventory_with_reason`)."""
    return host_inventory_with_reason(nvml)[0]
