"""Parsing probe output: every recorded fixture, pod logs with noise, malformed documents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.gpu import run_probe_simulated
from harness.gpu.result import (
    ProbeEnv,
    ProbeOutputError,
    allocated_uuids_from_env,
    parse_probe_output,
)
from harness.gpu.simnvml import build_library

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def test_fixtures_exist() -> None:
    assert any(f.name.startswith("synthetic-") for f in FIXTURE_FILES)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[f.name for f in FIXTURE_FILES])
def test_every_fixture_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.strip().splitlines()) == 1, "fixtures are the probe's output: one line"
    result = parse_probe_output(text, str(path))
    assert result.source == str(path)
    if result.nvml_available:
        assert result.driver_version
        assert result.device_count == len(result.devices)
        for device in result.devices:
            assert device.uuid and device.uuid.startswith("GPU-")
            assert device.name
            if not device.mig_enabled:
                assert device.memory_total_bytes and device.memory_total_bytes > 0
            # With MIG on, a container may read only its MIG devices, not the parent GPU.
            for mig in device.mig_devices:
                assert mig.uuid and mig.uuid.startswith("MIG-")
                assert mig.memory_total_bytes and mig.memory_total_bytes > 0
    else:
        assert result.errors, "a probe without NVML must say why"


H200 = [
    {"uuid": "GPU-5a8f9c2e-1b3d-4e6f-8a0b-1c2d3e4f5a6b", "name": "NVIDIA H200", "memory_total_bytes": 150754820096},
    {"uuid": "GPU-0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f9", "name": "NVIDIA H200", "memory_total_bytes": 150754820096},
]
A100_MIG = {
    "uuid": "GPU-7f3e2d1c-0b9a-4877-a665-5a4b3c2d1e0f",
    "name": "NVIDIA A100-SXM4-40GB",
    "memory_total_bytes": 42949672960,
    "mig_devices": [
        {
            "uuid": "MIG-1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f",
            "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
            "memory_total_bytes": 5100273664,
        },
        {
            "uuid": "MIG-2d3e4f5a-6b7c-5d8e-9f0a-1b2c3d4e5f6a",
            "name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
            "memory_total_bytes": 5100273664,
        },
    ],
}
CAPS = {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
# fixture name -> (node GPUs, NVIDIA_VISIBLE_DEVICES, processes, extra env, driver version)
SYNTHETIC: dict[str, tuple[Any, str | None, dict[str, Any] | None, dict[str, str], str | None]] = {
    "synthetic-2xH200-550.54.15": (
        [{**g, "mig_capable": True} for g in H200],
        ",".join(g["uuid"] for g in H200),
        {H200[0]["uuid"]: [{"pid": 4242, "used_memory_bytes": 2147483648}]},
        CAPS,
        None,
    ),
    "synthetic-A100-MIG-535.161.08": (
        [A100_MIG],
        "MIG-1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f",
        {"MIG-1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f": [{"pid": 5151, "used_memory_bytes": 1073741824}]},
        CAPS,
        "535.161.08",
    ),
    "synthetic-no-driver": (None, None, None, {}, None),
}


def _synthetic_document(name: str, work: Path) -> dict[str, Any]:
    gpus, visible, procs, extra, driver = SYNTHETIC[name]
    library = build_library(work.parent / "simnvml-cache")
    proc = run_probe_simulated(work, library, gpus, visible, procs, driver_version=driver, extra_env=extra)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    # Normalised so the fixture does not change with the machine or the clock.
    doc.update(hostname="synthetic-probe", time="2026-01-01T00:00:00Z", python="3.10.12")
    return doc


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_fixture_is_exactly_what_the_probe_prints_today(name: str, tmp_path: Path) -> None:
    """Set UPDATE_NVML_FIXTURES=1 to rewrite the synthetic fixtures after changing the probe."""
    path = FIXTURES / f"{name}.json"
    doc = _synthetic_document(name, tmp_path / "pod")
    if os.environ.get("UPDATE_NVML_FIXTURES") == "1":
        path.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == doc


def test_pod_log_noise_around_the_document_is_ignored() -> None:
    doc = (FIXTURES / "synthetic-2xH200-550.54.15.json").read_text(encoding="utf-8").strip()
    log = "\n".join(["==> starting probe", '{"not": "it"} trailing', doc, "bye", "  "])
    result = parse_probe_output(log, "pod/ns/probe-0")
    assert len(result.devices) == 2


def test_last_json_object_wins() -> None:
    older = json.dumps({"schema_version": 1, "nvml_available": False, "devices": [], "errors": []})
    newer = (FIXTURES / "synthetic-2xH200-550.54.15.json").read_text(encoding="utf-8")
    assert parse_probe_output(older + "\n" + newer, "p").nvml_available is True
    assert parse_probe_output(newer + "\n" + older + "\n[1, 2]\n", "p").nvml_available is False


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no line is a JSON object"),
        ("Traceback (most recent call last):\n  boom\nImportError: x", "ImportError: x"),
        ('{"schema_version": 2, "nvml_available": true, "devices": [], "errors": []}', "schema_version"),
        ('{"schema_version": 1, "nvml_available": "yes", "devices": [], "errors": []}', "nvml_available"),
        ('{"schema_version": 1, "nvml_available": true, "devices": {}, "errors": []}', "devices and errors"),
        ('{"schema_version": 1, "nvml_available": true, "devices": [], "errors": [{"call": 1}]}', "errors[0]"),
        ('{"schema_version": 1, "nvml_available": true, "devices": [{"uuid": 7}], "errors": []}', "devices[0].uuid"),
        (
            '{"schema_version": 1, "nvml_available": true, "devices": [{"memory_total_bytes": true}], "errors": []}',
            "devices[0].memory_total_bytes",
        ),
        (
            '{"schema_version": 1, "nvml_available": true, "devices": [{"compute_processes": [{"pid": "x"}]}],'
            ' "errors": []}',
            "compute_processes[0]",
        ),
    ],
)
def test_malformed_output_names_the_source(text: str, needle: str) -> None:
    with pytest.raises(ProbeOutputError) as info:
        parse_probe_output(text, "pod gpu-test/probe-abc")
    message = str(info.value)
    assert "pod gpu-test/probe-abc" in message
    assert needle in message
    assert "\n" not in message


def _env(visible: str | None, files: tuple[str, ...] | None = None) -> ProbeEnv:
    return ProbeEnv(visible, None, None, files)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (_env("GPU-a,GPU-b"), {"GPU-a", "GPU-b"}),
        (_env(" MIG-x "), {"MIG-x"}),
        (_env("all"), None),
        (_env("none"), None),
        (_env(None), None),
        (_env("0,1"), None),
        (_env("GPU-a,1"), None),
        (_env("/var/run/nvidia-container-devices", ("GPU-a",)), {"GPU-a"}),
        (_env("all", ("all",)), None),
    ],
)
def test_allocation_from_env(env: ProbeEnv, expected: set[str] | None) -> None:
    got = allocated_uuids_from_env(env)
    assert (None if got is None else set(got)) == expected


def test_mig_result_visible_uuids_are_the_mig_devices() -> None:
    result = parse_probe_output((FIXTURES / "synthetic-A100-MIG-535.161.08.json").read_text(encoding="utf-8"), "f")
    (device,) = result.devices
    assert device.mig_enabled
    assert result.visible_uuids == {"MIG-1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f"}
    assert result.gpu_uuids == {"GPU-7f3e2d1c-0b9a-4877-a665-5a4b3c2d1e0f"}
    assert allocated_uuids_from_env(result.env) == result.visible_uuids
