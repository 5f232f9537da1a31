"""GPU visibility through NVML: each pod sees exactly its GPUs, a pod without GPUs sees none.

The NVML probe (harness/gpu/probe.py) runs from a ConfigMap in one-shot pods on the GPU nodes.
On the simulated cluster it runs unchanged against a simulated NVML; on kind-cpu (fake GPUs) these
tests skip, and `--require-gpu` turns that skip into a failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks.placement import gpu_node
from harness.gpu import checks
from harness.gpu.result import allocated_uuids_from_env
from harness.providers.kind import needed_host_gpus
from harness.pytest_plugin import Scope
from harness.testing import finish_probe, free_gpus, start_probe

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("require_nvml")]

SIM_GPU_ANNOTATION = "sim.harness.dev/gpu-uuids"


def _gpu_nodes(scope: Scope) -> list[dict[str, Any]]:
    nodes = [n for n in scope.kube.list("v1", "Node") if gpu_node(n, scope.profile)]
    if not nodes:
        pytest.fail("no GPU node in the cluster", pytrace=False)
    return nodes


def _node_uuids(node: dict[str, Any]) -> set[str] | None:
    """The node's GPU UUIDs where the cluster states them (the sim does; real clusters do not)."""
    raw = (node["metadata"].get("annotations") or {}).get(SIM_GPU_ANNOTATION)
    return {u.strip() for u in raw.split(",") if u.strip()} if raw else None


def _product(node: dict[str, Any]) -> str | None:
    return (node["metadata"].get("labels") or {}).get("nvidia.com/gpu.product")


def _assert_verdicts(verdicts: list[checks.Verdict], record: Any) -> None:
    for verdict in verdicts:
        record.check(verdict.id, verdict.ok, verdict.reason)
    bad = checks.failed(verdicts)
    assert not bad, "\n".join(v.reason for v in bad)


def test_each_probe_sees_exactly_its_allocated_gpu(scope: Scope, record: Any) -> None:
    nodes = [n for n in _gpu_nodes(scope) if free_gpus(scope.kube, n, scope.profile.gpu.resource_name) >= 1]
    if not nodes:
        pytest.skip("no GPU node has a free GPU for the probe")
    verdicts: list[checks.Verdict] = []
    for i, node in enumerate(nodes):
        start_probe(scope, f"probe-{i}", node["metadata"]["name"], gpus=1)
    for i, node in enumerate(nodes):
        pod, result = finish_probe(scope, f"probe-{i}")
        record.probe(pod, result, requested=1)
        verdicts += checks.check_pod_visibility(
            result, 1, _node_uuids(node), _product(node), allocated_uuids_from_env(result.env),
            node=node["metadata"]["name"],
        )
    _assert_verdicts(verdicts, record)


def test_two_pods_on_one_node_get_disjoint_gpus(scope: Scope, record: Any) -> None:
    resource = scope.profile.gpu.resource_name
    node = next((n for n in _gpu_nodes(scope) if free_gpus(scope.kube, n, resource) >= 2), None)
    if node is None:
        pytest.skip("no GPU node has two free GPUs; give a GPU worker more GPUs (cluster.nodes.gpu_workers[].gpus)")
    name = node["metadata"]["name"]
    for pod in ("pair-a", "pair-b"):
        start_probe(scope, pod, name, gpus=1, hold_s=3)
    results = {}
    for pod in ("pair-a", "pair-b"):
        obj, result = finish_probe(scope, pod)
        record.probe(obj, result, requested=1)
        results[pod] = result
    verdicts = checks.check_disjoint(results, node=name)
    for pod, result in results.items():
        verdicts += checks.check_pod_visibility(result, 1, _node_uuids(node), _product(node),
                                                allocated_uuids_from_env(result.env), node=f"{name} ({pod})")
    _assert_verdicts(verdicts, record)


def test_pod_that_asked_for_no_gpu_sees_none(scope: Scope, record: Any) -> None:
    node = _gpu_nodes(scope)[0]
    start_probe(scope, "no-gpu", node["metadata"]["name"], gpus=0)
    pod, result = finish_probe(scope, "no-gpu")
    record.probe(pod, result, requested=0)
    _assert_verdicts(checks.check_pod_visibility(result, 0, _node_uuids(node), _product(node),
                                                 allocated_uuids_from_env(result.env),
                                                 node=node["metadata"]["name"]), record)


