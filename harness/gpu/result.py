"""Typed view of the NVML probe's JSON (harness/gpu/probe.py, schema documented in tests/fixtures/nvml/README.md).

`parse_probe_output(text, source)` takes a whole pod log: runtimes and entrypoints may print lines
around the probe's document, so the LAST line that parses as a JSON object wins. Anything that is
not a probe document raises `ProbeOutputError`, whose one-line message names the source (pod).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import CheckFailed

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
# Values of NVIDIA_VISIBLE_DEVICES that name no device (the runtime's special words).
_SPECIAL_SELECTORS = frozenset({"", "all", "none", "void"})


class ProbeOutputError(CheckFailed):
    """The probe's output is missing or not a probe document; the message names the source."""


@dataclass(frozen=True)
class ProbeError:
    call: str
    error: str  # exception class name, e.g. NVMLError_LibraryNotFound
    message: str


@dataclass(frozen=True)
class ProbeProcess:
    pid: int
    used_memory_bytes: int | None  # None where the driver cannot say (e.g. WDDM)


@dataclass(frozen=True)
class MigDevice:
    slot: int
    uuid: str | None
    name: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    compute_processes: tuple[ProbeProcess, ...] | None  # None: not listed (call failed or unsupported)


@dataclass(frozen=True)
class ProbeDevice:
    index: int
    name: str | None
    uuid: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    memory_free_bytes: int | None
    mig_current: int | None  # None: MIG not supported on this GPU
    mig_pending: int | None
    mig_devices: tuple[MigDevice, ...]
    compute_processes: tuple[ProbeProcess, ...] | None  # None: the call failed
    utilization_gpu_percent: int | None
    utilization_memory_percent: int | None

    @property
    def mig_enabled(self) -> bool:
        return self.mig_current == 1

    @property
    def visible_uuids(self) -> tuple[str, ...]:
        """What this container was given: the MIG devices when MIG is on, else the GPU itself."""
        if self.mig_enabled and self.mig_devices:
            return tuple(m.uuid for m in self.mig_devices if m.uuid)
        return (self.uuid,) if self.uuid else ()


@dataclass(frozen=True)
class ProbeEnv:
    nvidia_visible_devices: str | None
    cuda_visible_devices: str | None
    nvidia_driver_capabilities: str | None
    container_device_files: tuple[str, ...] | None  # /var/run/nvidia-container-devices/*, None if absent


