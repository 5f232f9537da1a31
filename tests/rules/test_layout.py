"""`gpu_workers: auto`: the documented layout rule, the product from NVML, what a small host leaves out."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_profile
from harness.errors import UsageError
from harness.layout import from_inventory, product_label, resolve, static, worker_shape
from harness.providers import gpu_layout

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024 ** 3


@pytest.mark.parametrize(("gpus", "shape"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (4, (4, 1)), (5, (2, 2)),
                                             (6, (3, 2)), (8, (4, 2)), (16, (8, 2)), (32, (8, 2))])
def test_worker_shape_rule(gpus: int, shape: tuple[int, int]) -> None:
    assert worker_shape(gpus) == shape


def test_product_and_memory_come_from_nvml() -> None:
    assert product_label("NVIDIA H200 NVL") == "NVIDIA-H200-NVL"
    auto = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    laid_out, layout = from_inventory(auto, [("NVIDIA H100 80GB HBM3", 80 * GIB)] * 5, "host NVML")
    (group,) = laid_out.cluster.nodes.gpu_workers
    assert (group.count, group.gpus, group.product, group.memory_mib) == (2, 2, "NVIDIA-H100-80GB-HBM3", 81920)
    assert layout.unused_gpus == 1 and "1 GPU(s) unused" in layout.describe()
    assert laid_out.cluster.nodes.gpu_layout == "listed"


def test_mixed_products_or_no_gpu_are_refused_with_the_field() -> None:
    auto = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    with pytest.raises(UsageError, match=r"gpu_workers: auto needs GPUs of one product"):
        from_inventory(auto, [("NVIDIA A100", GIB), ("NVIDIA H100", GIB)], "host NVML")
    with pytest.raises(UsageError, match=r"gpu_workers: auto found no GPU"):
        from_inventory(auto, [], "host NVML")
    with pytest.raises(UsageError, match=r"--rehearse-host-gpus: expected at least 1"):
        gpu_layout.rehearsal_layout(auto, 0)


def test_host_without_nvml_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.gpu.host as host

    monkeypatch.setattr(host, "host_inventory_with_reason", lambda: (None, "host NVML unavailable (no NVIDIA "
                                                                          "driver on this host?)"))
    with pytest.raises(UsageError, match=r"cluster\.nodes\.gpu_workers: auto reads the host's GPUs through NVML"):
        gpu_layout.host_layout(load_profile(ROOT / "profiles" / "kind-gpu.yaml"))


def test_one_gpu_leaves_out_the_second_gpu_server_and_its_pinned_model() -> None:
    auto = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    laid_out, layout = resolve(auto, 1, "NVIDIA-H200", 143771, "test")
    assert (layout.left_out_servers, layout.left_out_models) == (("mlserver-gpu-sel",), ("iris-pinned",))
    assert [m.name for m in laid_out.models] == [m.name for m in auto.models if m.name != "iris-pinned"]
    # A listed profile passes through untouched; render and lint see an auto one in the 8-GPU layout.
    assert static(laid_out) is laid_out
    assert static(auto).cluster.nodes.gpu_workers[0].count == 4
