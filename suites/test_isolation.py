"""Isolation: what lacks the toleration never runs on GPU nodes, and a mis-specified GPU Server is refused."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from harness.k8s.conditions import condition, condition_text, running, scheduled_or_unschedulable
from harness.k8s.gpu import pod_gpu_request
from harness.k8s.seldon_api import SELDON_API
from harness.testkit import (
    ClusterSession,
    Profile,
    Scope,
    TestRecorder,
    destructive_refusal,
    evicted,
    failed_scheduling_messages,
    gpu_node,
    hold_node,
    nodes_free_of_others,
    render,
)


def _gpu_nodes(scope: Scope) -> list[dict[str, Any]]:
    return [n for n in scope.kube.list("v1", "Node") if gpu_node(n, scope.profile)]


def _expected_taint_text(profile: Profile) -> str:
    # The scheduler words it as "had untolerated taint {key: value}".
    return f"untolerated taint {{{profile.gpu.taint.key}: {profile.gpu.taint.value}}}"


def _await_decision(scope: Scope, name: str) -> dict[str, Any]:
    pod = scope.kube.wait_for("v1", "Pod", name, scope.namespace, scheduled_or_unschedulable,
                              timeout=scope.profile.timeouts.scheduling_s, what=f"scheduling decision for pod {name}")
    assert pod is not None
    return dict(pod)


def test_intruder_without_toleration_never_schedules_on_gpu_nodes(scope: Scope, record: TestRecorder) -> None:
    profile = scope.profile
    if profile.gpu.taint.effect == "PreferNoSchedule":
        pytest.skip("the profile's GPU taint is PreferNoSchedule, which never keeps pods off; use NoSchedule")
    pod = scope.apply(render.intruder_pod(profile, "intruder", scope.namespace))
    decided = _await_decision(scope, pod["metadata"]["name"])
    node = (decided.get("spec") or {}).get("nodeName")
    assert node is None, f"intruder pod without the GPU toleration was scheduled onto {node}"
    messages = failed_scheduling_messages(scope.kube, scope.namespace, "intruder")
    assert any(_expected_taint_text(profile) in m for m in messages), (
        f"expected a FailedScheduling event naming {_expected_taint_text(profile)!r}, got {messages}"
    )
    record.note("intruder FailedScheduling", messages[-1])


def test_gpu_requesting_pod_without_toleration(scope: Scope, cluster: ClusterSession, record: TestRecorder) -> None:
    """A pod that asks for a GPU but lacks our toleration: blocked, unless admission adds a toleration
    for the taint's key (ExtendedResourceToleration covers only the `nvidia.com/gpu` key)."""
    profile = scope.profile
    obj = render.intruder_pod(profile, "gpu-intruder", scope.namespace)
    container = obj["spec"]["containers"][0]
    container["resources"] = {"requests": {profile.gpu.resource_name: "1"}, "limits": {profile.gpu.resource_name: "1"}}
    admission = bool(getattr(cluster.facts, "gpu_toleration_admission", False))
    tolerated_by_admission = admission and profile.gpu.taint.key == profile.gpu.resource_name
    scope.apply(obj)
    decided = _await_decision(scope, "gpu-intruder")
    node = (decided.get("spec") or {}).get("nodeName")
    note = ("cluster adds GPU tolerations on admission" if admission else "cluster adds no GPU tolerations")
    record.note("GPU toleration admission", note)
    if tolerated_by_admission:
        assert node is not None, f"{note}, and the taint key is {profile.gpu.resource_name}: the pod should land"
    else:
        assert node is None, f"{note}; a GPU pod without the {profile.gpu.taint} toleration landed on {node}"


