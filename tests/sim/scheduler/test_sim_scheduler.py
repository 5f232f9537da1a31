"""The simulated scheduler and taint manager, driven through the Kubernetes API with the real client.

Each placement case replaces every node with the case's nodes (created over HTTP, KWOK style), then
creates the pod and watches it until it is bound or reported Unschedulable; the assertion is the
chosen node or the exact FailedScheduling text. Only the node-side controllers run here (no Seldon),
so the node set is exactly the case's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import watch

from tests.kit.scheduler_sim import (
    CP_TAINT,
    GPU_TAINT,
    GPU_TOL,
    NS,
    WAIT_S,
    Sim,
    affinity,
    expr,
    gone,
    node,
    pod_affinity,
    pod_body,
    reset,
    running,
    scheduled_or_failed,
    spread,
    wait_event,
    wait_pod,
)

Obj = dict[str, Any]


def not_helpful(n: int, reasons: str) -> str:
    return (f"0/{n} nodes are available: {reasons}. preemption: 0/{n} nodes are available: "
            f"{n} Preemption is not helpful for scheduling..")


@dataclass
class Case:
    id: str
    nodes: list[Obj]
    pod: Obj
    expect_node: str | None = None
    expect_message: str | None = None
    existing: list[Obj] = field(default_factory=list)  # pods bound first (they must be Running)


CASES = [
    # --- taints and tolerations ---
    Case("no-taints-name-order", [node("n1"), node("n2")], pod_body("p"), "n1"),
    Case("noschedule-filters", [node("n1", taints=[GPU_TAINT]), node("n2")], pod_body("p"), "n2"),
    Case("all-tainted", [node("n1", taints=[GPU_TAINT]), node("n2", taints=[GPU_TAINT])], pod_body("p"),
         expect_message=not_helpful(2, "2 node(s) had untolerated taint {seldon-gpu-srv: true}")),
    Case("equal-toleration", [node("g1", taints=[GPU_TAINT])], pod_body("p", tolerations=[GPU_TOL]), "g1"),
    Case("equal-wrong-value", [node("g1", taints=[GPU_TAINT])],
         pod_body("p", tolerations=[{**GPU_TOL, "value": "false"}]),
         expect_message=not_helpful(1, "1 node(s) had untolerated taint {seldon-gpu-srv: true}")),
    Case("equal-no-operator-means-equal", [node("g1", taints=[GPU_TAINT])],
         pod_body("p", tolerations=[{"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}]), "g1"),
    Case("exists-toleration", [node("g1", taints=[GPU_TAINT])],
         pod_body("p", tolerations=[{"key": "seldon-gpu-srv", "operator": "Exists"}]), "g1"),
    Case("empty-key-exists-tolerates-all",
         [node("g1", taints=[GPU_TAINT, {"key": "other", "value": "x", "effect": "NoExecute"}])],
         pod_body("p", tolerations=[{"operator": "Exists"}]), "g1"),
    Case("empty-effect-matches-all", [node("g1", taints=[GPU_TAINT])],
         pod_body("p", tolerations=[{"key": "seldon-gpu-srv", "operator": "Equal", "value": "true"}]), "g1"),
    Case("wrong-effect-does-not-tolerate", [node("g1", taints=[GPU_TAINT])],
         pod_body("p", tolerations=[{**GPU_TOL, "effect": "NoExecute"}]),
         expect_message=not_helpful(1, "1 node(s) had untolerated taint {seldon-gpu-srv: true}")),
    Case("prefer-no-schedule-never-filters",
         [node("n1", taints=[{"key": "soft", "value": "1", "effect": "PreferNoSchedule"}])], pod_body("p"), "n1"),
    Case("prefer-no-schedule-scores-lower",
         [node("n1", taints=[{"key": "soft", "value": "1", "effect": "PreferNoSchedule"}]), node("n2")],
         pod_body("p"), "n2"),
    Case("noexecute-filters", [node("n1", taints=[{"key": "evict", "value": "now", "effect": "NoExecute"}])],
         pod_body("p"), expect_message=not_helpful(1, "1 node(s) had untolerated taint {evict: now}")),
    Case("noexecute-tolerated-with-seconds",
         [node("n1", taints=[{"key": "evict", "value": "now", "effect": "NoExecute"}])],
         pod_body("p", tolerations=[{"key": "evict", "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 3600}]), "n1"),
    Case("mixed-reasons-sorted",
         [node("cp", taints=[CP_TAINT]), node("w1", cpu="1"), node("g1", taints=[GPU_TAINT]),
          node("g2", taints=[GPU_TAINT])],
         pod_body("p", requests={"cpu": "2"}),
         expect_message="0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
                        "{node-role.kubernetes.io/control-plane: }, 2 node(s) had untolerated taint "
                        "{seldon-gpu-srv: true}. preemption: 0/4 nodes are available: 4 Preemption is not "
                        "helpful for scheduling.."),
    # --- nodeSelector and required node affinity ---
    Case("node-selector", [node("n1"), node("n2", labels={"pool": "infer-srv"})],
         pod_body("p", node_selector={"pool": "infer-srv"}), "n2"),
    Case("node-selector-no-match", [node("n1"), node("n2")], pod_body("p", node_selector={"pool": "infer-srv"}),
         expect_message=not_helpful(2, "2 node(s) didn't match Pod's node affinity/selector")),
    Case("affinity-in", [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"})],
         pod_body("p", affinity=affinity([expr("zone", "In", "b", "c")])), "n2"),
    Case("affinity-notin-absent-label-matches", [node("n1", labels={"zone": "a"}), node("n2")],
         pod_body("p", affinity=affinity([expr("zone", "NotIn", "a")])), "n2"),
    Case("affinity-notin-excludes", [node("n1", labels={"zone": "a"})],
         pod_body("p", affinity=affinity([expr("zone", "NotIn", "a")])),
         expect_message=not_helpful(1, "1 node(s) didn't match Pod's node affinity/selector")),
    Case("affinity-exists", [node("n1"), node("n2", labels={"gpu": ""})],
         pod_body("p", affinity=affinity([expr("gpu", "Exists")])), "n2"),
    Case("affinity-does-not-exist", [node("n1", labels={"gpu": ""}), node("n2")],
         pod_body("p", affinity=affinity([expr("gpu", "DoesNotExist")])), "n2"),
    Case("affinity-gt-is-numeric", [node("n1", labels={"gen": "10"}), node("n2", labels={"gen": "3"})],
         pod_body("p", affinity=affinity([expr("gen", "Gt", "5")])), "n1"),
    Case("affinity-lt-skips-non-integers",
         [node("n1", labels={"gen": "abc"}), node("n2", labels={"gen": "10"}), node("n3", labels={"gen": "3"})],
         pod_body("p", affinity=affinity([expr("gen", "Lt", "5")])), "n3"),
    Case("affinity-gt-non-integer-value", [node("n1", labels={"gen": "10"})],
         pod_body("p", affinity=affinity([expr("gen", "Gt", "five")])),
         expect_message=not_helpful(1, "1 node(s) didn't match Pod's node affinity/selector")),
    Case("affinity-terms-ored", [node("n1", labels={"a": "1"}), node("n2", labels={"b": "1"})],
         pod_body("p", affinity=affinity([expr("a", "In", "2")], [expr("b", "In", "1")])), "n2"),
    Case("affinity-expressions-anded",
         [node("n1", labels={"a": "1"}), node("n2", labels={"a": "1", "b": "1"})],
         pod_body("p", affinity=affinity([expr("a", "In", "1"), expr("b", "Exists")])), "n2"),
    Case("affinity-match-fields-name", [node("n1"), node("n2")],
         pod_body("p", affinity=affinity(fields=[expr("metadata.name", "In", "n2")])), "n2"),
    Case("match-fields-pin-prefilters-other-nodes", [node("n1", cpu="1"), node("n2"), node("n3")],
         pod_body("p", requests={"cpu": "2"}, affinity=affinity(fields=[expr("metadata.name", "In", "n1")])),
         expect_message=not_helpful(3, "1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]")),
    Case("match-fields-conflict", [node("n1"), node("n2")],
         pod_body("p", affinity=affinity(fields=[expr("metadata.name", "In", "n1"),
                                                 expr("metadata.name", "In", "n2")])),
         expect_message=not_helpful(2, "pod affinity terms conflict")),
    Case("selector-and-affinity-both-apply",
         [node("n1", labels={"pool": "x", "zone": "a"}), node("n2", labels={"pool": "x", "zone": "b"})],
         pod_body("p", node_selector={"pool": "x"}, affinity=affinity([expr("zone", "NotIn", "a")])), "n2"),
    # --- inter-pod affinity (required terms) ---
    Case("pod-anti-affinity-spreads", [node("n1"), node("n2")],
         pod_body("p", labels={"app": "web"}, affinity=pod_affinity("podAntiAffinity", {"app": "web"})),
         existing=[pod_body("first", labels={"app": "web"}, node_name="n1")], expect_node="n2"),
    Case("pod-anti-affinity-nowhere", [node("n1")],
         pod_body("p", affinity=pod_affinity("podAntiAffinity", {"app": "web"})),
         existing=[pod_body("first", labels={"app": "web"})],
         expect_message="0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. preemption: "
                        "0/1 nodes are available: 1 No preemption victims found for incoming pod.."),
    Case("pod-affinity-follows", [node("n1"), node("n2")],
         pod_body("p", affinity=pod_affinity("podAffinity", {"app": "db"})),
         existing=[pod_body("first", labels={"app": "db"}, node_name="n2")], expect_node="n2"),
    Case("pod-affinity-unmet", [node("n1"), node("n2")],
         pod_body("p", affinity=pod_affinity("podAffinity", {"app": "db"})),
         expect_message=not_helpful(2, "2 node(s) didn't match pod affinity rules")),
    Case("pod-affinity-first-of-group", [node("n1")],
         pod_body("p", labels={"app": "grp"}, affinity=pod_affinity("podAffinity", {"app": "grp"})), "n1"),
    Case("existing-pod-anti-affinity", [node("n1"), node("n2")], pod_body("p", labels={"app": "x"}),
         existing=[pod_body("first", node_name="n1", affinity=pod_affinity("podAntiAffinity", {"app": "x"}))],
         expect_node="n2"),
    # --- topology spread (DoNotSchedule) ---
    Case("spread-max-skew", [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"})],
         pod_body("p", labels={"app": "s"}, topologySpreadConstraints=[spread("zone", {"app": "s"})]),
         existing=[pod_body("first", labels={"app": "s"}, node_name="n1")], expect_node="n2"),
    Case("spread-missing-label", [node("n1", labels={"zone": "a"}), node("n2")],
         pod_body("p", labels={"app": "s"}, topologySpreadConstraints=[spread("zone", {"app": "s"})]),
         expect_node="n1"),
    Case("spread-unsatisfiable", [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"}, cpu="1")],
         pod_body("p", labels={"app": "s"}, requests={"cpu": "2"},
                  topologySpreadConstraints=[spread("zone", {"app": "s"})]),
         existing=[pod_body("first", labels={"app": "s"}, node_name="n1")],
         expect_message="0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod topology spread "
                        "constraints. preemption: 0/2 nodes are available: 1 No preemption victims found for "
                        "incoming pod, 1 Preemption is not helpful for scheduling.."),
    # --- resource fit ---
    Case("cpu-fit", [node("n1", cpu="1"), node("n2", cpu="4")], pod_body("p", requests={"cpu": "2"}), "n2"),
    Case("cpu-millicores", [node("n1", cpu="500m"), node("n2", cpu="2")],
         pod_body("p", requests={"cpu": "600m"}), "n2"),
    Case("cpu-insufficient", [node("n1", cpu="4"), node("n2", cpu="4")], pod_body("p", requests={"cpu": "8"}),
         expect_message=not_helpful(2, "2 Insufficient cpu")),
    Case("memory-insufficient", [node("n1", memory="1Gi")], pod_body("p", requests={"memory": "2Gi"}),
         expect_message=not_helpful(1, "1 Insufficient memory")),
    Case("limits-default-requests", [node("n1", memory="1Gi"), node("n2", memory="4Gi")],
         pod_body("p", limits={"memory": "2Gi"}), "n2"),
    Case("too-many-pods", [node("n1", pods=1)], pod_body("p"),
         existing=[pod_body("first")],
         expect_message="0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: "
                        "1 No preemption victims found for incoming pod.."),
    Case("gpu-fit-skips-used-gpu", [node("g1", gpus=1), node("g2", gpus=1)],
         pod_body("p", limits={"nvidia.com/gpu": "1"}),
         existing=[pod_body("first", limits={"nvidia.com/gpu": "1"}, node_name="g1")], expect_node="g2"),
    Case("gpu-all-used", [node("g1", gpus=1)], pod_body("p", limits={"nvidia.com/gpu": "1"}),
         existing=[pod_body("first", limits={"nvidia.com/gpu": "1"})],
         expect_message="0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are "
                        "available: 1 No preemption victims found for incoming pod.."),
    Case("gpu-on-cpu-node", [node("n1")], pod_body("p", limits={"nvidia.com/gpu": "1"}),
         expect_message=not_helpful(1, "1 Insufficient nvidia.com/gpu")),
    Case("least-allocated", [node("n1"), node("n2")], pod_body("p", requests={"cpu": "1"}),
         existing=[pod_body("first", requests={"cpu": "2"}, node_name="n1")], expect_node="n2"),
    Case("init-container-max-rule", [node("n1", cpu="2")],
         pod_body("p", requests={"cpu": "1"}, init_requests={"cpu": "3"}),
         expect_message=not_helpful(1, "1 Insufficient cpu")),
    # --- node state ---
    Case("unschedulable-node", [node("n1", unschedulable=True)], pod_body("p"),
         expect_message=not_helpful(1, "1 node(s) were unschedulable")),
    Case("unschedulable-tolerated",
         [node("n1", unschedulable=True)],
         pod_body("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                     "effect": "NoSchedule"}]), "n1"),
    Case("not-ready-node-skipped", [node("n1", ready=False), node("n2")], pod_body("p"), "n2"),
    Case("not-ready-node-message", [node("n1", ready=False)], pod_body("p"),
         expect_message=not_helpful(1, "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }")),
    Case("preemption-policy-never", [node("n1", cpu="1")],
         pod_body("p", requests={"cpu": "2"}, preemptionPolicy="Never"),
         expect_message="0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to "
                        "preemptionPolicy=Never.."),
]


def _wait_node_tainted(sim: Sim, name: str, key: str) -> None:
    deadline = time.monotonic() + WAIT_S
    w = watch.Watch()
    for event in w.stream(sim.core.list_node, field_selector=f"metadata.name={name}", timeout_seconds=int(WAIT_S)):
        taints = (event["raw_object"].get("spec") or {}).get("taints") or []
        if any(t.get("key") == key for t in taints) or time.monotonic() > deadline:
            w.stop()
            return
    raise AssertionError(f"node {name} never got taint {key}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_placement(sim: Sim, case: Case) -> None:
    reset(sim)
    for n in case.nodes:
        sim.core.create_node(n)
        if (n["spec"].get("unschedulable")):
            _wait_node_tainted(sim, n["metadata"]["name"], "node.kubernetes.io/unschedulable")
        if any(c["type"] == "Ready" and c["status"] == "False" for c in n["status"]["conditions"]):
            _wait_node_tainted(sim, n["metadata"]["name"], "node.kubernetes.io/not-ready")
    for pre in case.existing:
        sim.core.create_namespaced_pod(NS, pre)
        wait_pod(sim, pre["metadata"]["name"], running)
    sim.core.create_namespaced_pod(NS, case.pod)
    pod = wait_pod(sim, "p", scheduled_or_failed)
    assert pod is not None
    chosen = pod["spec"].get("nodeName")
    if case.expect_node is not None:
        assert chosen == case.expect_node, pod.get("status")
        wait_event(sim, "p", lambda e: e.reason == "Scheduled" and bool(e.metadata.uid)
                   and e.message == f"Successfully assigned {NS}/p to {chosen}")
        return
    assert chosen is None
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"] == case.expect_message
    assert pod["status"]["phase"] == "Pending"
    failed = wait_event(sim, "p", lambda e: e.reason == "FailedScheduling"
                        and e.involved_object.uid == pod["metadata"]["uid"])
    assert failed[-1].type == "Warning" and failed[-1].message == case.expect_message


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_pending_pod_retried_when_node_untainted(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("g1", taints=[GPU_TAINT]))
    sim.core.create_namespaced_pod(NS, pod_body("p"))
    pod = wait_pod(sim, "p", scheduled_or_failed)
    assert pod is not None and not pod["spec"].get("nodeName")
    sim.core.patch_node("g1", {"spec": {"taints": []}})
    pod = wait_pod(sim, "p", running)
    assert pod is not None and pod["spec"]["nodeName"] == "g1"
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")["status"] == "True"


def test_other_scheduler_name_is_left_alone(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("other", schedulerName="my-scheduler"))
    sim.core.create_namespaced_pod(NS, pod_body("p"))
    wait_pod(sim, "p", running)  # the default one went through a full pass after the other was created
    other = sim.to_dict(sim.core.read_namespaced_pod("other", NS))
    assert not other["spec"].get("nodeName")
    assert not any(c.get("type") == "PodScheduled" for c in other["status"].get("conditions") or [])


# --- NoExecute eviction (taint manager) ---------------------------------------------------------------

def _taint(sim: Sim, name: str, taints: list[Obj]) -> float:
    start = time.monotonic()
    sim.core.patch_node(name, {"spec": {"taints": taints}})
    return start


EVICT = {"key": "maintenance", "value": "now", "effect": "NoExecute"}


def test_eviction_immediate_without_toleration(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, pod_body("victim"))
    uid = wait_pod(sim, "victim", running)["metadata"]["uid"]  # type: ignore[index]
    start = _taint(sim, "n1", [EVICT])
    wait_pod(sim, "victim", gone, timeout=5)
    assert time.monotonic() - start < 2.0
    events = wait_event(sim, "victim", lambda e: e.involved_object.uid == uid and e.reason == "TaintManagerEviction")
    assert events[0].message == f"Marking for deletion Pod {NS}/victim"


def test_eviction_after_toleration_seconds_and_forever(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    timed = {"key": "maintenance", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
    forever = {"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}
    sim.core.create_namespaced_pod(NS, pod_body("timed", tolerations=[timed]))
    sim.core.create_namespaced_pod(NS, pod_body("forever", tolerations=[forever]))
    sim.core.create_namespaced_pod(NS, pod_body("zero", tolerations=[{**timed, "tolerationSeconds": 0}]))
    for name in ("timed", "forever", "zero"):
        wait_pod(sim, name, running)
    start = _taint(sim, "n1", [EVICT])
    wait_pod(sim, "zero", gone, timeout=5)
    assert time.monotonic() - start < 2.0, "tolerationSeconds 0 evicts at once"
    assert sim.core.list_namespaced_pod(NS, field_selector="metadata.name=timed").items, "evicted too early"
    wait_pod(sim, "timed", gone, timeout=8)
    elapsed = time.monotonic() - start
    assert 2.0 <= elapsed < 5.0, elapsed
    # The timed pod is the clock: when it went, the pod tolerating forever must still be there.
    assert running(sim.to_dict(sim.core.read_namespaced_pod("forever", NS)))


def test_node_not_ready_taints_and_evicts(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    tolerant = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
    # Without tolerations of its own a pod gets DefaultTolerationSeconds' 300 s; 0 means evict at once.
    defaulted = sim.to_dict(sim.core.create_namespaced_pod(NS, pod_body("defaulted")))
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300} in defaulted["spec"]["tolerations"]
    sim.core.delete_namespaced_pod("defaulted", NS)
    short = {**tolerant, "tolerationSeconds": 0}
    sim.core.create_namespaced_pod(NS, pod_body("plain", tolerations=[short]))
    sim.core.create_namespaced_pod(NS, pod_body("tolerant", tolerations=[tolerant]))
    for name in ("plain", "tolerant"):
        wait_pod(sim, name, running)
    sim.faults.node_not_ready("n1")
    wait_pod(sim, "plain", gone, timeout=5)
    taints = {(t.key, t.effect) for t in sim.core.read_node("n1").spec.taints or []}
    assert taints == {("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute")}
    tolerant_pod = sim.to_dict(sim.core.read_namespaced_pod("tolerant", NS))
    ready = next(c for c in tolerant_pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    sim.faults.node_ready("n1")
    deadline = time.monotonic() + WAIT_S
    w = watch.Watch()
    for event in w.stream(sim.core.list_node, field_selector="metadata.name=n1", timeout_seconds=int(WAIT_S)):
        if not (event["raw_object"].get("spec") or {}).get("taints") or time.monotonic() > deadline:
            w.stop()
            break
    assert not sim.core.read_node("n1").spec.taints


def test_wait_event_sees_an_event_written_after_it_started_watching(sim: Sim) -> None:
    """The wait the placement tests use for events (tests/kit/scheduler_sim.py): an event that reaches the
    API after the wait has listed arrives through its watch."""
    import functools
    import threading

    reset(sim)
    body = {"metadata": {"generateName": "late-"}, "involvedObject": {"kind": "Pod", "namespace": NS, "name": "late"},
            "reason": "Late", "message": "written after the first list", "type": "Normal"}
    listed = threading.Event()
    original = sim.core.list_namespaced_event

    @functools.wraps(original)  # the client's watch reads the return type from the docstring
    def list_then_write(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not listed.is_set() and not kwargs.get("watch"):
            listed.set()
            sim.core.create_namespaced_event(NS, body)  # after the wait's list, before its watch
        return result

    sim.core.list_namespaced_event = list_then_write  # type: ignore[method-assign]
    try:
        events = wait_event(sim, "late", lambda e: e.reason == "Late", timeout=10)
    finally:
        del sim.core.list_namespaced_event
    assert listed.is_set() and [e.message for e in events] == ["written after the first list"]


def test_a_wait_whose_watch_version_was_compacted_lists_again(sim: Sim) -> None:
    """The test kit's `wait_pod` (tests/kit/scheduler_sim.py): the pod changes and the history is
    compacted between the wait's list and its watch, so the watch gets 410 Expired (an ERROR event,
    as a real API server sends, raised by the client). The wait must list again and see the change;
    before, the 410 escaped the wait as an ApiException."""
    reset(sim)
    sim.core.create_namespaced_pod(NS, pod_body("relist", node_selector={"pool": "none-such"}))
    calls: list[Any] = []

    def labelled(pod: Any) -> bool:
        if not calls:  # the first look, at the wait's own list: change the pod, then lose the history
            sim.core.patch_namespaced_pod("relist", NS, {"metadata": {"labels": {"seen": "yes"}}})
            sim.faults.compact_history()
        calls.append(pod)
        return pod is not None and (pod["metadata"].get("labels") or {}).get("seen") == "yes"

    pod = wait_pod(sim, "relist", labelled, timeout=5.0)
    assert pod is not None and pod["metadata"]["labels"]["seen"] == "yes"
    assert all(p is None or p.get("kind") != "Status" for p in calls), "a Status was judged as the pod"