def test_host_gpus_equal_the_gpus_seen_in_the_cluster(scope: Scope, run_context: Any, host_gpu_inventory: Any,
                                                      record: Any) -> None:
    # A rehearsal of a kind profile runs it too, against the simulated host.
    if run_context.target_provider != "kind" or scope.profile.cluster.fake_gpus:
        pytest.skip("compares host NVML with the cluster: only on kind with GPU passthrough (profiles/kind-gpu.yaml)")
    host, reason = host_gpu_inventory
    if host is None:
        pytest.skip(f"host NVML unavailable: {reason}")
    seen: set[str] = set()
    unavailable: list[str] = []
    for i, node in enumerate(_gpu_nodes(scope)):
        gpus = free_gpus(scope.kube, node, scope.profile.gpu.resource_name)
        name = f"host-{i}"
        if gpus > 0:
            start_probe(scope, name, node["metadata"]["name"], gpus=gpus)
            pod, result = finish_probe(scope, name)
            record.probe(pod, result, requested=gpus)
        else:
            # Every GPU of this node is held (by GPU Servers): look through the diagnostic view, which
            # asks for no GPU and sets NVIDIA_VISIBLE_DEVICES=all (not recorded as a GPU holder).
            start_probe(scope, name, node["metadata"]["name"], gpus=0, env={"NVIDIA_VISIBLE_DEVICES": "all"})
            _, result = finish_probe(scope, name)
        if not result.nvml_available:
            unavailable.append(f"{result.source} on {node['metadata']['name']}")
        seen |= set(result.visible_uuids)
    # Only some host GPUs go to kind workers when the profile names them (gpu_workers[].host_gpus) or
    # needs fewer than the host has.
    workers = scope.profile.cluster.nodes.gpu_workers
    subset = any(g.host_gpus for g in workers) or needed_host_gpus(scope.profile) < len(host.visible_uuids)
    _assert_verdicts(checks.check_host_matches_cluster(set(host.visible_uuids), seen,
                                                       allow_unused_host_gpus=subset, unavailable=unavailable),
                     record)


def test_gpu_servers_really_use_their_gpu(deployed_ok: Any, scope: Scope, record: Any) -> None:
    """Once a model is loaded, the server's GPU shows a compute process holding device memory.

    Seen from a diagnostic probe on the server's node that asks for no GPU and sets
    NVIDIA_VISIBLE_DEVICES=all: NVML lists every process on a device, whichever container owns it.
    """
    profile = scope.profile
    servers = [s for s in profile.servers if s.gpu_use_expected]
    if not servers:
        pytest.skip("no GPU Server expects GPU use (servers[].expect_gpu_use, default: Triton GPU servers)")
    verdicts: list[checks.Verdict] = []
    for i, server in enumerate(servers):
        pods = scope.kube.list("v1", "Pod", profile.seldon.namespace,
                               label_selector=f"seldon-server-name={server.name}")
        assert pods, f"Server {server.name} has no pods"
        for j, pod in enumerate(pods):
            node_name = pod["spec"]["nodeName"]
            node = scope.kube.get("v1", "Node", node_name) or {}
            name = f"use-{i}-{j}"
            start_probe(scope, name, node_name, gpus=0, env={"NVIDIA_VISIBLE_DEVICES": "all"})
            # Not recorded as a probe: this diagnostic view sees every GPU of the node, and the
            # report's GPU inventory would list it as their holder.
            _, result = finish_probe(scope, name)
            if not result.nvml_available or not result.visible_uuids:
                pytest.skip(f"a pod on {node_name} cannot see the node's GPUs with NVIDIA_VISIBLE_DEVICES=all "
                            "(the runtime ignores it for unprivileged pods); check GPU use with Triton metrics")
            # The server's own GPUs where the cluster states them (the sim), else every GPU of the node.
            allocated = (pod["metadata"].get("annotations") or {}).get("sim.harness.dev/allocated-gpus", "")
            held = {u for u in allocated.split(",") if u} or _node_uuids(node) or set(result.visible_uuids)
            verdicts += checks.check_gpu_in_use(result, held, node=node_name)
    _assert_verdicts(verdicts, record)
