"""The simulated NVIDIA driver: a tiny C libnvidia-ml.so.1 the REAL nvidia-ml-py bindings load.

The sim used to put a Python stand-in for `pynvml` on the probe's path; that hid the fact that the
probe's image had no bindings at all. Now the probe runs exactly as in a pod (`python3 -I -S
probe.py`, only its ConfigMap files beside it) and the simulation starts below the bindings, where a
real node's driver would be:

- `build_library(cache_dir)` compiles simdriver/fake_libnvidia_ml.c with gcc once per source version
  (cached under `cache_dir`); without gcc it raises `SimDriverError` naming what is missing.
- `prepare_driver_dir(dest, library, node_gpus, ...)` lays out what the NVIDIA container runtime would
  have injected into one container: the library plus `sim-nvml.tsv`, the node's GPU inventory it reads.
  The container then gets `LD_LIBRARY_PATH=dest`, which stands in for the runtime mounting the
  library into the container's library path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

SOURCE = Path(__file__).resolve().parent / "simdriver" / "fake_libnvidia_ml.c"
LIBRARY_NAME = "libnvidia-ml.so.1"
INVENTORY_NAME = "sim-nvml.tsv"
DEFAULT_DRIVER_VERSION = "550.54.15"
BUILD_TIMEOUT_S = 120.0

# nvmlReturn_t codes by the suffix of pynvml's exception class (NVMLError_<name>), for fault injection.
ERROR_CODES: dict[str, int] = {
    "Uninitialized": 1, "InvalidArgument": 2, "NotSupported": 3, "NoPermission": 4, "AlreadyInitialized": 5,
    "NotFound": 6, "InsufficientSize": 7, "DriverNotLoaded": 9, "Timeout": 10, "LibraryNotFound": 12,
    "FunctionNotFound": 13, "GpuIsLost": 15, "Unknown": 999,
}


class SimDriverError(RuntimeError):
    """The simulated driver cannot be built: the sim refuses GPU probes rather than faking them in Python."""


def build_library(cache_dir: str | Path, compiler: str = "gcc") -> Path:
    """The compiled library, built once per source version under `cache_dir`."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = Path(cache_dir) / f"simnvml-{digest}" / LIBRARY_NAME
    if target.is_file():
        return target
    cc = shutil.which(compiler)
    if cc is None:
        raise SimDriverError(
            f"the simulated NVIDIA driver needs a C compiler: {compiler!r} is not on PATH "
            "(install gcc; the sim will not stand in for libnvidia-ml.so.1 without it)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{LIBRARY_NAME}.{os.getpid()}.tmp")
    try:
        proc = subprocess.run(
            [cc, "-shared", "-fPIC", "-O1", "-o", str(partial), str(SOURCE), "-ldl"],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SimDriverError(f"building the simulated NVIDIA driver with {cc} failed: {exc}") from None
    if proc.returncode != 0:
        raise SimDriverError(
            f"building the simulated NVIDIA driver with {cc} failed (exit {proc.returncode}): "
            + (proc.stderr.strip().splitlines() or ["no output"])[-1]
        )
    os.replace(partial, target)  # atomic: concurrent builders never see half a library
    return target


def _cell(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in "\t\r\n"):
        raise ValueError(f"simulated NVML inventory: {text!r} contains a tab or newline")
    return text


def inventory_text(
    node_gpus: Sequence[Mapping[str, Any]],
    processes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    driver_version: str | None = None,
    faults: Iterable[Mapping[str, Any]] = (),
) -> str:
    """`sim-nvml.tsv` (format in the C source). `node_gpus`: [{uuid, name, memory_total_bytes, index?,
    mig_capable?, mig_devices?: [{uuid, name, memory_total_bytes}]}]; `processes`: {uuid: [{pid,
    used_memory_bytes}]}; `faults`: [{call, index?, error}] with `error` a pynvml class suffix."""
    lines = [f"driver\t{_cell(driver_version or DEFAULT_DRIVER_VERSION)}"]
    migs = []
    for pos, gpu in enumerate(node_gpus):
        index = int(gpu.get("index", pos))
        lines.append("\t".join(["gpu", str(index), _cell(gpu["uuid"]), _cell(gpu.get("name", "NVIDIA Simulated GPU")),
                                str(int(gpu.get("memory_total_bytes", 0))), "1" if gpu.get("mig_capable") else "0"]))
        for mig in gpu.get("mig_devices") or []:
            migs.append("\t".join(["mig", str(index), _cell(mig["uuid"]), _cell(mig.get("name", "MIG")),
                                   str(int(mig.get("memory_total_bytes", 0)))]))
    lines += migs
    for uuid, listed in (processes or {}).items():
        for proc in listed:
            lines.append(f"proc\t{_cell(uuid)}\t{int(proc.get('pid', 0))}\t{int(proc.get('used_memory_bytes') or 0)}")
    for fault in faults:
        code = ERROR_CODES.get(str(fault.get("error", "Unknown")), ERROR_CODES["Unknown"])
        lines.append(f"fault\t{_cell(fault['call'])}\t{int(fault.get('index', -1))}\t{code}")
    return "\n".join(lines) + "\n"


def prepare_driver_dir(
    dest: str | Path,
    library: str | Path,
    node_gpus: Sequence[Mapping[str, Any]],
    processes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    driver_version: str | None = None,
    faults: Iterable[Mapping[str, Any]] = (),
) -> Path:
    """One container's injected driver: its own copy of the library (so every container has its own
    NVML state) and the node inventory beside it. Returns the folder for LD_LIBRARY_PATH."""
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    # Never rewrite a library in place: a process that loaded it has it mapped, and overwriting that
    # inode under it crashes the process. A new file renamed over the old one leaves the mapping intact.
    partial = folder / f".{LIBRARY_NAME}.{os.getpid()}.tmp"
    shutil.copyfile(library, partial)
    os.replace(partial, folder / LIBRARY_NAME)
    (folder / INVENTORY_NAME).write_text(
        inventory_text(node_gpus, processes, driver_version, faults), encoding="utf-8"
    )
    return folder


def runtime_injects_driver(visible_devices: str | None) -> bool:
    """Whether the NVIDIA container runtime mounts the driver into a container: not when
    NVIDIA_VISIBLE_DEVICES is unset, empty or `void` (`none` still gets the driver, with no device)."""
    return visible_devices is not None and visible_devices.strip() not in ("", "void")


def load_simulated_bindings(driver_dir: str | Path | None) -> ModuleType:
    """A fresh copy of the installed nvidia-ml-py bindings (the ones the probe ships) whose library is
    the simulated driver in `driver_dir` (None: no driver, nvmlInit raises NVMLError_LibraryNotFound).
    For in-process tests of code that takes a `pynvml` module; never the machine's own libnvidia-ml.so.1."""
    from harness.gpu.bindings import installed_path
    from harness.gpu.probe import load_bindings

    loaded, _, error = load_bindings(str(installed_path().parent))
    if not isinstance(loaded, ModuleType):
        raise SimDriverError(f"cannot load the installed NVML bindings: {error}")
    module = loaded

    def no_library(*_: Any, **__: Any) -> Any:
        raise OSError(f"{LIBRARY_NAME}: cannot open shared object file (simulated node without a driver)")

    if driver_dir is None:
        setattr(module, "CDLL", no_library)  # noqa: B010 - a loaded module's globals, not typed attributes
    else:
        # Each driver folder holds its own copy of the library, so each module gets its own NVML state.
        setattr(module, "nvmlLib", ctypes.CDLL(str(Path(driver_dir) / LIBRARY_NAME)))  # noqa: B010
    return module