@dataclass(frozen=True)
class ProbeResult:
    source: str  # where the document came from: pod name, fixture path, "host"
    schema_version: int
    hostname: str | None
    time: str | None
    python: str | None
    pynvml_version: str | None  # the bindings that answered, e.g. "nvidia-ml-py 13.615.71" (shipped with the probe)
    env: ProbeEnv
    nvml_available: bool
    driver_version: str | None
    nvml_version: str | None
    cuda_driver_version: str | None
    device_count: int | None
    devices: tuple[ProbeDevice, ...]
    errors: tuple[ProbeError, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def visible_uuids(self) -> frozenset[str]:
        """Every GPU/MIG UUID this container can use (compare these, never indices)."""
        return frozenset(u for d in self.devices for u in d.visible_uuids)

    @property
    def gpu_uuids(self) -> frozenset[str]:
        """Physical GPU UUIDs (parents of MIG devices included)."""
        return frozenset(d.uuid for d in self.devices if d.uuid)

    @property
    def visible_count(self) -> int:
        return len(self.visible_uuids) if self.nvml_available else 0

    @property
    def no_driver(self) -> bool:
        return not self.nvml_available and any(e.error == "NVMLError_LibraryNotFound" for e in self.errors)

    def errors_text(self) -> str:
        return "; ".join(f"{e.call}: {e.error}: {e.message}" for e in self.errors) or "none"


def allocated_uuids_from_env(env: ProbeEnv) -> frozenset[str] | None:
    """The allocation, where the device plugin's strategy exposes it as UUIDs; None where it does not.

    `envvar` strategy: NVIDIA_VISIBLE_DEVICES is a UUID list. `volume-mounts`: one file per device
    under /var/run/nvidia-container-devices/. Indices, `all`, `none` or CDI (unset) say nothing
    about WHICH GPUs were allocated, so they give None.
    """
    files = [f for f in env.container_device_files or () if f.startswith(("GPU-", "MIG-"))]
    if files:
        return frozenset(files)
    value = (env.nvidia_visible_devices or "").strip()
    if value in _SPECIAL_SELECTORS:
        return None
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if tokens and all(t.startswith(("GPU-", "MIG-")) for t in tokens):
        return frozenset(tokens)
    return None


def _fail(source: str, what: str) -> ProbeOutputError:
    return ProbeOutputError(f"probe output from {source}: {what}")


def _opt(data: Mapping[str, Any], key: str, kind: type, source: str, where: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int subclass; a JSON true where a number belongs is still malformed.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(source, f"{where}{key} must be {kind.__name__} or null, got {value!r}")
    return value


def _processes(raw: Mapping[str, Any], source: str, where: str) -> tuple[ProbeProcess, ...] | None:
    procs_raw = raw.get("compute_processes")
    if procs_raw is None:
        return None
    if not isinstance(procs_raw, list):
        raise _fail(source, f"{where}compute_processes must be a list or null")
    procs = []
    for j, p in enumerate(procs_raw):
        if not isinstance(p, dict) or not isinstance(p.get("pid"), int):
            raise _fail(source, f"{where}compute_processes[{j}] must be an object with an integer pid")
        procs.append(
            ProbeProcess(p["pid"], _opt(p, "used_memory_bytes", int, source, f"{where}compute_processes[{j}]."))
        )
    return tuple(procs)


def _device(raw: Any, source: str, pos: int) -> ProbeDevice:
    where = f"devices[{pos}]."
    if not isinstance(raw, dict):
        raise _fail(source, f"devices[{pos}] must be an object")
    index = _opt(raw, "index", int, source, where)
    mig = raw.get("mig_mode")
    if mig is not None and not isinstance(mig, dict):
        raise _fail(source, f"{where}mig_mode must be an object or null")
    migs = []
    for j, m in enumerate(raw.get("mig_devices") or []):
        if not isinstance(m, dict):
            raise _fail(source, f"{where}mig_devices[{j}] must be an object")
        mwhere = f"{where}mig_devices[{j}]."
        migs.append(
            MigDevice(
                slot=_opt(m, "slot", int, source, mwhere) or 0,
                uuid=_opt(m, "uuid", str, source, mwhere),
                name=_opt(m, "name", str, source, mwhere),
                memory_total_bytes=_opt(m, "memory_total_bytes", int, source, mwhere),
                memory_used_bytes=_opt(m, "memory_used_bytes", int, source, mwhere),
                compute_processes=_processes(m, source, mwhere),
            )
        )
    procs = _processes(raw, source, where)
    util_raw = raw.get("utilization")
    util: dict[str, Any] = util_raw if isinstance(util_raw, dict) else {}
    return ProbeDevice(
        index=pos if index is None else index,
        name=_opt(raw, "name", str, source, where),
        uuid=_opt(raw, "uuid", str, source, where),
        memory_total_bytes=_opt(raw, "memory_total_bytes", int, source, where),
        memory_used_bytes=_opt(raw, "memory_used_bytes", int, source, where),
        memory_free_bytes=_opt(raw, "memory_free_bytes", int, source, where),
        mig_current=_opt(mig, "current", int, source, where + "mig_mode.") if mig else None,
        mig_pending=_opt(mig, "pending", int, source, where + "mig_mode.") if mig else None,
        mig_devices=tuple(migs),
        compute_processes=procs,
        utilization_gpu_percent=_opt(util, "gpu_percent", int, source, where + "utilization."),
        utilization_memory_percent=_opt(util, "memory_percent", int, source, where + "utilization."),
    )


def probe_result_from_dict(data: Mapping[str, Any], source: str) -> ProbeResult:
    """Validate one probe document (already decoded) and type it."""
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise _fail(source, f"schema_version must be one of {sorted(SUPPORTED_SCHEMA_VERSIONS)}, got {version!r}")
    if not isinstance(data.get("nvml_available"), bool):
        raise _fail(source, "nvml_available must be true or false")
    devices_raw = data.get("devices")
    errors_raw = data.get("errors")
    if not isinstance(devices_raw, list) or not isinstance(errors_raw, list):
        raise _fail(source, "devices and errors must be lists")
    errors = []
    for i, e in enumerate(errors_raw):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("call", "error", "message")):
            raise _fail(source, f"errors[{i}] must be an object with string call, error and message")
        errors.append(ProbeError(e["call"], e["error"], e["message"]))
    env_raw = data.get("env") or {}
    if not isinstance(env_raw, dict):
        raise _fail(source, "env must be an object")
    files = env_raw.get("nvidia_container_devices")
    if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        raise _fail(source, "env.nvidia_container_devices must be a list of file names or null")
    env = ProbeEnv(
        nvidia_visible_devices=_opt(env_raw, "NVIDIA_VISIBLE_DEVICES", str, source, "env."),
        cuda_visible_devices=_opt(env_raw, "CUDA_VISIBLE_DEVICES", str, source, "env."),
        nvidia_driver_capabilities=_opt(env_raw, "NVIDIA_DRIVER_CAPABILITIES", str, source, "env."),
        container_device_files=None if files is None else tuple(files),
    )
    return ProbeResult(
        source=source,
        schema_version=int(version),
        hostname=_opt(data, "hostname", str, source, ""),
        time=_opt(data, "time", str, source, ""),
        python=_opt(data, "python", str, source, ""),
        pynvml_version=_opt(data, "pynvml_version", str, source, ""),
        env=env,
        nvml_available=bool(data["nvml_available"]),
        driver_version=_opt(data, "driver_version", str, source, ""),
        nvml_version=_opt(data, "nvml_version", str, source, ""),
        cuda_driver_version=_opt(data, "cuda_driver_version", str, source, ""),
        device_count=_opt(data, "device_count", int, source, ""),
        devices=tuple(_device(d, source, i) for i, d in enumerate(devices_raw)),
        errors=tuple(errors),
        raw=dict(data),
    )


def parse_probe_output(text: str, source: str) -> ProbeResult:
    """The probe document in a pod log (the last line that is a JSON object), typed and validated."""
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if not stripped.startswith("{"):
            continue
        try:
            data = json.loads(stripped)
        except ValueError:
            continue
        if isinstance(data, dict):
            return probe_result_from_dict(data, source)
    tail = " | ".join(text.strip().splitlines()[-3:])[:300] or "<empty>"
    raise _fail(source, f"no line is a JSON object (did the probe run? last lines: {tail})")
