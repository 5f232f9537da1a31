"""The three views of "Triton really serves on its GPU" (harness.gpu.triton), as pure decisions."""

from __future__ import annotations

import json
from pathlib import Path

from harness.gpu.gpu_use import TimedScrape, timed_scrape
from harness.gpu.triton import GpuSample, Views, check_triton_gpu_use, gpu_instance_groups, gpu_sample, parse_metrics

GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
GPU_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
METRICS = f"""# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{gpu_uuid="{GPU_A}"}} 0.25
nv_gpu_memory_used_bytes{{gpu_uuid="{GPU_A}"}} 402653184
nv_inference_count{{model="tfsimple_1",version="1"}} 12
not a sample
"""
GPU_CONFIG = {"name": "tfsimple_1", "instance_group": [{"name": "tfsimple_1_0", "kind": "KIND_GPU", "count": 1,
                                                         "gpus": [0]}]}
CPU_CONFIG = {"name": "tfsimple_1", "instance_group": [{"name": "tfsimple_1_0", "kind": "KIND_CPU", "count": 1}]}


def _timed(name: str) -> list[TimedScrape]:
    """A 9 s window of scrapes from tests/fixtures/triton_metrics, relabelled to GPU_A."""
    doc = json.loads((Path(__file__).parents[1] / "fixtures" / "triton_metrics" / f"{name}.json").read_text())
    return [timed_scrape(x["text"].replace(doc["gpus"][0], GPU_A), x["at_s"]) for x in doc["scrapes"]]


def _views(**kw: object) -> Views:
    return Views("triton-gpu", "triton-gpu-0", "gpu-worker", "tfsimple", **kw)  # type: ignore[arg-type]


def _ids(verdicts: list) -> dict[str, bool]:  # type: ignore[type-arg]
    return {v.id: v.ok for v in verdicts}


def test_metrics_are_parsed_by_gpu_uuid() -> None:
    assert ("nv_inference_count", {"model": "tfsimple_1", "version": "1"}, 12.0) in parse_metrics(METRICS)
    sample = gpu_sample(METRICS)
    assert sample.uuids == [GPU_A]
    assert sample.utilization[GPU_A] == 0.25 and sample.memory_used[GPU_A] == 402653184
    assert gpu_instance_groups(GPU_CONFIG) == [("KIND_GPU", [0])]


def test_three_agreeing_views_pass() -> None:
    idle = GpuSample({GPU_A: 0.0}, {GPU_A: 4e8})
    busy = GpuSample({GPU_A: 0.3}, {GPU_A: 4e8})
    verdicts = check_triton_gpu_use(_views(config=GPU_CONFIG, nvml={GPU_A: 402653184, GPU_B: 0},
                                           metrics=[idle, busy, idle], timed=_timed("computes")))
    assert _ids(verdicts) == {"gpu.triton.config": True, "gpu.triton.metrics": True, "gpu.triton.nvml": True,
                              "gpu.triton.agree": True}
    assert "views used config, nvml, metrics" in verdicts[-1].reason


def test_a_server_without_gpu_fails_with_the_three_views_side_by_side() -> None:
    verdicts = check_triton_gpu_use(_views(config=CPU_CONFIG, nvml=None, nvml_note="node has no GPU",
                                           metrics=[GpuSample({}, {}), GpuSample({}, {})]))
    assert _ids(verdicts) == {"gpu.triton.config": False, "gpu.triton.metrics": False, "gpu.triton.agree": False}
    for verdict in verdicts:
        assert "[config: instance groups [('KIND_CPU', [])]]" in verdict.reason
        assert "[nvml: not taken (node has no GPU)]" in verdict.reason
        assert "[metrics: GPUs []" in verdict.reason


def test_disagreement_is_a_finding_naming_each_view() -> None:
    # Config says GPU and the metrics show work, but nothing holds memory on the GPU in NVML.
    busy = GpuSample({GPU_A: 0.3}, {GPU_A: 4e8})
    verdicts = check_triton_gpu_use(_views(config=GPU_CONFIG, nvml={GPU_A: 0, GPU_B: 4e8}, metrics=[busy, busy]))
    ok = _ids(verdicts)
    assert ok["gpu.triton.nvml"] is False and ok["gpu.triton.config"] is True and ok["gpu.triton.agree"] is False
    assert "DISAGREE" in verdicts[-1].reason and "nvml=False" in verdicts[-1].reason


def test_without_nvml_the_other_two_decide_and_say_so() -> None:
    busy = GpuSample({GPU_A: 0.3}, {GPU_A: 4e8})
    verdicts = check_triton_gpu_use(_views(config=GPU_CONFIG, nvml_note="diagnostic not allowed", metrics=[busy],
                                           timed=_timed("computes")))
    assert _ids(verdicts) == {"gpu.triton.config": True, "gpu.triton.metrics": True, "gpu.triton.agree": True}
    assert "views used config, metrics" in verdicts[-1].reason


def test_metrics_that_never_move_fail() -> None:
    # Config says GPU; the metrics over a full window show memory that grew once and no compute.
    still = GpuSample({GPU_A: 0.0}, {GPU_A: 4e8})
    for name in ("idles", "memory_once"):
        verdicts = check_triton_gpu_use(_views(config=GPU_CONFIG, metrics=[still, still], timed=_timed(name)))
        assert _ids(verdicts)["gpu.triton.metrics"] is False
        assert "no sustained compute" in next(v.reason for v in verdicts if v.id == "gpu.triton.metrics")
    # A short run (two scrapes) cannot pass, however busy it looked.
    short = check_triton_gpu_use(_views(config=GPU_CONFIG, metrics=[still], timed=_timed("computes")[8:10]))
    assert "too short to judge" in next(v.reason for v in short if v.id == "gpu.triton.metrics")


def test_no_config_and_no_metrics_is_a_failure_not_a_pass() -> None:
    verdicts = check_triton_gpu_use(_views(config_error="HTTP 404", metrics_error="403 pods/proxy",
                                           nvml={GPU_A: 4e8}))
    assert _ids(verdicts) == {"gpu.triton.views": False}


def test_served_name_comes_from_the_metrics_labels() -> None:
    from harness.testkit.serving import served_name

    text = ('nv_inference_count{model="mnist-onnx_1",version="1"} 3\n'
            'nv_inference_count{gpu_uuid="GPU-a",model="mnist-onnx_2",version="1"} 0\n'
            'nv_inference_count{model="mnist-onnx-big_1",version="1"} 0\n')
    assert served_name(text, "mnist-onnx") == "mnist-onnx_2"  # the newest version Seldon's agent loaded
    assert served_name(text, "mnist") is None
    assert served_name('nv_inference_count{model="plain",version="1"} 0\n', "plain") == "plain"
