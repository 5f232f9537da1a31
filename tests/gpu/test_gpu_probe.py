"""The NVML probe against the simulated driver: in-process (collect) and as the pod runs it.

In both, the Python side is the REAL nvidia-ml-py bindings the probe ships (the installed package's
pynvml.py); only the driver library below them (libnvidia-ml.so.1, harness/gpu/simdriver) is simulated.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from harness.gpu import (
    PROBE_PATH,
    probe,
    run_probe_simulated,
    sim_probe_command,
    sim_probe_env,
    write_probe_files,
)
from harness.gpu.bindings import installed_path
from harness.gpu.result import parse_probe_output
from harness.gpu.simnvml import (
    SimDriverError,
    build_library,
    load_simulated_bindings,
    prepare_driver_dir,
)

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

Node = Callable[..., ModuleType]


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(tmp_path_factory.getbasetemp() / "simnvml-cache")


@pytest.fixture
def node(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """node(gpus, visible, processes=None, faults=()) -> the shipped bindings on that node's simulated
    driver (gpus None: no driver). Every module made here must be left shut down."""
    made: list[ModuleType] = []

    def make(gpus: list[dict[str, Any]] | None, visible: str | None, processes: Any = None,
             faults: Any = ()) -> ModuleType:
        if visible is None:
            monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", visible)
        folder = None
        if gpus is not None:
            folder = prepare_driver_dir(tmp_path / f"driver{len(made)}", library, gpus, processes, None, faults)
        module = load_simulated_bindings(folder)
        made.append(module)
        return module

    yield make
    for module in made:
        assert module._nvmlLib_refcount == 0, "the probe left NVML initialised (nvmlShutdown not called)"


def _collect(nvml: Any) -> dict[str, Any]:
    doc = probe.collect(nvml, devices_dir="/nonexistent-probe-dir")
    # Whatever collect returns must survive JSON, as main() prints it.
    return dict(json.loads(json.dumps(doc)))


def test_two_gpus_all_fields(node: Node) -> None:
    doc = _collect(node(NODE, "all", {GPU_B: [{"pid": 77, "used_memory_bytes": 3 * GIB}]}))
    assert doc["nvml_available"] is True
    assert doc["errors"] == []
    assert (doc["driver_version"], doc["nvml_version"], doc["cuda_driver_version"]) == (
        "550.54.15",
        "12.550.54.15-sim",
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


def test_container_device_files_listed(node: Node, tmp_path: Path) -> None:
    nvml = node(NODE, "all")
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / GPU_B).write_text("")
    doc = probe.collect(nvml, devices_dir=str(tmp_path / "devices"))
    assert doc["env"]["nvidia_container_devices"] == [GPU_B]


def test_mig_enabled_lists_only_given_mig_devices(node: Node) -> None:
    doc = _collect(node(MIG_NODE, MIG_2, {MIG_2: [{"pid": 31, "used_memory_bytes": GIB}]}))
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


def test_no_driver_is_data(node: Node) -> None:
    doc = _collect(node(None, "all"))  # a node without a driver
    assert doc["nvml_available"] is False
    assert doc["devices"] == [] and doc["device_count"] is None
    assert doc["errors"] == [
        {"call": "nvmlInit", "error": "NVMLError_LibraryNotFound", "message": "NVML Shared Library Not Found"}
    ]


def test_call_failing_midway_is_recorded_and_enumeration_goes_on(node: Node) -> None:
    nvml = node(
        [*NODE, {"uuid": GPU_C, "name": "NVIDIA H200", "memory_total_bytes": GIB}],
        "all",
        faults=[{"call": "nvmlDeviceGetName", "index": 1, "error": "GpuIsLost"}],
    )
    doc = _collect(nvml)
    assert doc["nvml_available"] is True
    assert [d["name"] for d in doc["devices"]] == ["NVIDIA H200", None, "NVIDIA H200"]
    assert [d["uuid"] for d in doc["devices"]] == [GPU_A, GPU_B, GPU_C]
    assert doc["errors"] == [{"call": "nvmlDeviceGetName(1)", "error": "NVMLError_GpuIsLost", "message": "GPU is lost"}]


def test_device_count_failure_still_shuts_down(node: Node) -> None:
    doc = _collect(node(NODE, "all", faults=[{"call": "nvmlDeviceGetCount", "error": "Unknown"}]))
    assert doc["device_count"] is None and doc["devices"] == []
    assert [e["call"] for e in doc["errors"]] == ["nvmlDeviceGetCount"]
    # the fixture asserts refcount == 0 afterwards


def _wrapped(fake: ModuleType, **overrides: Any) -> SimpleNamespace:
    """Stands in for an older release of the bindings (bytes returns, missing calls)."""
    names = {k: getattr(fake, k) for k in dir(fake) if not k.startswith("__")}
    names.update(overrides)
    return SimpleNamespace(**names)


def test_process_listing_not_supported_is_null_not_error(node: Node) -> None:
    fault = {"call": "nvmlDeviceGetComputeRunningProcesses", "error": "NotSupported"}
    doc = _collect(node(NODE, GPU_A, faults=[fault]))
    assert doc["devices"][0]["compute_processes"] is None
    assert doc["errors"] == []


def test_no_permission_on_a_whole_gpu_is_an_error(node: Node) -> None:
    doc = _collect(node(NODE, GPU_A, faults=[{"call": "nvmlDeviceGetMemoryInfo", "error": "NoPermission"}]))
    assert [(e["call"], e["error"]) for e in doc["errors"]] == [
        ("nvmlDeviceGetMemoryInfo(0)", "NVMLError_NoPermission")
    ]


def test_bytes_returns_of_old_pynvml_are_decoded(node: Node) -> None:
    fake = node(NODE, GPU_A)
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


def test_functions_missing_from_old_pynvml_are_errors_not_crashes(node: Node) -> None:
    nvml = _wrapped(node(NODE, GPU_A))
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


def test_bindings_version_is_reported(node: Node) -> None:
    doc = probe.collect(node(NODE, "none"), bindings_version="nvidia-ml-py 13.615.71", devices_dir="/nonexistent")
    assert doc["pynvml_version"] == "nvidia-ml-py 13.615.71"


def test_without_bindings_the_load_error_is_data(tmp_path: Path) -> None:
    module, version, error = probe.load_bindings(str(tmp_path))
    assert module is None and version is None and error is not None
    doc = probe.collect(None, devices_dir="/nonexistent-probe-dir", load_error=error)
    assert doc["nvml_available"] is False
    assert doc["errors"][0]["call"] == "load pynvml.py" and "pynvml.py is missing" in doc["errors"][0]["message"]


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


def test_uninitialised_calls_raise_like_nvml(node: Node) -> None:
    nvml = node(NODE, "all")
    with pytest.raises(nvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    nvml.nvmlShutdown()
    with pytest.raises(nvml.NVMLError_Uninitialized):
        nvml.nvmlShutdown()


# ---- the script as a pod runs it: `python3 -I -S probe.py`, only the ConfigMap's files beside it ----


@pytest.fixture
def run(library: Path, tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    def go(visible: str | None, gpus: list[dict[str, Any]] | None = NODE,
           processes: Any = None) -> tuple[int, str, str]:
        work = tmp_path / f"pod{len(list(tmp_path.iterdir()))}"
        proc = run_probe_simulated(work, library, gpus, visible, processes)
        return proc.returncode, proc.stdout, proc.stderr

    return go


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
    run: Callable[..., tuple[int, str, str]], visible: str | None, expected: set[str] | None, error: str | None
) -> None:
    rc, out, err = run(visible)
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


def test_script_on_node_without_driver_exits_zero(run: Callable[..., tuple[int, str, str]]) -> None:
    rc, out, _ = run("all", gpus=None)
    assert rc == 0
    result = parse_probe_output(out, "pod/p")
    assert result.no_driver
    assert [(e.call, e.error) for e in result.errors] == [("nvmlInit", "NVMLError_LibraryNotFound")]


def test_script_indices_renumbered_in_container(run: Callable[..., tuple[int, str, str]]) -> None:
    rc, out, _ = run("1")
    assert rc == 0
    result = parse_probe_output(out, "pod/p")
    assert [(d.index, d.uuid) for d in result.devices] == [(0, GPU_B)]


def test_script_shows_processes_of_visible_gpus_only(run: Callable[..., tuple[int, str, str]]) -> None:
    procs = {GPU_A: [{"pid": 5, "used_memory_bytes": GIB}], GPU_B: [{"pid": 6, "used_memory_bytes": GIB}]}
    rc, out, _ = run(GPU_A, processes=procs)
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


def test_shipped_bindings_provide_everything_the_probe_uses(node: Node) -> None:
    used = _nvml_names_used()
    assert {"nvmlInit", "nvmlShutdown", "nvmlDeviceGetUUID", "NVMLError_NotFound"} <= used
    shipped = node(None, None)
    assert sorted(n for n in used if not hasattr(shipped, n)) == []


def test_the_simulated_driver_exports_every_function_the_bindings_call_for_the_probe(library: Path) -> None:
    """If the probe starts calling something new, the simulated driver must grow it too (else the sim
    would report FunctionNotFound where a real driver answers)."""
    proc = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip(f"nm is not usable here: {proc.stderr.strip()[:100]}")
    exported = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
    bindings = installed_path().read_text(encoding="utf-8")
    for name in sorted(n for n in _nvml_names_used() if n.startswith("nvml")):
        start = bindings.index(f"\ndef {name}(")
        body = bindings[start: bindings.index("\ndef ", start + 1)]
        called = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', body))
        # Wrappers such as nvmlDeviceGetComputeRunningProcesses delegate to a versioned function.
        for inner in re.findall(r"return (nvml\w+)\(", body):
            inner_start = bindings.index(f"\ndef {inner}(")
            inner_body = bindings[inner_start: bindings.index("\ndef ", inner_start + 1)]
            called |= set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', inner_body))
        if name == "nvmlInit":
            called.add("nvmlInitWithFlags")
        assert called <= exported, f"{name} calls {sorted(called - exported)}, missing from the simulated driver"


def test_probe_runs_isolated_from_any_pynvml_on_the_path(library: Path, tmp_path: Path) -> None:
    """An image's own (old, or broken) pynvml must not answer: the probe loads the shipped one by path."""
    decoy = tmp_path / "site"
    decoy.mkdir()
    (decoy / "pynvml.py").write_text("raise SystemExit('the image pynvml was imported')\n", encoding="utf-8")
    probe_py = write_probe_files(tmp_path / "probe")
    driver = prepare_driver_dir(tmp_path / "driver", library, NODE)
    env = sim_probe_env(driver, "all", base={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(decoy)})
    assert "PYTHONPATH" not in env
    env["PYTHONPATH"] = str(decoy)  # as an image might set it: -I must ignore it
    proc = subprocess.run(sim_probe_command(probe_py), env=env, cwd=str(decoy), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    result = parse_probe_output(proc.stdout, "pod/p")
    assert result.nvml_available and result.visible_uuids == {GPU_A, GPU_B}


def test_probe_without_its_bindings_reports_it_as_data(tmp_path: Path) -> None:
    probe_py = write_probe_files(tmp_path / "probe")
    (probe_py.parent / "pynvml.py").unlink()
    proc = subprocess.run(sim_probe_command(probe_py), env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0
    result = parse_probe_output(proc.stdout, "pod/p")
    assert not result.nvml_available and [e.error for e in result.errors] == ["ImportError"]


def test_sim_refuses_clearly_without_a_compiler(tmp_path: Path) -> None:
    with pytest.raises(SimDriverError, match="needs a C compiler: 'no-such-cc' is not on PATH"):
        build_library(tmp_path, compiler="no-such-cc")


def test_driver_is_injected_only_where_the_nvidia_runtime_would(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "NVIDIA_VISIBLE_DEVICES": "all", "PYTHONPATH": "/x", "LD_LIBRARY_PATH": "/y"}
    env = sim_probe_env(tmp_path, [GPU_A, GPU_B], base=base)
    assert env == {"PATH": "/bin", "NVIDIA_VISIBLE_DEVICES": f"{GPU_A},{GPU_B}", "LD_LIBRARY_PATH": str(tmp_path)}
    assert sim_probe_env(tmp_path, "none")["LD_LIBRARY_PATH"] == str(tmp_path)
    for absent in (None, "", "void"):
        assert "LD_LIBRARY_PATH" not in sim_probe_env(tmp_path, absent)
    assert "LD_LIBRARY_PATH" not in sim_probe_env(None, "all")


def test_probe_is_python38_compatible_and_stdlib_only() -> None:
    source = PROBE_PATH.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    # Nothing outside the standard library: the bindings are loaded by path from the probe's folder.
    assert imported - set(sys.stdlib_module_names) == set()
    # Runtime generics such as list[str] outside annotations break 3.8; annotations are strings here.
    assert "from __future__ import annotations" in source
    assert "datetime.UTC" not in source and "match " not in source


def test_preparing_a_driver_folder_again_never_corrupts_a_loaded_library(library: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A second prepare over a folder whose library this process has loaded (a fixture run twice) must
    replace the file, not rewrite the mapped one: rewriting it in place crashed the process."""
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    folder = prepare_driver_dir(tmp_path / "host", library, NODE)
    first = load_simulated_bindings(folder)
    inode = (folder / "libnvidia-ml.so.1").stat().st_ino
    prepare_driver_dir(tmp_path / "host", library, NODE[:1])
    assert (folder / "libnvidia-ml.so.1").stat().st_ino != inode
    for nvml in (first, load_simulated_bindings(folder)):
        nvml.nvmlInit()
        try:
            assert nvml.nvmlDeviceGetCount() == 1  # the inventory is read at init: the new one
        finally:
            nvml.nvmlShutdown()
