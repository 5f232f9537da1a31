"""A simulated NVML: the subset of `pynvml` (nvidia-ml-py) that harness/gpu/probe.py calls.

The simulated cluster runs the REAL probe script against this module by putting this directory
first on the import path: `PYTHONPATH=<dir of this file> python3 probe.py`. Everything the module
reports comes from environment variables, read at `nvmlInit()` (not at import), so one process can
be re-initialised with different settings.

Contract with the sim kubelet (what it must set in a probe pod's environment)
------------------------------------------------------------------------------
HARNESS_SIM_NODE_GPUS
    JSON list of the NODE's GPUs, in host order:
    `[{"uuid": "GPU-…", "name": "NVIDIA H200", "memory_total_bytes": 150754820096, "index": 0}, …]`.
    `index` is optional (default: position in the list). Optional per GPU: `"mig_capable": true`
    (GetMigMode reports disabled instead of raising NotSupported) and `"mig_devices": [{"uuid":
    "MIG-…", "name": "NVIDIA H200 MIG 1g.18gb", "memory_total_bytes": …}]` (MIG mode enabled; as in
    an unprivileged container, the parent GPU's memory, processes and utilisation then raise
    `NVMLError_NoPermission` and are read per MIG device instead).
    ABSENT means the node has no NVIDIA driver: `nvmlInit` raises `NVMLError_LibraryNotFound`.
    Set it on every pod of a GPU node (the driver is a node property), never on CPU nodes.
NVIDIA_VISIBLE_DEVICES
    What the NVIDIA container runtime would inject, exactly like the real one:
      unset, empty or `void`  -> no driver inside the container (`NVMLError_LibraryNotFound`);
      `none`                  -> driver present, zero devices;
      `all`                   -> every GPU of the node;
      `GPU-a,GPU-b` / `0,1`   -> those GPUs (UUIDs or host indices, mixable); a `MIG-…` UUID exposes
                                 its parent GPU with only that MIG device.
    An id the node does not have makes the real runtime refuse to start the container; here
    `nvmlInit` raises `NVMLError_Unknown` whose message names the unknown id.
    The kubelet sets it to the pod's allocated UUIDs (comma-joined) for pods that request
    `nvidia.com/gpu`, and leaves the image's value (often unset; `all` for CUDA base images) otherwise.
HARNESS_SIM_GPU_PROCESSES (optional)
    JSON `{"GPU-…": [{"pid": 4242, "used_memory_bytes": 1073741824}]}`: compute processes per GPU
    (or MIG) UUID. A device's used memory is the sum over its processes. Processes on GPUs the
    container cannot see are not reported.
HARNESS_SIM_DRIVER_VERSION (optional)
    Driver version string, default `550.54.15`; the CUDA driver version follows it (12040).
HARNESS_SIM_NVML_FAIL (optional, fault injection)
    JSON list `[{"call": "nvmlDeviceGetName", "index": 1, "error": "GpuIsLost"}]`: that call raises
    `NVMLError_<error>`; `index` (optional) limits it to one device (visible index).

Uninitialised calls raise `NVMLError_Uninitialized`, as the real library does. Exception classes
carry the real names and codes and `NVMLError(code)` returns the matching subclass.
"""

from __future__ import annotations

import json
import os
from typing import Any

# The probe reports this as `pynvml_version`, so a simulated document never passes for a real one.
__version__ = "simulated"

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Base NVML error; `NVMLError(code)` builds the subclass for `code`, like pynvml does."""

    _classes: dict[int, type[NVMLError]] = {}  # noqa: RUF012 - filled once below
    value: int
    detail: str | None

    def __new__(cls, value: int, detail: str | None = None) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._classes.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        obj.detail = detail
        return obj

    def __init__(self, *args: Any) -> None:
        # Subclasses are called with (detail) and the base with (code, detail): accept both.
        super().__init__(*args)

    def __str__(self) -> str:
        base = _MESSAGES.get(self.value, f"NVML Error with code {self.value}")
        # The simulation adds why (e.g. the unknown device id); the real library has only the code.
        return f"{base}: {self.detail}" if self.detail else base


def _subclass(name: str, code: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], detail: str | None = None) -> NVMLError:
        return NVMLError.__new__(cls, code, detail)

    klass = type(name, (NVMLError,), {"__new__": new})
    NVMLError._classes[code] = klass
    return klass


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_AlreadyInitialized = _subclass("NVMLError_AlreadyInitialized", NVML_ERROR_ALREADY_INITIALIZED)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_Timeout = _subclass("NVMLError_Timeout", NVML_ERROR_TIMEOUT)
NVMLError_LibraryNotFound = _subclass("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _subclass("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _subclass("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


class _Struct:
    """Attribute bag shaped like pynvml's ctypes structs (c_nvmlMemory_t, process info, ...)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _Device:
    """A handle, as opaque to callers as pynvml's `c_nvmlDevice_t`."""

    def __init__(self, spec: dict[str, Any], host_index: int, mig: list[dict[str, Any]], is_mig: bool) -> None:
        self.spec = spec
        self.host_index = host_index
        self.mig = mig  # MIG devices visible in this container (parent GPUs only)
        self.is_mig = is_mig


