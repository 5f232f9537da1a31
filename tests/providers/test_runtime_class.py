"""`gpu.runtime_class` (null | name | detect) and product labels for every H200/H100/A100 variant."""

from __future__ import annotations

from typing import Any

import pytest

from harness import render
from harness.config import parse_profile
from harness.errors import HarnessError, UsageError
from harness.gpu.checks import check_pod_visibility, gfd_product_label, product_matches
from harness.gpu.result import probe_result_from_dict
from harness.kube import KubeApiError
from harness.lifecycle import resolve_runtime_class
from harness.render.placement import detect_runtime_class, runtime_class_name

GPU = {"nodes": {"gpu_workers": [{"count": 1, "gpus": 1}]}}
SERVERS = [{"name": "gpu", "gpus": 1}]


def profile(provider: str, runtime_class: Any = "detect", **cluster: Any) -> Any:
    return parse_profile({"cluster": {"provider": provider, **GPU, **cluster}, "servers": SERVERS,
                          "gpu": {"runtime_class": runtime_class}}, "p.yaml")


def named_in_every_gpu_pod(p: Any) -> set[Any]:
    server = render.server(p, p.server("gpu"), "ns")["spec"]["podSpec"].get("runtimeClassName")
    probe = render.probe_pod(p, "probe", "ns", 1)["spec"].get("runtimeClassName")
    plugin = render.device_plugin_values(p).get("runtimeClassName")
    return {server, probe, plugin}


@pytest.mark.parametrize(
    ("provider", "value", "cluster", "expected"),
    [
        ("kind", "detect", {}, "nvidia"),                       # the harness creates it
        ("kind", "detect", {"fake_gpus": True}, None),          # no NVIDIA runtime at all
        ("kind", None, {}, None),
        ("existing", "nvidia", {}, "nvidia"),                   # microk8s / k3s / RKE2
        ("existing", "nvidia-cdi", {}, "nvidia-cdi"),
        ("existing", "detect", {}, None),                       # unresolved (render without a cluster)
        ("existing", None, {}, None),                           # NVIDIA runtime is the node default
    ],
)
def test_every_gpu_pod_names_the_profiles_runtime_class(provider: str, value: Any, cluster: dict[str, Any],
                                                         expected: str | None) -> None:
    p = profile(provider, value, **cluster)
    assert runtime_class_name(p) == expected
    assert named_in_every_gpu_pod(p) == {expected}


def test_runtime_class_value_is_validated() -> None:
    with pytest.raises(UsageError, match="runtime_class"):
        profile("existing", "Not A Name!")


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ([], None),
        ([{"metadata": {"name": "runc-alt"}, "handler": "runc"}], None),
        ([{"metadata": {"name": "nvidia"}, "handler": "nvidia"}], "nvidia"),
        ([{"metadata": {"name": "gpu"}, "handler": "nvidia"}], "gpu"),
        ([{"metadata": {"name": "gpu"}, "handler": "nvidia"}, {"metadata": {"name": "nvidia"}, "handler": "x"}],
         "nvidia"),
    ],
)
def test_detect_runtime_class(classes: list[dict[str, Any]], expected: str | None) -> None:
    assert detect_runtime_class(classes) == expected


class Kube:
    def __init__(self, classes: list[dict[str, Any]] | None, status: int = 403) -> None:
        self.classes = classes
        self.status = status

    def list(self, api_version: str, kind: str, *_: Any, **__: Any) -> list[dict[str, Any]]:
        assert (api_version, kind) == ("node.k8s.io/v1", "RuntimeClass")
        if self.classes is None:
            raise KubeApiError("GET /apis/node.k8s.io/v1/runtimeclasses: forbidden", self.status)
        return self.classes


def test_detect_is_resolved_against_the_cluster_before_anything_is_rendered() -> None:
    p = profile("existing")
    resolved = resolve_runtime_class(p, Kube([{"metadata": {"name": "nvidia"}, "handler": "nvidia"}]))  # type: ignore[arg-type]
    assert resolved.gpu.runtime_class == "nvidia" and named_in_every_gpu_pod(resolved) == {"nvidia"}
    assert resolve_runtime_class(p, Kube([])).gpu.runtime_class is None  # type: ignore[arg-type]
    # no RuntimeClass API at all: nothing to name
    assert resolve_runtime_class(p, Kube(None, 404)).gpu.runtime_class is None  # type: ignore[arg-type]
    explicit = profile("existing", "gpu-rc")
    assert resolve_runtime_class(explicit, Kube(None)) is explicit  # type: ignore[arg-type]


def test_a_forbidden_detect_is_one_clear_error_not_no_class() -> None:
    """Issue 26: a 403 used to be taken as "no class", so GPU pods got no driver on clusters that need one."""
    with pytest.raises(HarnessError) as exc:
        resolve_runtime_class(profile("existing"), Kube(None, 403))  # type: ignore[arg-type]
    message = str(exc.value)
    assert "\n" not in message and "gpu.runtime_class: detect could not list RuntimeClasses" in message
    assert "403" in message and "harness-rbac.yaml" in message and "gpu.runtime_class:" in message


# NVML device names (as drivers report them) -> the gpu-feature-discovery product label.
VARIANTS = {
    "NVIDIA H200": "NVIDIA-H200",
    "NVIDIA H200 NVL": "NVIDIA-H200-NVL",
    "NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
    "NVIDIA H100 PCIe": "NVIDIA-H100-PCIe",
    "NVIDIA H100 NVL": "NVIDIA-H100-NVL",
    "NVIDIA A100-SXM4-40GB": "NVIDIA-A100-SXM4-40GB",
    "NVIDIA A100-SXM4-80GB": "NVIDIA-A100-SXM4-80GB",
    "NVIDIA A100 80GB PCIe": "NVIDIA-A100-80GB-PCIe",
    "NVIDIA A100-PCIE-40GB": "NVIDIA-A100-PCIE-40GB",
}


@pytest.mark.parametrize(("name", "label"), sorted(VARIANTS.items()))
def test_product_label_for_every_variant(name: str, label: str) -> None:
    assert gfd_product_label(name) == label
    assert product_matches(name, label)
    assert product_matches(name, label + "-SHARED")
    assert product_matches(name, label + "-MIG-1g.10gb")
    others = [other for n, other in VARIANTS.items() if n != name]
    assert not any(product_matches(name, other) for other in others), "a variant must not pass for another"


def test_h200_nvl_does_not_pass_for_a_plain_h200_label() -> None:
    """The static profile label NVIDIA-H200 on a host with H200 NVL GPUs: the check fails, which is why
    the kind suite takes the expected product from the host's NVML."""
    doc = {"schema_version": 1, "env": {"NVIDIA_VISIBLE_DEVICES": "GPU-a", "nvidia_container_devices": None},
           "nvml_available": True, "driver_version": "570.1", "device_count": 1, "errors": [],
           "devices": [{"index": 0, "name": "NVIDIA H200 NVL", "uuid": "GPU-a", "memory_total_bytes": 1,
                        "memory_used_bytes": 0, "memory_free_bytes": 1, "mig_mode": None, "mig_devices": [],
                        "compute_processes": [], "utilization": None}]}
    result = probe_result_from_dict(doc, "pod/p")
    bad = [v for v in check_pod_visibility(result, 1, None, "NVIDIA-H200", None) if not v.ok]
    assert [v.id for v in bad] == ["gpu.product"]
    assert all(v.ok for v in check_pod_visibility(result, 1, None, gfd_product_label("NVIDIA H200 NVL"), None))
