"""Shared GPUs (gpu.sharing in the profile): MIG devices and time-sliced replicas, through NVML.

Under MIG each pod sees exactly its MIG device (MIG UUID, parent GPU named), slices are disjoint
between pods and the product label carries the MIG profile. Under time-slicing pods sharing a GPU is
expected and reported (which pods share which UUID), no pod sees a GPU outside what its replicas map
to, and each node advertises its devices x replicas. Skipped when the profile shares nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks.placement import gpu_node
from harness.gpu import checks
from harness.gpu.result import allocated_uuids_from_env
from harness.k8s.sharing import Sharing
from harness.recording import TestRecorder
from harness.render.gpu import probe_resource
from harness.testapi import Scope
from harness.testing import finish_probe, free_gpus, start_probe

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("require_nvml")]


def _sharing(scope: Scope) -> Sharing:
    sharing = scope.profile.gpu.shared()
    if sharing.mode == "none":
        pytest.skip("gpu.sharing shares nothing (set gpu.sharing.time_slicing or gpu.sharing.mig: "
                    "profiles/sim-mig.yaml, profiles/sim-timeslicing.yaml)")
    return sharing


def _gpu_nodes(scope: Scope) -> list[dict[str, Any]]:
    nodes = [n for n in scope.kube.list("v1", "Node") if gpu_node(n, scope.profile)]
    if not nodes:
        pytest.fail("no GPU node in the cluster", pytrace=False)
    return nodes


def _record(verdicts: list[checks.Verdict], record: TestRecorder) -> None:
    for verdict in verdicts:
        record.check(verdict.id, verdict.ok, verdict.reason)
    bad = checks.failed(verdicts)
    assert not bad, "\n".join(v.reason for v in bad)


def test_gpu_nodes_advertise_their_devices_times_replicas(scope: Scope, record: TestRecorder) -> None:
    sharing = _sharing(scope)
    verdicts = [v for node in _gpu_nodes(scope) for v in checks.check_shared_capacity(node, sharing)]
    _record(verdicts, record)


def test_each_pod_sees_its_mig_device_or_its_replica(scope: Scope, record: TestRecorder) -> None:
    sharing = _sharing(scope)
    resource = probe_resource(scope.profile)
    # Time-slicing: one pod more than the node has devices, so that at least two must share one.
    def wanted(node: dict[str, Any]) -> int:
        labels = node["metadata"].get("labels") or {}
        devices = str(labels.get(f"{resource.removesuffix('.shared')}.count", "1"))
        return int(devices) + 1 if sharing.shared and devices.isdigit() else 2

    candidates = [(n, wanted(n)) for n in _gpu_nodes(scope)]
    node, count = next(((n, c) for n, c in candidates if free_gpus(scope.kube, n, resource) >= c), (None, 0))
    if node is None:
        pytest.skip(f"no GPU node has enough free {resource} for {max(c for _, c in candidates)} probe pods; "
                    "give the GPU workers more devices or replicas")
    name = node["metadata"]["name"]
    labels = node["metadata"].get("labels") or {}
    pods = [f"share-{i}" for i in range(count)]
    for pod in pods:
        start_probe(scope, pod, name, gpus=1, hold_s=3)
    results = {}
    verdicts: list[checks.Verdict] = []
    for pod in pods:
        obj, result = finish_probe(scope, pod)
        record.probe(obj, result, requested=1)
        results[pod] = result
        where = f"{name} ({pod})"
        verdicts += checks.check_pod_visibility(result, 1, None, labels.get("nvidia.com/gpu.product"),
                                                allocated_uuids_from_env(result.env), node=where)
        if sharing.mig:
            verdicts += checks.check_mig_devices(result, 1, node=where)
        verdicts += checks.check_sharing_product(result, labels, sharing, node=where)
    verdicts += (checks.check_shared(results, node=name) if sharing.shared
                 else checks.check_disjoint(results, node=name))
    _record(verdicts, record)