class _State:
    def __init__(self) -> None:
        self.refcount = 0
        self.devices: list[_Device] = []
        self.processes: dict[str, list[dict[str, Any]]] = {}
        self.driver = "550.54.15"
        self.faults: list[dict[str, Any]] = []


_state = _State()


def _env_json(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise NVMLError(NVML_ERROR_UNKNOWN, f"simulated NVML: {name} is not valid JSON ({exc})") from None


def _visible(node_gpus: list[dict[str, Any]], selector: str) -> list[_Device]:
    by_index: dict[str, tuple[int, dict[str, Any]]] = {}
    by_uuid: dict[str, tuple[int, dict[str, Any]]] = {}
    mig_parent: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {}
    for pos, gpu in enumerate(node_gpus):
        host_index = int(gpu.get("index", pos))
        by_index[str(host_index)] = (host_index, gpu)
        by_uuid[str(gpu["uuid"])] = (host_index, gpu)
        for mig in gpu.get("mig_devices") or []:
            mig_parent[str(mig["uuid"])] = (host_index, gpu, mig)
    if selector == "all":
        chosen = {i: (gpu, list(gpu.get("mig_devices") or [])) for i, gpu in by_index.values()}
    else:
        chosen = {}
        for token in (t.strip() for t in selector.split(",")):
            if not token:
                continue
            if token in by_uuid or token in by_index:
                i, gpu = by_uuid.get(token) or by_index[token]
                chosen[i] = (gpu, list(gpu.get("mig_devices") or []))
            elif token in mig_parent:
                i, gpu, mig = mig_parent[token]
                _, migs = chosen.setdefault(i, (gpu, []))
                migs.append(mig)
            else:
                raise NVMLError(
                    NVML_ERROR_UNKNOWN,
                    f"simulated container runtime: unknown device {token!r} in NVIDIA_VISIBLE_DEVICES",
                )
    return [_Device(gpu, i, migs, False) for i, (gpu, migs) in sorted(chosen.items())]


def _check(call: str, device: _Device | None = None) -> None:
    if _state.refcount <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    for fault in _state.faults:
        if fault.get("call") != call:
            continue
        if "index" in fault and (device is None or device.is_mig or _index_of(device) != fault["index"]):
            continue
        code = globals().get("NVMLError_" + str(fault.get("error", "Unknown")), NVMLError_Unknown)
        raise code()


def _index_of(device: _Device) -> int:
    for i, candidate in enumerate(_state.devices):
        if candidate is device:
            return i
    return -1


def nvmlInit() -> None:
    node_gpus = _env_json("HARNESS_SIM_NODE_GPUS", None)
    if node_gpus is None:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    selector = os.environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if selector in ("", "void"):
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if not isinstance(node_gpus, list):
        raise NVMLError(NVML_ERROR_UNKNOWN, "simulated NVML: HARNESS_SIM_NODE_GPUS must be a JSON list")
    devices = [] if selector == "none" else _visible(node_gpus, selector)
    processes = _env_json("HARNESS_SIM_GPU_PROCESSES", {})
    faults = _env_json("HARNESS_SIM_NVML_FAIL", [])
    _state.devices = devices
    _state.processes = processes if isinstance(processes, dict) else {}
    _state.faults = faults if isinstance(faults, list) else []
    _state.driver = os.environ.get("HARNESS_SIM_DRIVER_VERSION", "550.54.15")
    _state.refcount += 1


def nvmlShutdown() -> None:
    if _state.refcount <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _state.refcount -= 1


def nvmlSystemGetDriverVersion() -> str:
    _check("nvmlSystemGetDriverVersion")
    return _state.driver


def nvmlSystemGetNVMLVersion() -> str:
    _check("nvmlSystemGetNVMLVersion")
    return "12." + _state.driver


def nvmlSystemGetCudaDriverVersion() -> int:
    _check("nvmlSystemGetCudaDriverVersion")
    major = _state.driver.split(".")[0]
    # Driver branch -> CUDA version it ships with; the sim only needs a plausible, stable value.
    return {"535": 12020, "550": 12040, "560": 12060, "570": 12080}.get(major, 12040)


def nvmlDeviceGetCount() -> int:
    _check("nvmlDeviceGetCount")
    return len(_state.devices)


def nvmlDeviceGetHandleByIndex(index: int) -> _Device:
    _check("nvmlDeviceGetHandleByIndex")
    if not 0 <= index < len(_state.devices):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _state.devices[index]


def nvmlDeviceGetIndex(handle: _Device) -> int:
    _check("nvmlDeviceGetIndex", handle)
    return _index_of(handle)


def nvmlDeviceGetName(handle: _Device) -> str:
    _check("nvmlDeviceGetName", handle)
    return str(handle.spec.get("name", "NVIDIA Simulated GPU"))


def nvmlDeviceGetUUID(handle: _Device) -> str:
    _check("nvmlDeviceGetUUID", handle)
    return str(handle.spec["uuid"])


def _used(uuids: list[str]) -> int:
    return sum(int(p.get("used_memory_bytes") or 0) for u in uuids for p in _state.processes.get(u, []))


def _own_uuids(handle: _Device) -> list[str]:
    return [str(handle.spec["uuid"])] + [str(m["uuid"]) for m in handle.mig]


def _deny_mig_parent(handle: _Device) -> None:
    # An unprivileged container may not query a MIG-enabled parent GPU (no NVIDIA_MIG_MONITOR_DEVICES).
    if not handle.is_mig and handle.spec.get("mig_devices"):
        raise NVMLError(NVML_ERROR_NO_PERMISSION)


def nvmlDeviceGetMemoryInfo(handle: _Device, version: Any = None) -> _Struct:
    _check("nvmlDeviceGetMemoryInfo", handle)
    _deny_mig_parent(handle)
    total = int(handle.spec.get("memory_total_bytes", 0))
    used = min(total, _used(_own_uuids(handle)))
    return _Struct(total=total, used=used, free=total - used)


def nvmlDeviceGetMigMode(handle: _Device) -> list[int]:
    _check("nvmlDeviceGetMigMode", handle)
    if handle.spec.get("mig_devices"):
        return [NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE]
    if handle.spec.get("mig_capable"):
        return [NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_DISABLE]
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED)


