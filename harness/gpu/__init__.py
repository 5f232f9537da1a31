"""GPU visibility through NVML: the probe script, its parsed result, pure verdicts, host inventory.

The probe ships as a ConfigMap of three files (`probe_files`): probe.py, the single-module bindings
`pynvml.py` of the installed nvidia-ml-py (BSD, its licence in the file's header; the pinned release,
checked by hash: harness/gpu/bindings.py) and their version. A pod runs it as
`python3 -I -S /probe/probe.py`: only the standard library and these files, whatever the image holds.

The simulated cluster runs the same files the same way (`sim_probe_command`) and simulates one layer
lower, the driver library (harness/gpu/simnvml.py): `sim_probe_env` gives a container the simulated
libnvidia-ml.so.1 exactly when the NVIDIA container runtime would inject the real one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.gpu import bindings
from harness.gpu.probe import BINDINGS_FILE, BINDINGS_VERSION_FILE
from harness.gpu.simnvml import prepare_driver_dir, runtime_injects_driver

PROBE_PATH = Path(__file__).resolve().parent / "probe.py"
# How a pod runs the probe: isolated (-I: no PYTHON* variables, no user site, no script dir on the
# path) and without site-packages (-S), so nothing of the image's Python environment can answer.
PROBE_PYTHON_FLAGS = ("-I", "-S")


def probe_script_text() -> str:
    return PROBE_PATH.read_text(encoding="utf-8")


def probe_files() -> dict[str, str]:
    """The probe ConfigMap's data: the probe loads the bindings from its own folder by these names.
    UsageError (one line saying what to reinstall) when the installed bindings are not the pinned ones."""
    return {
        "probe.py": probe_script_text(),
        BINDINGS_FILE: bindings.verified_text(),
        BINDINGS_VERSION_FILE: bindings.version_line() + "\n",
    }


def write_probe_files(dest: str | Path) -> Path:
    """The ConfigMap's files materialised in `dest` (as the kubelet mounts them); returns probe.py's path."""
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for key, text in probe_files().items():
        (folder / key).write_text(text, encoding="utf-8")
    return folder / "probe.py"


def sim_probe_command(probe: str | Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, *PROBE_PYTHON_FLAGS, str(probe)]


def sim_probe_env(
    driver_dir: str | Path | None,
    visible_devices: str | Iterable[str] | None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for one simulated probe container.

    `driver_dir`: the node's simulated driver (`simnvml.prepare_driver_dir`), None for a node without
    one. `visible_devices`: NVIDIA_VISIBLE_DEVICES as the runtime sees it ("all", "none", the allocated
    UUIDs...), None to leave it unset. `base`: other variables to keep (PATH...); any inherited
    NVIDIA_VISIBLE_DEVICES, LD_LIBRARY_PATH and PYTHON* are dropped.
    """
    env = {
        k: v
        for k, v in (base or {}).items()
        if k not in ("NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH") and not k.startswith(("PYTHON", "HARNESS_SIM_"))
    }
    visible = None
    if visible_devices is not None:
        visible = visible_devices if isinstance(visible_devices, str) else ",".join(visible_devices)
        env["NVIDIA_VISIBLE_DEVICES"] = visible
    if driver_dir is not None and runtime_injects_driver(visible):
        env["LD_LIBRARY_PATH"] = str(driver_dir)
    return env


def run_probe_simulated(
    workdir: str | Path,
    library: str | Path,
    node_gpus: Sequence[Mapping[str, Any]] | None,
    visible_devices: str | Iterable[str] | None,
    processes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    faults: Iterable[Mapping[str, Any]] = (),
    driver_version: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """The probe run once the way the sim kubelet runs it (for tests and `harness` self-checks)."""
    work = Path(workdir)
    probe = write_probe_files(work / "probe")
    driver = None
    if node_gpus is not None:
        driver = prepare_driver_dir(work / "driver", library, node_gpus, processes, driver_version, faults)
    env = sim_probe_env(driver, visible_devices, base={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **(extra_env or {})})
    return subprocess.run(
        sim_probe_command(probe), env=env, cwd=str(work), capture_output=True, text=True, timeout=timeout_s,
        check=False,
    )
