"""The simulated kubelet through the Kubernetes API: pod lifecycle, GPU allocation, the real NVML probe
run against the simulated NVML, and crash faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from harness.config import load_profile
from harness.render.gpu import probe_configmap, probe_pod
from harness.sim.gpus import ALLOCATED_GPUS_ANNOTATION, GPU_UUIDS_ANNOTATION, gpu_uuid
from tests.kit.scheduler_sim import (
    GPU_TAINT,
    GPU_TOL,
    NS,
    Sim,
    gone,
    node,
    pod_body,
    reset,
    running,
    scheduled_or_failed,
    start_sim,
    wait_event,
    wait_pod,
)

Obj = dict[str, Any]
PROFILE = load_profile(Path(__file__).resolve().parents[3] / "profiles" / "sim.yaml")
POOL = {PROFILE.gpu.pool_label.key: PROFILE.gpu.pool_label.value}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s, stop = start_sim(tmp_path_factory.mktemp("sim"))
    try:
        s.core.create_namespace({"metadata": {"name": NS}})
        yield s
    finally:
        stop()


def finished(pod: Obj | None) -> bool:
    return pod is not None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def gpu_node(name: str, gpus: int = 2) -> Obj:
    return node(name, gpus=gpus, labels=POOL, taints=[GPU_TAINT], gpu_product="NVIDIA-H200", gpu_memory_mib=143771)


def allocated(pod: Obj) -> list[str]:
    text = (pod["metadata"].get("annotations") or {}).get(ALLOCATED_GPUS_ANNOTATION, "")
    return [u for u in text.split(",") if u]


def test_pod_runs_with_status_like_a_kubelet(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("a", requests={"cpu": "100m", "memory": "64Mi"},
                                                limits={"cpu": "100m", "memory": "64Mi"}))
    sim.core.create_namespaced_pod(NS, pod_body("b"))
    a = wait_pod(sim, "a", running)
    b = wait_pod(sim, "b", running)
    assert a is not None and b is not None
    sa, sb = a["status"], b["status"]
    assert sa["podIP"].startswith("127.0.") and sb["podIP"].startswith("127.0.") and sa["podIP"] != sb["podIP"]
    assert sa["hostIP"] == "127.0.0.1" and sa["startTime"]
    assert sa["qosClass"] == "Guaranteed" and sb["qosClass"] == "BestEffort"
    conditions = {c["type"]: c["status"] for c in sa["conditions"]}
    assert {k: conditions[k] for k in ("Initialized", "Ready", "ContainersReady", "PodScheduled")} == {
        "Initialized": "True", "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    (cs,) = sa["containerStatuses"]
    assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
    assert cs["state"]["running"]["startedAt"]
    assert cs["image"] == "busybox:1.36" and cs["imageID"].startswith("docker.io/library/busybox@sha256:")
    assert allocated(a) == []
    sim.core.create_namespaced_pod(NS, pod_body("host", hostNetwork=True))
    host = wait_pod(sim, "host", running)
    assert host is not None and host["status"]["podIP"] == host["status"]["hostIP"] == "127.0.0.1"


def test_gpu_allocation_distinct_and_freed(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(gpu_node("g1", gpus=2))
    node_uuids = sim.core.read_node("g1").metadata.annotations[GPU_UUIDS_ANNOTATION].split(",")
    assert node_uuids == [gpu_uuid("g1", 0), gpu_uuid("g1", 1)]
    for name in ("x", "y", "z"):
        sim.core.create_namespaced_pod(NS, pod_body(name, tolerations=[GPU_TOL], limits={"nvidia.com/gpu": "1"}))
    x, y = wait_pod(sim, "x", running), wait_pod(sim, "y", running)
    assert x is not None and y is not None
    ux, uy = allocated(x), allocated(y)
    assert len(ux) == 1 and len(uy) == 1 and set(ux) | set(uy) == set(node_uuids)
    z = wait_pod(sim, "z", scheduled_or_failed)
    assert z is not None and not z["spec"].get("nodeName")
    sim.core.delete_namespaced_pod("x", NS)
    z = wait_pod(sim, "z", running)
    assert z is not None and allocated(z) == ux, "the freed GPU goes to the pod that was waiting"


def _probe(sim: Sim, name: str, gpus: int, env: list[Obj] | None = None) -> tuple[Obj, dict[str, Any]]:
    body = probe_pod(PROFILE, name, NS, gpus)
    # The typed client insists on string quantities; render emits integers (fine on the wire).
    resources = body["spec"]["containers"][0].get("resources") or {}
    for part in resources.values():
        for key in part:
            part[key] = str(part[key])
    if env:
        body["spec"]["containers"][0]["env"].extend(env)
    sim.core.create_namespaced_pod(NS, body)
    pod = wait_pod(sim, name, finished, timeout=30)
    assert pod is not None
    log = sim.core.read_namespaced_pod_log(name, NS, container="probe")
    assert pod["status"]["phase"] == "Succeeded", log
    return pod, json.loads(log.strip().splitlines()[-1])


def test_probe_pods_see_exactly_their_allocation(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(gpu_node("g1", gpus=2))
    if not sim.core.list_namespaced_config_map(NS, field_selector="metadata.name=nvml-probe").items:
        sim.core.create_namespaced_config_map(NS, probe_configmap(NS))
    pod, doc = _probe(sim, "probe-one", 1)
    (uuid,) = allocated(pod)
    assert doc["nvml_available"] is True and doc["device_count"] == 1
    assert [d["uuid"] for d in doc["devices"]] == [uuid]
    assert doc["devices"][0]["name"] == "NVIDIA H200"
    assert doc["env"]["NVIDIA_VISIBLE_DEVICES"] == uuid
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"

    _, none = _probe(sim, "probe-none", 0)
    assert not none["devices"] and none["env"]["NVIDIA_VISIBLE_DEVICES"] is None

    # A CUDA-base-image style NVIDIA_VISIBLE_DEVICES=all on a pod that asked for nothing leaks every GPU.
    _, leak = _probe(sim, "probe-leak", 0, env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])
    assert sorted(d["uuid"] for d in leak["devices"]) == sorted([gpu_uuid("g1", 0), gpu_uuid("g1", 1)])


def test_failing_script_fails_the_pod_and_keeps_its_output(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_config_map(NS, {"metadata": {"name": "boom"}, "data": {
        "boom.py": "import sys\nprint('about to fail')\nsys.exit(3)\n"}})
    body = pod_body("boom", restartPolicy="Never", volumes=[{"name": "s", "configMap": {"name": "boom"}}])
    body["spec"]["containers"][0].update(command=["python3", "/scripts/boom.py"],
                                         volumeMounts=[{"name": "s", "mountPath": "/scripts"}])
    sim.core.create_namespaced_pod(NS, body)
    pod = wait_pod(sim, "boom", finished, timeout=30)
    assert pod is not None and pod["status"]["phase"] == "Failed"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert sim.core.read_namespaced_pod_log("boom", NS) == "about to fail\n"


def test_missing_configmap_keeps_pod_creating(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    body = pod_body("nomount", volumes=[{"name": "s", "configMap": {"name": "does-not-exist"}}])
    sim.core.create_namespaced_pod(NS, body)
    pod = wait_pod(sim, "nomount", lambda p: bool(p and (p.get("status") or {}).get("containerStatuses")))
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    wait_event(sim, "nomount",
               lambda e: e.reason == "FailedMount" and 'configmap "does-not-exist" not found' in e.message)
    sim.core.create_namespaced_config_map(NS, {"metadata": {"name": "does-not-exist"}, "data": {"k": "v"}})
    assert wait_pod(sim, "nomount", running) is not None


def _restarted(times: int) -> Any:
    def check(pod: Obj | None) -> bool:
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0].get("restartCount", 0) >= times
    return check


def test_crash_once_restarts_and_rotates_the_log(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("crashy"))
    wait_pod(sim, "crashy", running)
    sim.faults.pod_crash(NS, "crashy")
    pod = sim.to_dict(sim.core.read_namespaced_pod("crashy", NS))
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and cs["ready"] is False
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert "exited with code 1" in sim.core.read_namespaced_pod_log("crashy", NS, previous=True)
    pod = wait_pod(sim, "crashy", lambda p: bool(p and p["status"]["containerStatuses"][0]["ready"]))
    assert pod is not None
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]


def test_crash_loop_until_ended(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("looper"))
    wait_pod(sim, "looper", running)
    sim.faults.trigger("pod_crash_loop", NS, "looper")
    pod = wait_pod(sim, "looper", _restarted(2), timeout=10)
    assert pod is not None and pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    sim.faults.trigger("end_crash_loop", NS, "looper")
    pod = wait_pod(sim, "looper", lambda p: bool(p and p["status"]["containerStatuses"][0]["ready"]), timeout=15)
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] >= 2


def test_deleted_pod_is_gone_at_once(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("short"))
    wait_pod(sim, "short", running)
    start = time.monotonic()
    sim.core.delete_namespaced_pod("short", NS)
    wait_pod(sim, "short", gone, timeout=5)
    assert time.monotonic() - start < 2
    with pytest.raises(ApiException) as err:
        sim.core.read_namespaced_pod("short", NS)
    assert err.value.status == 404


def test_fake_capacity_patched_on_status_hands_out_gpus(sim: Sim) -> None:
    """kind-cpu style: a plain node gets nvidia.com/gpu capacity by a JSON patch on /status."""
    reset(sim)
    sim.core.create_node(node("kwok-1"))
    patch = [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"},
             {"op": "add", "path": "/status/allocatable/nvidia.com~1gpu", "value": "1"}]
    sim.core.patch_node_status("kwok-1", patch)  # a list body goes out as application/json-patch+json
    sim.core.create_namespaced_pod(NS, pod_body("fake", limits={"nvidia.com/gpu": "1"}))
    pod = wait_pod(sim, "fake", running)
    assert pod is not None and pod["spec"]["nodeName"] == "kwok-1"
    assert allocated(pod) == [gpu_uuid("kwok-1", 0)]


def test_not_ready_node_starts_nothing_and_orphans_are_collected(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("down", ready=False))
    tolerate = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
    sim.core.create_namespaced_pod(NS, pod_body("stuck", node_name="down", tolerations=tolerate))
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("marker"))
    wait_pod(sim, "marker", running)  # a full pass ran after "stuck" was created
    stuck = sim.to_dict(sim.core.read_namespaced_pod("stuck", NS))
    assert stuck["status"]["phase"] == "Pending" and not stuck["status"].get("startTime")

    lifecycle = next(c for c in sim.controllers if c.name == "node-lifecycle-controller")
    lifecycle.orphan_quarantine_s = 0.5
    try:
        start = time.monotonic()
        sim.core.delete_node("down")
        wait_pod(sim, "stuck", gone, timeout=5)
        assert time.monotonic() - start >= 0.5
    finally:
        lifecycle.orphan_quarantine_s = 40.0


def test_on_failure_restarts_until_the_script_succeeds(sim: Sim, tmp_path: Path) -> None:
    """restartPolicy OnFailure: a failing run is restarted (log rotated) and the pod then Succeeds."""
    reset(sim)
    sim.core.create_node(node("n1"))
    script = ("import os, sys\n"
              "marker = os.path.join(os.environ['STATE_DIR'], 'ran-once')\n"
              "if not os.path.exists(marker):\n"
              "    open(marker, 'w').close()\n"
              "    print('first run fails'); sys.exit(2)\n"
              "print('second run works')\n")
    sim.core.create_namespaced_config_map(NS, {"metadata": {"name": "flaky"}, "data": {"flaky.py": script}})
    state_dir = tmp_path  # the script's marker survives the restart there
    body = pod_body("flaky", restartPolicy="OnFailure", volumes=[{"name": "s", "configMap": {"name": "flaky"}}])
    body["spec"]["containers"][0].update(command=["python3", "/s/flaky.py"],
                                         env=[{"name": "STATE_DIR", "value": str(state_dir)}],
                                         volumeMounts=[{"name": "s", "mountPath": "/s"}])
    sim.core.create_namespaced_pod(NS, body)
    pod = wait_pod(sim, "flaky", finished, timeout=30)
    assert pod is not None and pod["status"]["phase"] == "Succeeded"
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and cs["lastState"]["terminated"]["exitCode"] == 2
    assert sim.core.read_namespaced_pod_log("flaky", NS) == "second run works\n"
    assert sim.core.read_namespaced_pod_log("flaky", NS, previous=True) == "first run fails\n"


def test_profile_nodes_look_like_kind_nodes_with_gpu_labels() -> None:
    from harness.sim.api.store import MemoryStore
    from harness.sim.nodes import bootstrap_nodes

    store = MemoryStore()
    nodes = {n["metadata"]["name"]: n for n in bootstrap_nodes(store, PROFILE)}
    base = PROFILE.cluster.name
    group = PROFILE.cluster.nodes.gpu_workers[0]
    gpu_names = [f"{base}-gpu-worker"] + [f"{base}-gpu-worker{i}" for i in range(2, group.count + 1)]
    assert set(nodes) == {f"{base}-control-plane", f"{base}-worker", *gpu_names}
    cp = nodes[f"{base}-control-plane"]
    assert cp["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert cp["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert nodes[f"{base}-worker"]["spec"]["taints"] == []
    for name in gpu_names:
        n = nodes[name]
        labels = n["metadata"]["labels"]
        assert n["spec"]["taints"] == [PROFILE.gpu.taint.as_k8s()]
        assert labels[PROFILE.gpu.pool_label.key] == PROFILE.gpu.pool_label.value
        assert labels["nvidia.com/gpu.present"] == "true" and labels["nvidia.com/gpu.product"] == group.product
        assert labels["nvidia.com/gpu.count"] == str(group.gpus)
        assert labels["nvidia.com/gpu.memory"] == str(group.memory_mib)
        assert labels["kubernetes.io/hostname"] == name and labels["kubernetes.io/os"] == "linux"
        assert n["status"]["capacity"]["nvidia.com/gpu"] == str(group.gpus)
        assert n["status"]["allocatable"]["pods"] == "110"
        assert n["status"]["nodeInfo"]["kubeletVersion"] == "v1.32.2"
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        uuids = n["metadata"]["annotations"][GPU_UUIDS_ANNOTATION].split(",")
        assert uuids == [gpu_uuid(name, i) for i in range(group.gpus)]
        assert all(len(u) == 40 and u.startswith("GPU-") for u in uuids)
    annotations = [n["metadata"]["annotations"].get(GPU_UUIDS_ANNOTATION, "") for n in nodes.values()]
    all_uuids = [u for text in annotations for u in text.split(",") if u]
    assert len(all_uuids) == len(set(all_uuids)) == group.count * group.gpus
    # Bootstrapping twice keeps the existing nodes.
    again = {n["metadata"]["uid"] for n in bootstrap_nodes(store, PROFILE)}
    assert again == {n["metadata"]["uid"] for n in nodes.values()}


def test_mig_and_time_sliced_devices_reach_nvml_as_the_device_plugin_hands_them_out(sim: Sim) -> None:
    """The simulated device plugin (harness/sim/deviceplugin.py): a pod given one MIG device sees exactly
    that slice under its parent GPU; time-sliced replicas carry the plain GPU UUID."""
    from harness.k8s.sharing import Sharing

    reset(sim)
    sim.core.create_node(node("mig", gpus=1, labels=POOL, taints=[GPU_TAINT], gpu_product="NVIDIA-A100-SXM4-40GB",
                              sharing=Sharing("mixed", ("3g.20gb", "1g.5gb"))))
    sim.core.create_node(node("ts", gpus=1, labels=POOL, taints=[GPU_TAINT], sharing=Sharing(replicas=2)))
    if not sim.core.list_namespaced_config_map(NS, field_selector="metadata.name=nvml-probe").items:
        sim.core.create_namespaced_config_map(NS, probe_configmap(NS))
    seen = {}
    for name, where, resource in (("mig-a", "mig", "nvidia.com/mig-1g.5gb"), ("ts-a", "ts", "nvidia.com/gpu")):
        body = probe_pod(PROFILE, name, NS, 1, node_name=where)
        body["spec"]["containers"][0]["resources"] = {"requests": {resource: "1"}, "limits": {resource: "1"}}
        sim.core.create_namespaced_pod(NS, body)
        pod = wait_pod(sim, name, finished, timeout=30)
        assert pod is not None and pod["status"]["phase"] == "Succeeded"
        seen[name] = (pod, json.loads(sim.core.read_namespaced_pod_log(name, NS).strip().splitlines()[-1]))
    pod, doc = seen["mig-a"]
    (device,) = doc["devices"]
    assert device["mig_mode"]["current"] == 1 and device["uuid"].startswith("GPU-")
    assert [(m["name"], m["uuid"]) for m in device["mig_devices"]] == [
        ("NVIDIA A100 SXM4 40GB MIG 1g.5gb", allocated(pod)[0])]
    assert allocated(pod)[0].startswith("MIG-") and doc["env"]["NVIDIA_VISIBLE_DEVICES"] == allocated(pod)[0]
    pod, doc = seen["ts-a"]
    assert [d["uuid"] for d in doc["devices"]] == allocated(pod) == [gpu_uuid("ts", 0)]
    assert pod["metadata"]["annotations"]["sim.harness.dev/allocated-devices"] == f"{gpu_uuid('ts', 0)}::0"
