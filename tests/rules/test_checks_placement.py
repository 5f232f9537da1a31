"""Placement rules over hand-built snapshots: each rule passes on a correct cluster and names the culprit otherwise."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness.checks import placement as pl
from harness.config import load_profile
from harness.k8s.taints import tolerates, untolerated

ROOT = Path(__file__).resolve().parents[2]
PROFILE = load_profile(ROOT / "profiles" / "sim.yaml")
GPU_TAINT = {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}
GPU_TOL = {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def node(name: str, gpu: bool) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    taints: list[dict[str, str]] = []
    alloc = {"cpu": "8"}
    if gpu:
        labels.update({"pool": "infer-srv", "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H200"})
        taints.append(dict(GPU_TAINT))
        alloc["nvidia.com/gpu"] = "2"
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}, "status": {"allocatable": alloc}}


def pod(name: str, node_name: str, *, server: str | None = None, gpus: int = 0, tolerate: bool = False,
        ns: str = "seldon-mesh") -> dict[str, Any]:
    labels = {"seldon-server-name": server} if server else {}
    resources = {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node_name, "tolerations": [dict(GPU_TOL)] if tolerate else [],
                 "containers": [{"name": "mlserver", "resources": resources}]},
        "status": {"phase": "Running"},
    }


def model(
    name: str, server: str, requirements: list[str], *, ready: bool = True, pinned: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"storageUri": "gs://x", "requirements": requirements}
    if pinned:
        spec["server"] = pinned
    return {
        "metadata": {"name": name, "namespace": "seldon-mesh"},
        "spec": spec,
        "status": {"selector": f"server={server}", "availableReplicas": 1 if ready else 0,
                   "conditions": [{"type": "ModelReady", "status": "True" if ready else "False",
                                   "message": "ModelAvailable" if ready else "ScheduleFailed"}]},
    }


def good() -> pl.Snapshot:
    return pl.Snapshot(
        nodes=[node("cp", False), node("w1", False), node("g1", True), node("g2", True)],
        pods=[
            pod("mlserver-gpu-0", "g1", server="mlserver-gpu", gpus=1, tolerate=True),
            pod("mlserver-gpu-sel-0", "g2", server="mlserver-gpu-sel", gpus=1, tolerate=True),
            pod("mlserver-cpu-0", "w1", server="mlserver-cpu"),
            pod("seldon-scheduler-0", "w1"),
            pod("triton-gpu-0", "g2", server="triton-gpu", gpus=1, tolerate=True),
            pod("triton-cpu-0", "w1", server="triton-cpu"),
        ],
        models=[
            model("iris-gpu", "mlserver-gpu", ["sklearn", "model-on-gpu"]),
            model("iris-pinned", "mlserver-gpu-sel", [], pinned="mlserver-gpu-sel"),
            model("iris-cpu", "mlserver-cpu", ["sklearn", "model-on-cpu"]),
            model("mnist-onnx", "triton-gpu", ["onnx", "model-on-gpu"]),
            model("tfsimple-cpu", "triton-cpu", ["tensorflow", "model-on-cpu"]),
        ],
    )


def test_correct_cluster_has_no_findings() -> None:
    assert pl.all_findings(good(), PROFILE) == []
    rows = pl.placement_table(good(), PROFILE)
    assert {r.verdict for r in rows} == {"ok"}


def test_gpu_node_without_taint_is_named() -> None:
    snap = good()
    snap.nodes[2]["spec"]["taints"] = []
    findings = pl.gpu_pool_tainted(snap, PROFILE)
    assert [str(f) for f in findings] == [
        "node/g1: GPU node (2 nvidia.com/gpu) lacks taint seldon-gpu-srv=true:NoSchedule"
    ]


def test_gpu_node_with_wrong_effect_counts_as_untainted() -> None:
    snap = good()
    snap.nodes[3]["spec"]["taints"][0]["effect"] = "PreferNoSchedule"
    assert [f.subject for f in pl.gpu_pool_tainted(snap, PROFILE)] == ["node/g2"]


def test_gpu_server_on_cpu_node() -> None:
    snap = good()
    snap.pods[0]["spec"]["nodeName"] = "w1"
    messages = [str(f) for f in pl.gpu_server_pods_on_pool(snap, PROFILE)]
    assert messages == [
        "pod/seldon-mesh/mlserver-gpu-0: on node w1: node lacks taint seldon-gpu-srv=true:NoSchedule; "
        "node lacks label pool=infer-srv"
    ]


def test_gpu_server_missing_replica() -> None:
    snap = good()
    del snap.pods[1]
    assert [str(f) for f in pl.gpu_server_pods_on_pool(snap, PROFILE)] == [
        "server/seldon-mesh/mlserver-gpu-sel: expected 1 pod(s), found 0"
    ]


def test_intruder_without_toleration_on_gpu_node() -> None:
    snap = good()
    snap.pods.append(pod("nosy", "g1", ns="default"))
    findings = pl.nothing_else_on_gpu_nodes(snap, PROFILE)
    assert [f.subject for f in findings] == ["pod/default/nosy"]
    table = pl.format_table(pl.placement_table(snap, PROFILE))
    assert "default/nosy" in table and "WRONG" in table and "without a toleration" in table


def test_finished_pods_are_ignored() -> None:
    snap = good()
    done = pod("probe", "g1", ns="t")
    done["status"]["phase"] = "Succeeded"
    snap.pods.append(done)
    assert pl.nothing_else_on_gpu_nodes(snap, PROFILE) == []


def test_cpu_server_on_gpu_node() -> None:
    snap = good()
    snap.pods[2]["spec"]["nodeName"] = "g2"
    snap.pods[2]["spec"]["tolerations"] = [dict(GPU_TOL)]
    assert [f.rule for f in pl.all_findings(snap, PROFILE)] == ["cpu-server-off-pool"]


def test_model_on_wrong_server_and_not_ready() -> None:
    snap = good()
    snap.models[0] = model("iris-gpu", "mlserver-cpu", ["sklearn", "model-on-gpu"], ready=False)
    messages = [str(f) for f in pl.models_on_intended_servers(snap, PROFILE)]
    assert messages[0] == "model/seldon-mesh/iris-gpu: landed on server=mlserver-cpu, expected server=mlserver-gpu"
    assert messages[1].startswith("model/seldon-mesh/iris-gpu: is not ModelReady (ModelReady=False (ScheduleFailed))")


def test_extra_capabilities_trap() -> None:
    snap = good()
    snap.models.append(model("sneaky", "mlserver-gpu", ["sklearn"]))
    findings = pl.non_gpu_models_off_gpu_servers(snap, PROFILE)
    assert [f.subject for f in findings] == ["model/seldon-mesh/sneaky"]
    assert "without requiring 'model-on-gpu'" in findings[0].message


def test_live_gpu_server_outside_profile_counts_as_gpu_server() -> None:
    snap = good()
    snap.pods.append(pod("extra-gpu-0", "g1", server="extra-gpu", gpus=1, tolerate=True))
    snap.models.append(model("m", "extra-gpu", ["sklearn"]))
    assert [f.subject for f in pl.non_gpu_models_off_gpu_servers(snap, PROFILE)] == ["model/seldon-mesh/m"]


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"operator": "Exists"}, GPU_TAINT, True),
        ({"key": "seldon-gpu-srv", "operator": "Exists"}, GPU_TAINT, True),
        ({"key": "seldon-gpu-srv", "value": "true"}, GPU_TAINT, True),
        ({"key": "seldon-gpu-srv", "value": "false"}, GPU_TAINT, False),
        ({"key": "seldon-gpu-srv", "value": "true", "effect": "NoExecute"}, GPU_TAINT, False),
        ({"key": "other", "operator": "Exists"}, GPU_TAINT, False),
        ({"key": "", "operator": "Equal"}, GPU_TAINT, False),
    ],
)
def test_toleration_semantics(toleration: dict[str, str], taint: dict[str, str], expected: bool) -> None:
    assert tolerates([toleration], taint) is expected


def test_prefer_no_schedule_never_filters() -> None:
    soft = {"key": "k", "value": "v", "effect": "PreferNoSchedule"}
    assert untolerated([], [soft]) == []
    assert untolerated([], [GPU_TAINT]) == [GPU_TAINT]


def test_snapshot_is_not_mutated() -> None:
    snap = good()
    before = copy.deepcopy(snap)
    pl.all_findings(snap, PROFILE)
    pl.placement_table(snap, PROFILE)
    assert snap == before


def test_gpu_server_on_a_node_that_is_not_ready() -> None:
    snap = good()
    snap.nodes[2]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert [str(f) for f in pl.gpu_server_pods_on_pool(snap, PROFILE)] == [
        "pod/seldon-mesh/mlserver-gpu-0: on node g1: node is not Ready"
    ]
