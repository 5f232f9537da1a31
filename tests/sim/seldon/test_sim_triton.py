"""The Triton stand-in's decisions (harness.sim.triton): instance groups the way Triton completes
them, Triton's refusals, and request checking, without starting a process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from harness.sim.models import TFSIMPLE_CONFIG, tfsimple_sample
from harness.sim.triton import Server, TritonError, complete_instance_groups, config_to_json, visible_gpus

GPU = mc.ModelInstanceGroup.KIND_GPU
CPU = mc.ModelInstanceGroup.KIND_CPU


def _config(extra: str = "") -> mc.ModelConfig:
    return text_format.Parse(TFSIMPLE_CONFIG + extra, mc.ModelConfig())


def test_visible_gpus_follow_nvidia_visible_devices() -> None:
    assert visible_gpus({"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"}) == ["GPU-a", "GPU-b"]
    assert visible_gpus({"NVIDIA_VISIBLE_DEVICES": "void"}) == [] == visible_gpus({})


def test_no_instance_group_means_every_visible_gpu_or_the_cpu() -> None:
    on_gpu = _config()
    complete_instance_groups(on_gpu, 2)
    (group,) = on_gpu.instance_group
    assert (group.kind, list(group.gpus), group.count, group.name) == (GPU, [0, 1], 1, "simple_0")
    on_cpu = _config()
    complete_instance_groups(on_cpu, 0)
    assert on_cpu.instance_group[0].kind == CPU and not on_cpu.instance_group[0].gpus
    assert config_to_json(on_gpu)["instance_group"][0]["gpus"] == [0, 1]
    assert config_to_json(on_gpu)["input"][0]["dims"] == [16]


def test_kind_gpu_without_a_gpu_or_with_a_wrong_id_is_refused_like_triton() -> None:
    with pytest.raises(TritonError, match="has kind KIND_GPU but no GPUs are available"):
        complete_instance_groups(_config("instance_group [ { kind: KIND_GPU } ]"), 0)
    with pytest.raises(TritonError, match="specifies invalid or unsupported gpu id 3"):
        complete_instance_groups(_config("instance_group [ { kind: KIND_GPU gpus: [ 3 ] } ]"), 1)


def test_load_infer_and_gpu_accounting(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tfsimple_sample(repo / "tfsimple_1")
    (repo / "tfsimple_1" / "config.pbtxt").write_text(TFSIMPLE_CONFIG.replace('name: "simple"', 'name: "tfsimple_1"'))
    state_file = tmp_path / "gpu-use.json"
    server = Server(repo, ["GPU-a"], state_file)
    server.load("tfsimple_1")
    assert json.loads(state_file.read_text())["gpus"]["GPU-a"] > 0
    a = list(range(16))
    out = server.infer("tfsimple_1", {"INPUT0": ("INT32", [1, 16], a), "INPUT1": ("INT32", [1, 16], [2] * 16)})
    assert [(name, data) for name, _, _, data in out] == [("OUTPUT0", [x + 2 for x in a]),
                                                         ("OUTPUT1", [x - 2 for x in a])]
    assert 'nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"}' in server.metrics_text()
    with pytest.raises(TritonError, match="data-type is 'FP32', but model 'tfsimple_1' expects 'INT32'"):
        server.infer("tfsimple_1", {"INPUT0": ("FP32", [1, 16], a), "INPUT1": ("INT32", [1, 16], a)})
    with pytest.raises(TritonError, match="unexpected shape for input 'INPUT1'"):
        server.infer("tfsimple_1", {"INPUT0": ("INT32", [1, 16], a), "INPUT1": ("INT32", [1, 8], a[:8])})
    with pytest.raises(TritonError, match="missing required input"):
        server.infer("tfsimple_1", {"INPUT0": ("INT32", [1, 16], a)})
    server.unload("tfsimple_1")
    assert json.loads(state_file.read_text())["gpus"] == {}


def test_a_model_the_stand_in_cannot_execute_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text(TFSIMPLE_CONFIG.replace('name: "simple"', 'name: "m"'))
    with pytest.raises(TritonError, match=r"executes only models with a standin\.json"):
        Server(tmp_path, []).load("m")


def test_mnist_sample_runs_on_the_gpu_and_answers_only_the_known_image(tmp_path: Path) -> None:
    """The GPU lanes' model: Seldon's mnist-onnx sample, FP32, one instance per visible GPU. Without weights
    the stand-in answers only the all-zero image, with the real model's answer; any other is refused."""
    from harness.sim.models import mnist_sample
    from harness.sim.triton import MNIST_ZERO_OUTPUT

    mnist_sample(tmp_path / "mnist-onnx")
    server = Server(tmp_path, ["GPU-a"])
    server.load("mnist-onnx")
    config = config_to_json(server.model("mnist-onnx").config)
    assert (config["platform"], config["instance_group"][0]["kind"]) == ("onnxruntime_onnx", "KIND_GPU")
    ((name, datatype, shape, data),) = server.infer("mnist-onnx", {"Input3": ("FP32", [1, 1, 28, 28], [0.0] * 784)})
    assert (name, datatype, shape, data) == ("Plus214_Output_0", "FP32", [1, 10], MNIST_ZERO_OUTPUT)
    with pytest.raises(TritonError, match="answers only an all-zero image"):
        server.infer("mnist-onnx", {"Input3": ("FP32", [1, 1, 28, 28], [0.5] + [0.0] * 783)})
