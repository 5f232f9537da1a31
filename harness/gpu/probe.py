#!/usr/bin/env python3
"""NVML probe: what GPUs does THIS container see? Prints exactly one JSON document (one line).

Self-contained on purpose: it is mounted from a ConfigMap at /probe and run as
`python3 -I -S /probe/probe.py` inside a small Python image, so it needs only Python 3.8+'s standard
library plus the files the ConfigMap ships beside it: `pynvml.py` (the single-module bindings of the
nvidia-ml-py the harness pins, BSD, licence in its header; harness/gpu/bindings.py) and
`pynvml.version`. It loads those bindings from its
own folder by path and never imports an image's `pynvml` (MLServer 1.7.1's image has none, and an
old `pynvml` there would answer differently); the bindings then load the driver's
libnvidia-ml.so.1, which the NVIDIA container runtime injects into GPU containers.

Errors are data: every NVML call that fails is recorded in `errors` as {call, error, message} and
the probe carries on. No driver (`NVMLError_LibraryNotFound` at nvmlInit) is a normal answer, not a
crash. The exit code is 0 whenever the JSON was printed; non-zero only if the script itself broke.
The output schema is documented in tests/fixtures/nvml/README.md and parsed by harness/gpu/result.py.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 1
ENV_KEYS = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES")
CONTAINER_DEVICES_DIR = "/var/run/nvidia-container-devices"
# Bounds that keep every loop finite; far above what one host has (16 GPUs, 7 MIG slots each).
MAX_DEVICES = 64
MAX_PROCESSES = 1024
_MISSING = object()
NOT_SUPPORTED = "NVMLError_NotSupported"
# A container given MIG slices may not query the parent GPU's memory, processes or utilisation.
NO_PERMISSION = "NVMLError_NoPermission"


def _text(value: Any) -> Any:
    """Older pynvml releases return bytes for names, UUIDs and versions; newer ones return str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _error_entry(call: str, exc: BaseException) -> dict[str, Any]:
    try:
        # pynvml's __str__ may call back into the library for unknown codes.
        message = str(exc)
    except Exception:
        message = repr(exc)
    return {"call": call, "error": type(exc).__name__, "message": message}


class _Recorder:
    """Runs one NVML call at a time and turns its failure into an entry of `errors`."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.errors: list[dict[str, Any]] = []

    def call(self, label: str, fn: Callable[[], Any], expected: tuple[str, ...] = ()) -> Any:
        """`fn()`, or _MISSING on failure. Failures named in `expected` are answers, not errors."""
        try:
            return fn()
        except Exception as exc:
            # By class name: the same names exist in every pynvml release and in the simulated one.
            if type(exc).__name__ not in expected:
                self.errors.append(_error_entry(label, exc))
            return _MISSING


def _environment(environ: Any, devices_dir: str) -> dict[str, Any]:
    env: dict[str, Any] = {key: environ.get(key) for key in ENV_KEYS}
    try:
        env["nvidia_container_devices"] = sorted(os.listdir(devices_dir))
    except OSError:
        env["nvidia_container_devices"] = None
    return env


BINDINGS_FILE = "pynvml.py"
BINDINGS_VERSION_FILE = "pynvml.version"


def load_bindings(folder: str) -> tuple[Any, Any, dict[str, Any] | None]:
    """(module, version, None) for the bindings shipped in `folder`, or (None, None, error entry).

    By path, under a private name: an image's own `pynvml` (or none at all) must not change the answer."""
    path = os.path.join(folder, BINDINGS_FILE)
    try:
        spec = importlib.util.spec_from_file_location("harness_probe_pynvml", path)
        if spec is None or spec.loader is None or not os.path.isfile(path):
            raise ImportError(f"{path} is missing: the probe ConfigMap ships it beside probe.py")
        module = importlib.util.module_from_spec(spec)
        # The bindings look themselves up in sys.modules while they build their exception classes.
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        return None, None, {"call": "load " + BINDINGS_FILE, "error": type(exc).__name__, "message": str(exc)}
    version = getattr(module, "__version__", None)
    try:
        with open(os.path.join(folder, BINDINGS_VERSION_FILE), encoding="utf-8") as handle:
            version = handle.read().strip() or version
    except OSError:
        pass
    return module, (None if version is None else str(version)), None