@pytest.mark.destructive
def test_noexecute_taint_evicts_running_intruders(scope: Scope, profile: Profile, record: TestRecorder) -> None:
    """NoExecute evicts a running pod that does not tolerate it, at once or after tolerationSeconds.

    Uses a taint of its own (not the profile's, so the GPU Servers stay) on a GPU node that runs
    none of the deployment's Servers; the node guard removes it afterwards. The node is first closed
    with a NoSchedule taint and looked at again once the scheduler has seen it (`harness.node_hold`),
    so no pod bound meanwhile is evicted; every pod the NoExecute taint evicts is named in the report.
    """
    # A rehearsal follows the rehearsed profile's provider: it skips what the real run would skip.
    provider = scope.run_context.target_provider
    refusal = destructive_refusal(provider, profile.cluster.destructive)
    if refusal:
        pytest.skip(f"the eviction test {refusal}")
    test_taint = {"key": "harness.seldon.dev/evict-test", "value": "true", "effect": "NoExecute"}
    pods = scope.kube.list("v1", "Pod")
    busy = {(p.get("spec") or {}).get("nodeName") for p in pods
            if (p.get("metadata", {}).get("labels") or {}).get("seldon-server-name")}
    without_servers = [n["metadata"]["name"] for n in _gpu_nodes(scope) if n["metadata"]["name"] not in busy]
    if not without_servers:
        pytest.skip("missing shape: a spare GPU node running no Server (every GPU node runs a Server); add a GPU "
                    "worker to the profile to run the eviction test")
    # Nothing of anyone else may be evicted: only a node where every pod is this run's (or tolerates
    # the test taint for good) is used; on a cluster the harness created, every pod is the run's.
    choice = nodes_free_of_others(without_servers, pods, scope.run_context.run_id, test_taint,
                                  own_namespaces=[scope.namespace])
    if provider == "existing" and not choice.free:
        pytest.skip("no GPU node without Servers runs only this run's pods; the taint would evict others' pods ("
                    + "; ".join(f"{n}: {who}" for n, who in choice.busy.items()) + ")")
    node = (choice.free or without_servers)[0]
    held = hold_node(scope.kube, scope.node_guard(), profile, node, namespace=scope.namespace,
                     run_id=scope.run_context.run_id, taint=test_taint, shared=provider == "existing")
    if held.skip:
        pytest.skip(f"the eviction test {held.skip}")
    gpu_toleration = {"key": profile.gpu.taint.key, "operator": "Equal", "value": profile.gpu.taint.value,
                      "effect": profile.gpu.taint.effect}
    hold_toleration = {**test_taint, "operator": "Equal", "effect": "NoSchedule"}
    grace_s = 3

    def intruder(name: str, extra_tolerations: list[dict[str, Any]]) -> dict[str, Any]:
        obj = render.intruder_pod(profile, name, scope.namespace, node_name=node)
        spec = obj["spec"]
        spec.pop("nodeSelector", None)
        spec.pop("affinity", None)
        spec["nodeName"] = node  # bound directly: this test is about eviction, not scheduling
        spec["tolerations"] = [gpu_toleration, hold_toleration, *extra_tolerations]
        return obj

    scope.apply(intruder("evict-now", []))
    scope.apply(intruder("evict-later", [{**test_taint, "operator": "Equal", "tolerationSeconds": grace_s}]))
    for name in ("evict-now", "evict-later"):
        scope.kube.wait_for("v1", "Pod", name, scope.namespace, running,
                            timeout=profile.timeouts.pod_start_s, what=f"intruder {name} running on {node}")
    residents = scope.kube.list("v1", "Pod", field_selector=f"spec.nodeName={node}")
    scope.node_guard().add_taint(node, test_taint)
    tainted_at = time.monotonic()
    scope.kube.wait_for("v1", "Pod", "evict-now", scope.namespace, lambda p: p is None,
                        timeout=profile.timeouts.eviction_s, what="eviction of a pod that does not tolerate NoExecute")
    assert scope.kube.get("v1", "Pod", "evict-later", scope.namespace) is not None or (
        time.monotonic() - tainted_at >= grace_s
    ), "the pod tolerating the taint for a while was evicted before its tolerationSeconds"
    scope.kube.wait_for("v1", "Pod", "evict-later", scope.namespace, lambda p: p is None,
                        timeout=profile.timeouts.eviction_s + grace_s,
                        what=f"eviction after tolerationSeconds={grace_s}")
    gone = evicted(residents, scope.kube.list("v1", "Pod", field_selector=f"spec.nodeName={node}"))
    record.note("evicted pods", gone)
    assert time.monotonic() - tainted_at >= grace_s - 0.5, "evicted before its tolerationSeconds ran out"


def test_gpu_server_with_requests_unequal_to_limits_is_refused(scope: Scope, profile: Profile,
                                                               record: TestRecorder) -> None:
    if not profile.gpu_servers:
        pytest.skip("the profile has no GPU Server")
    base = profile.gpu_servers[0]
    name = f"bad-{scope.run_context.run_id}"[:40]
    obj = copy.deepcopy(render.server(profile, base, profile.seldon.namespace))
    obj["metadata"]["name"] = name
    containers = obj["spec"]["podSpec"]["containers"]
    gpu_container = next(c for c in containers if pod_gpu_request({"spec": {"containers": [c]}},
                                                                    profile.gpu.resource_name))
    gpu_container["resources"]["requests"][profile.gpu.resource_name] = "1"
    gpu_container["resources"]["limits"][profile.gpu.resource_name] = "2"
    scope.apply(obj)
    server = scope.kube.wait_for(
        SELDON_API, "Server", name, profile.seldon.namespace,
        lambda s: (condition(s, "StatefulSetOrDeploymentReady") or {}).get("status") == "False",
        timeout=profile.timeouts.server_ready_s, what=f"Server {name} refused (StatefulSetOrDeploymentReady=False)",
    )
    text = condition_text(server, "StatefulSetOrDeploymentReady")
    record.note("requests != limits", text)
    assert "must be equal" in text or "Invalid" in text, f"expected the API's requests/limits refusal, got {text!r}"
