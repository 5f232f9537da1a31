"""Take a node for a destructive test without racing anyone for it.

Checking a node for other people's pods and then tainting it NoExecute leaves a window: a pod the
scheduler binds in between is evicted. So the node is first closed to everyone but this run (a
NoSchedule taint, which evicts nothing), and only when the scheduler has provably seen the taint (a
canary pod aimed at that node alone is refused naming it) does the decisive look happen: anything of
anyone else on the node then ends the test (skip) and the node is restored. Otherwise the caller may
taint NoExecute; `evicted()` names every pod that went, DaemonSet pods included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import render
from harness.checks.shared_nodes import nodes_free_of_others
from harness.config import Profile
from harness.k8s.conditions import condition, scheduled_or_unschedulable
from harness.kube import Kube, NodeGuard

Obj = dict[str, Any]
CANARY_ATTEMPTS = 3


@dataclass
class NodeHold:
    node: str
    skip: str | None = None  # why the node must not be used after all (it has been restored)
    residents: list[Obj] = field(default_factory=list)  # every pod on the node at the decisive look


def _taint_text(taint: Obj) -> str:
    return f"untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"


def _canary(profile: Profile, name: str, namespace: str, node: str) -> Obj:
    """A pod only `node` could take, refused there by nothing but the hold taint."""
    obj = render.intruder_pod(profile, name, namespace, node_name=node)
    taint = profile.gpu.taint
    obj["spec"]["tolerations"] = [{"key": taint.key, "operator": "Equal", "value": taint.value,
                                   "effect": taint.effect}]
    return obj


def scheduler_sees(kube: Kube, profile: Profile, node: str, namespace: str, hold: Obj) -> str | None:
    """Wait until the scheduler refuses a canary on `node` naming `hold`; None when it did, else why not."""
    last = "no canary was decided"
    for attempt in range(CANARY_ATTEMPTS):
        name = f"hold-canary-{attempt}"
        kube.create(_canary(profile, name, namespace, node))
        try:
            pod = kube.wait_for("v1", "Pod", name, namespace, scheduled_or_unschedulable,
                                timeout=profile.timeouts.pod_schedule_s,
                                what=f"the scheduler's decision on canary pod {name} for node {node}")
            if not (pod or {}).get("spec", {}).get("nodeName"):
                message = str((condition(pod, "PodScheduled") or {}).get("message") or "")
                if _taint_text(hold) in message:
                    return None
                last = f"canary {name} was refused for another reason: {message}"
            else:
                last = f"canary {name} was bound to {node}: the scheduler had not seen the NoSchedule taint yet"
        finally:
            kube.delete("v1", "Pod", name, namespace, wait=True, timeout=profile.timeouts.delete_s)
    return last


def hold_node(kube: Kube, guard: NodeGuard, profile: Profile, node: str, *, namespace: str, run_id: str,
              taint: Obj, shared: bool) -> NodeHold:
    """Close `node` with a NoSchedule twin of `taint`, wait until the scheduler has seen it, then look
    again. On a `shared` cluster any pod of anyone else that `taint` would evict gives a skip reason
    (and the node is restored at once); on a cluster the harness built every pod is the run's."""
    hold = {"key": taint["key"], "value": taint.get("value", ""), "effect": "NoSchedule"}
    guard.add_taint(node, hold)
    unseen = scheduler_sees(kube, profile, node, namespace, hold)
    if unseen is not None:
        problems = guard.restore_all()
        return NodeHold(node, f"could not show that the scheduler sees the NoSchedule taint on {node}: {unseen}"
                        + (f" (restore: {'; '.join(problems)})" if problems else ""))
    residents = kube.list("v1", "Pod", field_selector=f"spec.nodeName={node}")
    choice = nodes_free_of_others([node], residents, run_id, taint, own_namespaces=[namespace])
    if shared and not choice.free:
        problems = guard.restore_all()
        return NodeHold(node, f"at the second look, after closing {node} to new pods, it runs others' pods that the "
                        f"NoExecute taint would evict ({choice.busy[node]}); the node was restored"
                        + (f" (restore: {'; '.join(problems)})" if problems else ""), residents)
    return NodeHold(node, None, residents)


def evicted(before: Iterable[Obj], after: Iterable[Obj]) -> list[str]:
    """namespace/name of every pod in `before` that is gone (or going) in `after`, matched by uid."""
    still = {(p.get("metadata") or {}).get("uid") for p in after
             if not (p.get("metadata") or {}).get("deletionTimestamp")}
    gone = []
    for pod in before:
        meta = pod.get("metadata") or {}
        if meta.get("uid") not in still:
            owner = next((o.get("kind") for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
            gone.append(f"{meta.get('namespace')}/{meta.get('name')}" + (f" ({owner})" if owner else ""))
    return sorted(gone)
