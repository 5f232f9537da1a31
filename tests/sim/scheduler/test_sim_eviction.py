"""Evictions and PodDisruptionBudgets, through the real client.

Sources (kubernetes/kubernetes): pkg/registry/core/pod/storage/eviction.go `EvictionREST.Create` (commit
01aa0f3f6052c9866dcb69054d8924fa8c96e3cb) and pkg/controller/disruption/disruption.go (commit
008b3652959ca58af8be3fb5b6ecfe9ae7638282): the body must name the URL's pod (400); a budget without
room answers 429 with a DisruptionBudget cause; more than one budget is a 500; a Pending pod is evicted
regardless; an allowed eviction decrements disruptionsAllowed and deletes the pod gracefully.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kit.scheduler_sim import NS, Sim, node, pod_body, reset, running, wait_pod
from tests.kit.sim_fixtures import Waiter

Obj = dict[str, Any]


def _eviction(name: str) -> client.V1Eviction:
    return client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=NS))


def _pdbs(sim: Sim) -> Any:
    return client.PolicyV1Api(sim.core.api_client)


def _web(sim: Sim, count: int) -> None:
    reset(sim)
    for pdb in _pdbs(sim).list_namespaced_pod_disruption_budget(NS).items:
        _pdbs(sim).delete_namespaced_pod_disruption_budget(pdb.metadata.name, NS)
    sim.core.create_node(node("n1"))
    for i in range(count):
        sim.core.create_namespaced_pod(NS, pod_body(f"web-{i}", labels={"app": "web"}))
    for i in range(count):
        wait_pod(sim, f"web-{i}", running)


def _budget(sim: Sim, name: str, **spec: Any) -> None:
    _pdbs(sim).create_namespaced_pod_disruption_budget(NS, {
        "metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}})
    waiter = Waiter(sim)
    waiter.until(lambda: (bool((_pdbs(sim).read_namespaced_pod_disruption_budget(name, NS).status or
                                client.V1PodDisruptionBudgetStatus(current_healthy=0, desired_healthy=0,
                                                                   disruptions_allowed=0, expected_pods=0)
                                ).observed_generation), None), f"budget {name} observed")


def _status(exc: ApiException) -> Obj:
    return dict(json.loads(exc.body))


def test_an_eviction_naming_another_pod_is_refused(sim: Sim) -> None:
    _web(sim, 2)
    with pytest.raises(ApiException) as refused:
        sim.core.create_namespaced_pod_eviction("web-0", NS, _eviction("web-1"))
    assert refused.value.status == 400
    assert _status(refused.value)["message"] == "name in URL does not match name in Eviction object"
    assert {p.metadata.name for p in sim.core.list_namespaced_pod(NS).items} == {"web-0", "web-1"}


BUDGETS = [
    ("min-available-all", {"minAvailable": 2}, 0, "The disruption budget web needs 2 healthy pods and has 2 currently"),
    ("max-unavailable-zero", {"maxUnavailable": 0}, 0,
     "The disruption budget web needs 2 healthy pods and has 2 currently"),
    ("min-available-one", {"minAvailable": 1}, 1, "The disruption budget web needs 1 healthy pods and has 1 currently"),
    ("percent", {"minAvailable": "50%"}, 1, "The disruption budget web needs 1 healthy pods and has 1 currently"),
]


@pytest.mark.parametrize(("case", "spec", "allowed", "cause"), BUDGETS, ids=[c[0] for c in BUDGETS])
def test_budgets_limit_evictions(sim: Sim, case: str, spec: Obj, allowed: int, cause: str) -> None:
    _web(sim, 2)
    _budget(sim, "web", **spec)
    waiter = Waiter(sim)
    waiter.until(lambda: (_pdbs(sim).read_namespaced_pod_disruption_budget("web", NS).status.disruptions_allowed
                          == allowed, None), f"budget allows {allowed}")
    for i in range(allowed):
        sim.core.create_namespaced_pod_eviction(f"web-{i}", NS, _eviction(f"web-{i}"))
    # the disruption controller has counted the evicted pods out (the cause quotes its status)
    waiter.until(lambda: (_pdbs(sim).read_namespaced_pod_disruption_budget("web", NS).status.current_healthy
                          == 2 - allowed, None), "budget recounted")
    with pytest.raises(ApiException) as refused:
        sim.core.create_namespaced_pod_eviction(f"web-{allowed}", NS, _eviction(f"web-{allowed}"))
    status = _status(refused.value)
    assert refused.value.status == 429
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"] == [{"reason": "DisruptionBudget", "message": cause}]


def test_two_budgets_are_a_server_error_and_pending_pods_are_evicted_regardless(sim: Sim) -> None:
    _web(sim, 1)
    _budget(sim, "web", minAvailable=1)
    _budget(sim, "web-too", minAvailable=1)
    with pytest.raises(ApiException) as refused:
        sim.core.create_namespaced_pod_eviction("web-0", NS, _eviction("web-0"))
    assert refused.value.status == 500
    assert "more than one PodDisruptionBudget" in _status(refused.value)["message"]
    sim.core.create_namespaced_pod(NS, pod_body("stuck", labels={"app": "web"}, node_selector={"none": "x"}))
    sim.core.create_namespaced_pod_eviction("stuck", NS, _eviction("stuck"))  # Pending: no budget check
    with pytest.raises(ApiException) as gone:
        sim.core.read_namespaced_pod("stuck", NS)
    assert gone.value.status == 404
