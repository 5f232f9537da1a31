"""Which nodes a destructive test may change on a cluster other people use (pure decisions).

A NoExecute taint evicts every pod on the node that does not tolerate it for good, whoever owns
it: another team's workload, a DaemonSet's agent (the DaemonSet controller will not put it back
while the taint is there). So on a cluster the harness did not create, a destructive test may only
touch a node where every running pod either belongs to this run or tolerates the change forever,
and only when the profile says so (`cluster.destructive: true`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.gpu.checks import Verdict
from harness.k8s.taints import toleration_matches

Obj = Mapping[str, Any]
RUN_ID_KEY = "harness.seldon.dev/run-id"  # harness.render.labels.RUN_ID_KEY (kept import-free: pure layer)


@dataclass(frozen=True)
class NodeChoice:
    free: list[str]
    # node -> why it is not free (the other pods that would be hit), for the skip reason
    busy: dict[str, str]


def _active(pod: Obj) -> bool:
    return ((pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not (pod.get("metadata") or {}).get("deletionTimestamp"))


def ours(pod: Obj, run_id: str, own_namespaces: Iterable[str] = ()) -> bool:
    meta = pod.get("metadata") or {}
    return ((meta.get("labels") or {}).get(RUN_ID_KEY) == run_id
            or meta.get("namespace") in set(own_namespaces))


def survives(pod: Obj, taint: Obj) -> bool:
    """The pod tolerates `taint` for good (a tolerationSeconds bound would still evict it)."""
    return any(toleration_matches(t, taint) and t.get("tolerationSeconds") is None
               for t in (pod.get("spec") or {}).get("tolerations") or [])


def nodes_free_of_others(candidates: Iterable[str], pods: Iterable[Obj], run_id: str, taint: Obj,
                         own_namespaces: Iterable[str] = ()) -> NodeChoice:
    """The candidate nodes where `taint` hits nothing that is not this run's."""
    hit: dict[str, list[str]] = {name: [] for name in candidates}
    owned = list(own_namespaces)
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in hit or not _active(pod) or ours(pod, run_id, owned) or survives(pod, taint):
            continue
        meta = pod.get("metadata") or {}
        hit[node].append(f"{meta.get('namespace')}/{meta.get('name')}")
    free = [n for n, others in hit.items() if not others]
    busy = {n: ", ".join(sorted(others)[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            for n, others in hit.items() if others}
    return NodeChoice(free, busy)


def destructive_refusal(provider: str, destructive: bool) -> str | None:
    """Why a destructive test must not run at all here, or None when it may (on a free node)."""
    if provider in ("sim", "kind") or destructive:
        return None
    return ("changes nodes of a cluster the harness did not create: set cluster.destructive: true in the "
            "profile to allow it (only nodes running nothing of anyone else are used)")


def gpu_diagnostic_allowed(provider: str, opted: bool | None) -> bool:
    """The GPU-use diagnostic (a no-GPU pod with NVIDIA_VISIBLE_DEVICES=all) widens that pod's access
    on a runtime that honours the variable: by default only on clusters the harness created."""
    return opted if opted is not None else provider in ("sim", "kind")


def gpu_isolation_finding(seen: list[str], node: str, provider: str) -> Verdict:
    """A no-request pod that sees GPUs is an isolation finding, never a pass of anything. On a
    cluster the harness built (sim, kind: the runtime's defaults are the harness's) it is noted;
    on anyone else's cluster it fails."""
    reason = (f"isolation: a pod on {node} that requested no GPU saw {len(seen)} GPU(s) by setting "
              "NVIDIA_VISIBLE_DEVICES=all; any pod there can use the node's GPUs (set "
              "accept-nvidia-visible-devices-envvar-when-unprivileged = false in the NVIDIA container runtime)")
    built = provider in ("sim", "kind")
    return Verdict("isolation.gpu-without-request", built,
                   reason + (" [cluster built by the harness: noted]" if built else ""))