def _cuda_version(value: Any) -> Any:
    if isinstance(value, int) and value > 0:
        return f"{value // 1000}.{(value % 1000) // 10}"
    return None


def _processes(
    rec: _Recorder, handle: Any, where: str, expected: tuple[str, ...] = (NOT_SUPPORTED,)
) -> list[dict[str, Any]] | None:
    """Compute processes with their device memory; pids are HOST pids (the driver ignores PID namespaces)."""
    label = "nvmlDeviceGetComputeRunningProcesses" + where
    procs = rec.call(label, lambda: rec.nvml.nvmlDeviceGetComputeRunningProcesses(handle), expected)
    if procs is _MISSING:
        return None
    listed = []
    for proc in list(procs)[:MAX_PROCESSES]:
        used = getattr(proc, "usedGpuMemory", None)
        listed.append({"pid": int(proc.pid), "used_memory_bytes": None if used is None else int(used)})
    return listed


def _mig_devices(rec: _Recorder, handle: Any, index: int) -> list[dict[str, Any]]:
    nvml = rec.nvml
    count = rec.call(f"nvmlDeviceGetMaxMigDeviceCount({index})", lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(handle))
    if count is _MISSING:
        return []
    not_found = getattr(nvml, "NVMLError_NotFound", None)
    found: list[dict[str, Any]] = []
    for slot in range(min(int(count), MAX_DEVICES)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except Exception as exc:
            # Empty MIG slots (and slots given to other containers) answer NotFound: skip them.
            if not (isinstance(not_found, type) and isinstance(exc, not_found)):
                label = f"nvmlDeviceGetMigDeviceHandleByIndex({index}, {slot})"
                rec.errors.append(_error_entry(label, exc))
            continue
        where = f"({index}, mig {slot})"
        uuid = rec.call("nvmlDeviceGetUUID" + where, functools.partial(nvml.nvmlDeviceGetUUID, mig))
        name = rec.call("nvmlDeviceGetName" + where, functools.partial(nvml.nvmlDeviceGetName, mig))
        memory = rec.call("nvmlDeviceGetMemoryInfo" + where, functools.partial(nvml.nvmlDeviceGetMemoryInfo, mig))
        found.append(
            {
                "slot": slot,
                "uuid": None if uuid is _MISSING else _text(uuid),
                "name": None if name is _MISSING else _text(name),
                "memory_total_bytes": None if memory is _MISSING else int(memory.total),
                "memory_used_bytes": None if memory is _MISSING else int(memory.used),
                # With MIG on, the processes of a MIG device are listed on its own handle.
                "compute_processes": _processes(rec, mig, where),
            }
        )
    return found


def _device(rec: _Recorder, index: int) -> dict[str, Any]:
    nvml = rec.nvml
    entry: dict[str, Any] = {
        "index": index,
        "name": None,
        "uuid": None,
        "memory_total_bytes": None,
        "memory_used_bytes": None,
        "memory_free_bytes": None,
        "mig_mode": None,
        "mig_devices": [],
        "compute_processes": None,
        "utilization": None,
    }
    handle = rec.call(f"nvmlDeviceGetHandleByIndex({index})", lambda: nvml.nvmlDeviceGetHandleByIndex(index))
    if handle is _MISSING:
        return entry
    where = f"({index})"
    name = rec.call("nvmlDeviceGetName" + where, lambda: nvml.nvmlDeviceGetName(handle))
    if name is not _MISSING:
        entry["name"] = _text(name)
    uuid = rec.call("nvmlDeviceGetUUID" + where, lambda: nvml.nvmlDeviceGetUUID(handle))
    if uuid is not _MISSING:
        entry["uuid"] = _text(uuid)
    mode = rec.call("nvmlDeviceGetMigMode" + where, lambda: nvml.nvmlDeviceGetMigMode(handle), (NOT_SUPPORTED,))
    mig_on = False
    if mode is not _MISSING:
        current, pending = int(mode[0]), int(mode[1])
        entry["mig_mode"] = {"current": current, "pending": pending}
        mig_on = current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
    parent_expected = (NO_PERMISSION,) if mig_on else ()
    memory = rec.call("nvmlDeviceGetMemoryInfo" + where, lambda: nvml.nvmlDeviceGetMemoryInfo(handle), parent_expected)
    if memory is not _MISSING:
        entry["memory_total_bytes"] = int(memory.total)
        entry["memory_used_bytes"] = int(memory.used)
        entry["memory_free_bytes"] = int(memory.free)
    if mig_on:
        entry["mig_devices"] = _mig_devices(rec, handle, index)
    entry["compute_processes"] = _processes(rec, handle, where, (NOT_SUPPORTED, *parent_expected))
    util = rec.call(
        "nvmlDeviceGetUtilizationRates" + where,
        lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        (NOT_SUPPORTED, *parent_expected),
    )
    if util is not _MISSING:
        entry["utilization"] = {"gpu_percent": int(util.gpu), "memory_percent": int(util.memory)}
    return entry


def collect(
    nvml: Any,
    environ: Any = None,
    devices_dir: str = CONTAINER_DEVICES_DIR,
    bindings_version: Any = None,
    load_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the probe reports, as a JSON-ready dict. `nvml` is the pynvml module (None if it could
    not be loaded; `load_error` then says why)."""
    environ = os.environ if environ is None else environ
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "hostname": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "pynvml_version": None,
        "env": _environment(environ, devices_dir),
        "nvml_available": False,
        "driver_version": None,
        "nvml_version": None,
        "cuda_driver_version": None,
        "device_count": None,
        "devices": [],
        "errors": [],
    }
    if nvml is None:
        doc["errors"].append(
            load_error or {"call": "load " + BINDINGS_FILE, "error": "ImportError", "message": "no NVML bindings"}
        )
        return doc
    rec = _Recorder(nvml)
    doc["errors"] = rec.errors
    doc["pynvml_version"] = bindings_version if bindings_version is not None else getattr(nvml, "__version__", None)
    if rec.call("nvmlInit", nvml.nvmlInit) is _MISSING:
        return doc
    doc["nvml_available"] = True
    try:
        for key, fn_name in (
            ("driver_version", "nvmlSystemGetDriverVersion"),
            ("nvml_version", "nvmlSystemGetNVMLVersion"),
            ("cuda_driver_version", "nvmlSystemGetCudaDriverVersion"),
        ):
            fn = getattr(nvml, fn_name, None)
            value = rec.call(fn_name, fn) if fn is not None else _MISSING
            if fn is None:
                rec.errors.append({"call": fn_name, "error": "AttributeError", "message": "not in this pynvml"})
            if value is not _MISSING:
                doc[key] = _cuda_version(value) if key == "cuda_driver_version" else _text(value)
        count = rec.call("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount)
        if count is not _MISSING:
            doc["device_count"] = int(count)
            doc["devices"] = [_device(rec, i) for i in range(min(int(count), MAX_DEVICES))]
    finally:
        rec.call("nvmlShutdown", nvml.nvmlShutdown)
    return doc


def _hold_seconds(argv: list[str]) -> float:
    """`--hold-seconds N`: keep running (and so keep the GPUs allocated) N seconds after printing,
    so that probe pods started together on one node overlap in time and cannot share a GPU."""
    if "--hold-seconds" in argv:
        index = argv.index("--hold-seconds")
        try:
            return max(0.0, min(float(argv[index + 1]), 600.0))
        except (IndexError, ValueError):
            return 0.0
    return 0.0


def main(argv: list[str] | None = None) -> int:
    hold = _hold_seconds(list(sys.argv[1:] if argv is None else argv))
    try:
        # Beside the script, as the ConfigMap mounts them (harness.gpu.write_probe_files lays them out
        # the same way on a host); never an image's own pynvml.
        nvml, version, load_error = load_bindings(os.path.dirname(os.path.abspath(__file__)))
        doc = collect(nvml, bindings_version=version, load_error=load_error)
    except Exception as exc:
        # A bug in the probe itself is still reported as data, so the pod log says what happened.
        doc = {
            "schema_version": SCHEMA_VERSION,
            "nvml_available": False,
            "devices": [],
            "errors": [_error_entry("probe", exc)],
        }
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()
    if hold:
        import threading

        # Holding the allocation is the point here, not waiting for anything: a bounded pause.
        threading.Event().wait(hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
