"""Profile loading: every kind of bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_profile, parse_profile
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_shipped_profiles_load(path: Path) -> None:
    profile = load_profile(path)
    assert profile.servers and profile.models
    for model in profile.models:
        assert profile.servers_for(model), model.name


BAD = {
    "syntax": ("servers: [\n", "not valid YAML at line"),
    "empty": ("", "the profile is empty"),
    "list": ("- a\n- b\n", "expected a mapping at the top level, got a list"),
    "unknown_key": ("cluster: {provder: sim}\n", "cluster.provder: unknown key"),
    "wrong_type": ("load: {rate: fast}\n", "load.rate:"),
    "out_of_range": ("load: {rate: -5}\n", "load.rate: input should be greater than 0"),
    "bad_effect": ("gpu: {taint: {effect: NoRun}}\n", "gpu.taint.effect: expected one of"),
    "bad_name": ("servers: [{name: GPU_Server}]\n", "servers[0].name: server name must be a DNS-1123 label"),
    "pin_missing": (
        "servers: [{name: a, gpus: 0}]\nmodels: [{name: m, storage_uri: s3://x, server: b}]\n",
        "models[0].server: model 'm' is pinned to server 'b'",
    ),
    "requirement_unmet": (
        "servers: [{name: a, gpus: 0}]\nmodels: [{name: m, storage_uri: s3://x, requirements: [onnx]}]\n",
        "models[0].requirements: no server offers all of ['onnx']",
    ),
    "gpu_without_nodes": (
        "cluster: {nodes: {gpu_workers: []}}\nservers: [{name: a, gpus: 1}]\n",
        "servers[0].gpus: server 'a' asks for GPUs but cluster.nodes.gpu_workers has no nodes",
    ),
    "shape_mismatch": (
        "servers: [{name: a, gpus: 0}]\n"
        "models: [{name: m, storage_uri: x, input: {name: i, shape: [1, 4], data: [1]}}]\n",
        "models[0].input: data has 1 values but shape [1, 4] needs 4",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profile_is_one_clear_line(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="profile file not found"):
        load_profile(tmp_path / "nope.yaml")


def test_intended_server_follows_pin_and_unique_match() -> None:
    profile = load_profile(ROOT / "profiles" / "sim.yaml")
    assert {m.name: profile.intended_server(m) for m in profile.models} == {
        "mnist-onnx": "triton-gpu",
        "iris-gpu": "mlserver-gpu",
        "iris-pinned": "mlserver-gpu-sel",
        "tfsimple-cpu": "triton-cpu",
        "iris-cpu": "mlserver-cpu",
    }


def test_parse_profile_rejects_non_mapping() -> None:
    with pytest.raises(UsageError, match="got a str"):
        parse_profile("hello", "x.yaml")


@pytest.mark.parametrize(
    "text",
    ["", "cluster: {provder: sim}\n", "[1, 2]\n", "load: {rate: -1}\n", "a: [\n"],
    ids=["empty", "unknown", "list", "range", "syntax"],
)
def test_cli_exit_code_2_without_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "render", "--profile", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(path) in proc.stderr


def test_cli_help_lists_every_subcommand() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("render", "lint", "sim", "load", "gate", "report"):
        assert command in proc.stdout


def test_cli_bad_flag_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "load", "--endpoint", "http://127.0.0.1:1", "--model", "m",
         "--rate", "-3", "--duration", "1", "--json", "x.json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "expected a number > 0" in proc.stderr


def test_model_takes_one_input_form_and_lists_every_tensor() -> None:
    tensor = {"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}
    base = {"servers": [{"name": "t", "server_config": "triton"}]}
    both = {**base, "models": [{"name": "m", "storage_uri": "gs://x", "server": "t", "input": tensor,
                                "inputs": [tensor]}]}
    with pytest.raises(UsageError, match=r"models\[0\]: .*either input .* or inputs"):
        parse_profile(both, "p.yaml")
    two = parse_profile({**base, "models": [{"name": "m", "storage_uri": "gs://x", "server": "t",
                                              "inputs": [tensor, {**tensor, "name": "INPUT1"}]}]}, "p.yaml")
    assert [t.name for t in two.models[0].request_inputs] == ["INPUT0", "INPUT1"]
    orphan = {**base, "models": [{"name": "m", "storage_uri": "gs://x", "server": "t", "expected_outputs": [tensor]}]}
    with pytest.raises(UsageError, match=r"models\[0\]\.expected_outputs: needs models\[\]\.input"):
        parse_profile(orphan, "p.yaml")


def test_explicit_gpu_use_is_checked_even_without_gpus() -> None:
    profile = parse_profile({"servers": [{"name": "t", "server_config": "triton", "gpus": 0, "expect_gpu_use": True},
                                         {"name": "g", "server_config": "triton", "gpus": 1},
                                         {"name": "m", "gpus": 1}]}, "p.yaml")
    assert [s.gpu_use_expected for s in profile.servers] == [True, True, False]
