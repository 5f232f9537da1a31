"""GPU visibility through NVML: the probe script, its parsed result, pure verdicts, host inventory.

Paths and helpers for the code that ships or runs the probe:
- `PROBE_PATH`: the script; its text goes into the probe ConfigMap (`probe_script_text()`).
- `FAKE_NVML_DIR`: put it first on PYTHONPATH to run the real probe against the simulated NVML;
  `sim_probe_env(...)` builds the environment the simulated NVML reads (contract in
  harness/gpu/fake_nvml/pynvml.py) and `sim_probe_command()` the argument list.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PROBE_PATH = Path(__file__).resolve().parent / "probe.py"
FAKE_NVML_DIR = Path(__file__).resolve().parent / "fake_nvml"


def probe_script_text() -> str:
    return PROBE_PATH.read_text(encoding="utf-8")


def sim_probe_command(python: str | None = None) -> list[str]:
    return [python or sys.executable, str(PROBE_PATH)]


def sim_probe_env(
    node_gpus: Sequence[Mapping[str, Any]] | None,
    visible_devices: str | Iterable[str] | None,
    processes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for one simulated probe run.

    `node_gpus`: the node's GPUs (`uuid`, `name`, `memory_total_bytes`, optional `index`), None for a
    node without a driver. `visible_devices`: NVIDIA_VISIBLE_DEVICES as the runtime would see it (a
    string such as "all"/"none", or the allocated UUIDs), None to leave it unset. `processes`:
    {uuid: [{pid, used_memory_bytes}]}. `base`: other variables to keep (PATH, ...); any inherited
    HARNESS_SIM_* and NVIDIA_VISIBLE_DEVICES are replaced.
    """
    env = {
        k: v
        for k, v in (base or {}).items()
        if not k.startswith("HARNESS_SIM_") and k not in ("NVIDIA_VISIBLE_DEVICES", "PYTHONPATH")
    }
    env["PYTHONPATH"] = str(FAKE_NVML_DIR)
    if node_gpus is not None:
        env["HARNESS_SIM_NODE_GPUS"] = json.dumps([dict(g) for g in node_gpus])
    if visible_devices is not None:
        env["NVIDIA_VISIBLE_DEVICES"] = (
            visible_devices if isinstance(visible_devices, str) else ",".join(visible_devices)
        )
    if processes:
        env["HARNESS_SIM_GPU_PROCESSES"] = json.dumps({k: [dict(p) for p in v] for k, v in processes.items()})
    return env
