"""The NVML probe against the simulated NVML: in-process (collect) and as a real subprocess."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from harness.gpu import FAKE_NVML_DIR, PROBE_PATH, probe, sim_probe_command, sim_probe_env
from harness.gpu.result import parse_probe_output

GIB = 1 << 30
GPU_A = "GPU-11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
GPU_B = "GPU-22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
GPU_C = "GPU-33333333-cccc-4ccc-8ccc-cccccccccccc"
MIG_1 = "MIG-44444444-dddd-5ddd-8ddd-dddddddddddd"
MIG_2 = "MIG-55555555-eeee-5eee-8eee-eeeeeeeeeeee"
NODE = [
    {"uuid": GPU_A, "name": "NVIDIA H200", "memory_total_bytes": 141 * GIB, "index": 0},
    {"uuid": GPU_B, "name": "NVIDIA H200", "memory_total_bytes": 141 * GIB, "index": 1, "mig_capable": True},
]
MIG_NODE = [
    {
        "uuid": GPU_C,
        "name": "NVIDIA A100-SXM4-40GB",
        "memory_total_bytes": 40 * GIB,
        "mig_devices": [
            {"uuid": MIG_1, "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory_total_bytes": 5 * GIB},
            {"uuid": MIG_2, "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory_total_bytes": 5 * GIB},
        ],
    }
]
SIM_VARS = ("HARNESS_SIM_NODE_GPUS", "HARNESS_SIM_GPU_PROCESSES", "HARNESS_SIM_NVML_FAIL", "HARNESS_SIM_DRIVER_VERSION")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh copy of the simulated pynvml, loaded under a private name (the real one stays importable)."""
    for var in (*SIM_VARS, "NVIDIA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    spec = importlib.util.spec_from_file_location("fake_pynvml_under_test", FAKE_NVML_DIR / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    assert module._state.refcount == 0, "the probe left NVML initialised (nvmlShutdown not called)"


def _node(monkeypatch: pytest.MonkeyPatch, gpus: list[dict[str, Any]], visible: str | None, **extra: Any) -> None:
    monkeypatch.setenv("HARNESS_SIM_NODE_GPUS", json.dumps(gpus))
    if visible is not None:
        monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", visible)
    for key, value in extra.items():
        monkeypatch.setenv(key, json.dumps(value))


def _collect(nvml: Any) -> dict[str, Any]:
    doc = probe.collect(nvml, devices_dir="/nonexistent-probe-dir")
    # Whatever collect returns must survive JSON, as main() prints it.
    return dict(json.loads(json.dumps(doc)))


def test_two_gpus_all_fields(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(monkeypatch, NODE, "all", HARNESS_SIM_GPU_PROCESSES={GPU_B: [{"pid": 77, "used_memory_bytes": 3 * GIB}]})
    doc = _collect(fake)
    assert doc["nvml_available"] is True
    assert doc["errors"] == []
    assert (doc["driver_version"], doc["nvml_version"], doc["cuda_driver_version"]) == (
        "550.54.15",
        "12.550.54.15",
        "12.4",
    )
    assert doc["device_count"] == 2
    a, b = doc["devices"]
    assert (a["index"], a["uuid"], a["name"]) == (0, GPU_A, "NVIDIA H200")
    assert a["mig_mode"] is None  # NotSupported -> null, and not an error
    assert b["mig_mode"] == {"current": 0, "pending": 0}
    assert b["mig_devices"] == []
    assert a["compute_processes"] == []
    assert b["compute_processes"] == [{"pid": 77, "used_memory_bytes": 3 * GIB}]
    assert (b["memory_total_bytes"], b["memory_used_bytes"], b["memory_free_bytes"]) == (141 * GIB, 3 * GIB, 138 * GIB)
    assert b["utilization"]["gpu_percent"] > 0
    assert doc["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert doc["env"]["nvidia_container_devices"] is None


def test_container_device_files_listed(fake: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _node(monkeypatch, NODE, "all")
    (tmp_path / GPU_B).write_text("")
    doc = probe.collect(fake, devices_dir=str(tmp_path))
    assert doc["env"]["nvidia_container_devices"] == [GPU_B]


def test_mig_enabled_lists_only_given_mig_devices(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(monkeypatch, MIG_NODE, MIG_2, HARNESS_SIM_GPU_PROCESSES={MIG_2: [{"pid": 31, "used_memory_bytes": GIB}]})
    doc = _collect(fake)
    assert doc["errors"] == []
    (gpu,) = doc["devices"]
    assert gpu["uuid"] == GPU_C
    assert gpu["mig_mode"] == {"current": 1, "pending": 1}
    assert [m["uuid"] for m in gpu["mig_devices"]] == [MIG_2]
    assert gpu["mig_devices"][0]["memory_total_bytes"] == 5 * GIB
    assert gpu["mig_devices"][0]["compute_processes"] == [{"pid": 31, "used_memory_bytes": GIB}]
    assert gpu["mig_devices"][0]["memory_used_bytes"] == GIB
    # The parent GPU answers NoPermission to a MIG-slice container: expected, so null and not an error.
    assert gpu["memory_total_bytes"] is None and gpu["compute_processes"] is None and gpu["utilization"] is None
    result = parse_probe_output(json.dumps(doc), "pod/mig")
    assert result.visible_uuids == {MIG_2}
    assert result.gpu_uuids == {GPU_C}


def test_no_driver_is_data(fake: ModuleType) -> None:
    doc = _collect(fake)  # HARNESS_SIM_NODE_GPUS unset: a node without a driver
    assert doc["nvml_available"] is False
    assert doc["devices"] == [] and doc["device_count"] is None
    assert doc["errors"] == [
        {"call": "nvmlInit", "error": "NVMLError_LibraryNotFound", "message": "NVML Shared Library Not Found"}
    ]


def test_call_failing_midway_is_recorded_and_enumeration_goes_on(
    fake: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _node(
        monkeypatch,
        [*NODE, {"uuid": GPU_C, "name": "NVIDIA H200", "memory_total_bytes": GIB}],
        "all",
        HARNESS_SIM_NVML_FAIL=[{"call": "nvmlDeviceGetName", "index": 1, "error": "GpuIsLost"}],
    )
    doc = _collect(fake)
    assert doc["nvml_available"] is True
    assert [d["name"] for d in doc["devices"]] == ["NVIDIA H200", None, "NVIDIA H200"]
    assert [d["uuid"] for d in doc["devices"]] == [GPU_A, GPU_B, GPU_C]
    assert doc["errors"] == [{"call": "nvmlDeviceGetName(1)", "error": "NVMLError_GpuIsLost", "message": "GPU is lost"}]


def test_device_count_failure_still_shuts_down(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(monkeypatch, NODE, "all", HARNESS_SIM_NVML_FAIL=[{"call": "nvmlDeviceGetCount", "error": "Unknown"}])
    doc = _collect(fake)
    assert doc["device_count"] is None and doc["devices"] == []
    assert [e["call"] for e in doc["errors"]] == ["nvmlDeviceGetCount"]
    # the fixture asserts refcount == 0 afterwards


def _wrapped(fake: ModuleType, **overrides: Any) -> SimpleNamespace:
    names = {k: getattr(fake, k) for k in dir(fake) if not k.startswith("__")}
    names.update(overrides)
    return SimpleNamespace(**names)


def test_process_listing_not_supported_is_null_not_error(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(
        monkeypatch,
        NODE,
        GPU_A,
        HARNESS_SIM_NVML_FAIL=[{"call": "nvmlDeviceGetComputeRunningProcesses", "error": "NotSupported"}],
    )
    doc = _collect(fake)
    assert doc["devices"][0]["compute_processes"] is None
    assert doc["errors"] == []


def test_no_permission_on_a_whole_gpu_is_an_error(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(
        monkeypatch, NODE, GPU_A, HARNESS_SIM_NVML_FAIL=[{"call": "nvmlDeviceGetMemoryInfo", "error": "NoPermission"}]
    )
    doc = _collect(fake)
    assert [(e["call"], e["error"]) for e in doc["errors"]] == [
        ("nvmlDeviceGetMemoryInfo(0)", "NVMLError_NoPermission")
    ]


def test_bytes_returns_of_old_pynvml_are_decoded(fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    _node(monkeypatch, NODE, GPU_A)
    nvml = _wrapped(
        fake,
        nvmlDeviceGetName=lambda h: fake.nvmlDeviceGetName(h).encode(),
        nvmlDeviceGetUUID=lambda h: fake.nvmlDeviceGetUUID(h).encode(),
        nvmlSystemGetDriverVersion=lambda: b"470.82.01",
        nvmlSystemGetNVMLVersion=lambda: b"11.470.82.01",
    )
    doc = _collect(nvml)
    assert doc["driver_version"] == "470.82.01" and doc["nvml_version"] == "11.470.82.01"
    assert doc["devices"][0]["name"] == "NVIDIA H200"
    assert doc["devices"][0]["uuid"] == GPU_A


def test_functions_missing_from_old_pynvml_are_errors_not_crashes(
    fake: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _node(monkeypatch, NODE, GPU_A)
    nvml = _wrapped(fake)
    del nvml.nvmlSystemGetCudaDriverVersion
    del nvml.nvmlDeviceGetComputeRunningProcesses
    doc = _collect(nvml)
    assert doc["cuda_driver_version"] is None
    assert doc["devices"][0]["compute_processes"] is None
    assert doc["devices"][0]["uuid"] == GPU_A
    assert {(e["call"], e["error"]) for e in doc["errors"]} == {
        ("nvmlSystemGetCudaDriverVersion", "AttributeError"),
        ("nvmlDeviceGetComputeRunningProcesses(0)", "AttributeError"),
    }


def test_bindings_version_is_reported(fake: ModuleType) -> None:
    assert _collect(fake)["pynvml_version"] == "simulated"
    real = pytest.importorskip("pynvml", reason="install nvidia-ml-py to check the real bindings' version")
    assert str(probe.collect(real, devices_dir="/nonexistent")["pynvml_version"]).startswith("nvidia-ml-py ")


def test_without_pynvml_module() -> None:
    doc = probe.collect(None, devices_dir="/nonexistent-probe-dir")
    assert doc["nvml_available"] is False
    assert doc["errors"][0]["call"] == "import pynvml"


def test_main_reports_its_own_crash_as_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(probe, "collect", broken)
    assert probe.main() == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert doc["errors"] == [{"call": "probe", "error": "RuntimeError", "message": "boom"}]
    parse_probe_output(out, "pod/crash")  # still a valid document


def test_uninitialised_calls_raise_like_nvml(fake: ModuleType) -> None:
    with pytest.raises(fake.NVMLError_Uninitialized) as info:
        fake.nvmlDeviceGetCount()
    assert info.value.value == fake.NVML_ERROR_UNINITIALIZED
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlShutdown()
    err = fake.NVMLError(fake.NVML_ERROR_NOT_SUPPORTED)
    assert type(err) is fake.NVMLError_NotSupported and err.value == 3 and str(err) == "Not Supported"
    assert isinstance(fake.NVMLError_LibraryNotFound(), fake.NVMLError)


# ---- the script as the sim kubelet runs it: a subprocess with the fake first on PYTHONPATH ----


def _run(visible: str | None, node: list[dict[str, Any]] | None = NODE, **extra: str) -> tuple[int, str, str]:
    env = sim_probe_env(node, visible, base={"PATH": "/usr/bin:/bin"})
    env.update(extra)
    proc = subprocess.run(sim_probe_command(), env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    ("visible", "expected", "error"),
    [
        (None, None, "NVMLError_LibraryNotFound"),
        ("", None, "NVMLError_LibraryNotFound"),
        ("void", None, "NVMLError_LibraryNotFound"),
        ("none", set(), None),
        ("all", {GPU_A, GPU_B}, None),
        (GPU_B, {GPU_B}, None),
        (f"{GPU_B},{GPU_A}", {GPU_A, GPU_B}, None),
        ("1", {GPU_B}, None),
        (f"0, {GPU_B}", {GPU_A, GPU_B}, None),
        ("GPU-not-on-this-node", None, "NVMLError_Unknown"),
    ],
)
def test_script_under_each_visible_devices_form(
    visible: str | None, expected: set[str] | None, error: str | None
) -> None:
    rc, out, err = _run(visible)
    assert rc == 0, err
    assert out.count("\n") == 1, "exactly one JSON document on stdout"
    result = parse_probe_output(out, "pod/p")
    assert result.env.nvidia_visible_devices == (visible or None if visible != "" else "")
    if expected is None:
        assert not result.nvml_available
        assert [e.error for e in result.errors] == [error]
    else:
        assert result.nvml_available and not result.errors
        assert result.visible_uuids == expected
        assert result.device_count == len(expected)
    if visible == "GPU-not-on-this-node":
        assert "GPU-not-on-this-node" in result.errors[0].message


def test_script_on_node_without_driver_exits_zero() -> None:
    rc, out, _ = _run("all", node=None)
    assert rc == 0
    assert parse_probe_output(out, "pod/p").no_driver


def test_script_indices_renumbered_in_container() -> None:
    rc, out, _ = _run("1")
    assert rc == 0
    result = parse_probe_output(out, "pod/p")
    assert [(d.index, d.uuid) for d in result.devices] == [(0, GPU_B)]


def test_script_shows_processes_of_visible_gpus_only() -> None:
    procs = json.dumps({GPU_A: [{"pid": 5, "used_memory_bytes": GIB}], GPU_B: [{"pid": 6, "used_memory_bytes": GIB}]})
    rc, out, _ = _run(GPU_A, HARNESS_SIM_GPU_PROCESSES=procs)
    assert rc == 0
    (device,) = parse_probe_output(out, "pod/p").devices
    assert [p.pid for p in device.compute_processes or ()] == [5]
    assert device.memory_used_bytes == GIB


# ---- the script's portability and its contract with pynvml ----


def _nvml_names_used() -> set[str]:
    tree = ast.parse(PROBE_PATH.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nvml":
            names.add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)
    return {n for n in names if n.startswith(("nvml", "NVML"))}


def test_fake_and_real_pynvml_provide_everything_the_probe_uses(fake: ModuleType) -> None:
    used = _nvml_names_used()
    assert {"nvmlInit", "nvmlShutdown", "nvmlDeviceGetUUID", "NVMLError_NotFound"} <= used
    real = pytest.importorskip("pynvml", reason="install nvidia-ml-py to compare with the real bindings")
    assert sorted(n for n in used if not hasattr(real, n)) == []
    assert sorted(n for n in used if not hasattr(fake, n)) == []
    for name in dir(fake):
        if name.startswith("NVMLError_"):
            assert getattr(real, name).__name__ == name, f"{name} is not a real pynvml exception class"
        if name.startswith("NVML_"):
            assert getattr(real, name) == getattr(fake, name), name


def test_probe_is_python38_compatible_and_stdlib_only() -> None:
    source = PROBE_PATH.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"pynvml"}
    # Runtime generics such as list[str] outside annotations break 3.8; annotations are strings here.
    assert "from __future__ import annotations" in source
    assert "datetime.UTC" not in source and "match " not in source