def nvmlDeviceGetMaxMigDeviceCount(handle: _Device) -> int:
    _check("nvmlDeviceGetMaxMigDeviceCount", handle)
    if not (handle.spec.get("mig_devices") or handle.spec.get("mig_capable")):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(handle: _Device, index: int) -> _Device:
    _check("nvmlDeviceGetMigDeviceHandleByIndex", handle)
    # Empty slots (and MIG devices this container was not given) are NotFound, as on real hardware.
    if not 0 <= index < len(handle.mig):
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _Device(handle.mig[index], handle.host_index, [], True)


def nvmlDeviceGetComputeRunningProcesses(handle: _Device) -> list[_Struct]:
    _check("nvmlDeviceGetComputeRunningProcesses", handle)
    _deny_mig_parent(handle)
    procs = []
    for uuid in _own_uuids(handle):
        for p in _state.processes.get(uuid, []):
            procs.append(_Struct(pid=int(p.get("pid", 0)), usedGpuMemory=p.get("used_memory_bytes")))
    return procs


def nvmlDeviceGetUtilizationRates(handle: _Device) -> _Struct:
    _check("nvmlDeviceGetUtilizationRates", handle)
    _deny_mig_parent(handle)
    if handle.is_mig:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    busy = bool(_used(_own_uuids(handle)))
    return _Struct(gpu=35 if busy else 0, memory=10 if busy else 0)
