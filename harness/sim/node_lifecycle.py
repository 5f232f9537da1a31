"""Node lifecycle: condition taints, the NoExecute taint manager, and node faults.

- A node whose Ready condition is False carries `node.kubernetes.io/not-ready` with NoSchedule and
  NoExecute effects; Unknown carries `node.kubernetes.io/unreachable`; `spec.unschedulable`
  carries `node.kubernetes.io/unschedulable:NoSchedule`. Ready again removes them.
- Pods bound to a node that does not exist are deleted after PodGC's 40 s quarantine.
- Pods on a node that is not Ready get their Ready condition set to False (as the node controller's
  MarkPodsNotReady does).
- NoExecute eviction follows the taint manager: an untolerated NoExecute taint evicts now; if every
  NoExecute taint is tolerated, the smallest `tolerationSeconds` among the matching tolerations
  (counted from when the taint was first seen on the pod's node) decides when; tolerations without
  `tolerationSeconds` tolerate forever; zero or negative seconds evict now. Eviction records the
  `TaintManagerEviction` event "Marking for deletion Pod ns/name", sets the DisruptionTarget
  condition and deletes the pod. Timers are the runtime's wake-ups, never sleeps.
"""

from __future__ import annotations

import time
from typing import Any

from harness.k8s.taints import toleration_matches
from harness.sim.api.deletion import DeleteOptions
from harness.sim.contracts import ApiError, Obj, Store
from harness.sim.scheduler import is_terminated, node_name_of, now_rfc3339

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
_MANAGED = (NOT_READY, UNREACHABLE, UNSCHEDULABLE)
ORPHAN_QUARANTINE_S = 40.0  # PodGC's quarantine before deleting pods of a node that is gone


def ready_status(node: Obj) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "Unknown"))
    return "Unknown"


def desired_condition_taints(node: Obj) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ready = ready_status(node)
    key = NOT_READY if ready == "False" else UNREACHABLE if ready == "Unknown" else None
    if key:
        out += [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute"}]
    if (node.get("spec") or {}).get("unschedulable"):
        out.append({"key": UNSCHEDULABLE, "effect": "NoSchedule"})
    return out


def reconcile_taints(node: Obj) -> list[dict[str, Any]] | None:
    """The node's new taint list, or None when it already carries exactly the managed taints it should."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    desired = desired_condition_taints(node)
    have = {(t.get("key"), t.get("effect")) for t in taints if t.get("key") in _MANAGED}
    want = {(t["key"], t["effect"]) for t in desired}
    if have == want:
        return None
    kept = [t for t in taints if t.get("key") not in _MANAGED or (t.get("key"), t.get("effect")) in want]
    for t in desired:
        if (t["key"], t["effect"]) not in have:
            entry = dict(t)
            if t["effect"] == "NoExecute":
                entry["timeAdded"] = now_rfc3339()
            kept.append(entry)
    return kept


def eviction_delay(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]]) -> float | None:
    """Seconds until the taint manager evicts a pod: 0 now, None never (all tolerated forever)."""
    no_execute = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_execute:
        return None
    used: list[dict[str, Any]] = []
    for taint in no_execute:
        matching = [tol for tol in tolerations if toleration_matches(tol, taint)]
        if not matching:
            return 0.0
        used.extend(matching)
    seconds = [float(tol["tolerationSeconds"]) for tol in used if tol.get("tolerationSeconds") is not None]
    if not seconds:
        return None
    return max(0.0, min(seconds))


class NodeLifecycleController:
    name = "node-lifecycle-controller"

    def __init__(self, store: Store | None = None, orphan_quarantine_s: float = ORPHAN_QUARANTINE_S) -> None:
        self._store = store
        self.orphan_quarantine_s = orphan_quarantine_s
        # (pod uid, node name) -> monotonic time its NoExecute taints were first seen (the taint
        # manager keeps the earliest scheduled eviction while the pod stays tolerated).
        self._first_seen: dict[tuple[str, str], float] = {}

    def reconcile(self, store: Store, now: float) -> float | None:
        nodes = {node_name_of(n): n for n in store.list("v1", "Node")}
        for name, node in list(nodes.items()):
            new_taints = reconcile_taints(node)
            if new_taints is not None:
                try:
                    nodes[name] = store.patch("v1", "Node", name, None, {"spec": {"taints": new_taints}}, "merge")
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    nodes.pop(name)
        wake: float | None = None
        seen: set[tuple[str, str]] = set()
        for pod in store.list("v1", "Pod"):
            spec = pod.get("spec") or {}
            bound_to = str(spec.get("nodeName") or "")
            found = nodes.get(bound_to)
            if bound_to and found is None:
                orphan_key = (str(pod["metadata"].get("uid", "")), "")
                seen.add(orphan_key)
                due = self._first_seen.setdefault(orphan_key, now) + self.orphan_quarantine_s
                if due <= now:
                    self._collect_orphan(store, pod)
                else:
                    wake = due if wake is None else min(wake, due)
                continue
            if found is None or is_terminated(pod):
                continue
            node = found
            if ready_status(node) != "True":
                self._mark_not_ready(store, pod)
            taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
            delay = eviction_delay(taints, spec.get("tolerations") or [])
            if delay is None:
                continue
            key = (str(pod["metadata"].get("uid", "")), node_name_of(node))
            seen.add(key)
            # The moment this pass saw the taint, not the pass's start: a taint committed while the pass
            # was already running must not be credited with time it did not exist.
            start = self._first_seen.setdefault(key, max(now, time.monotonic()))
            due = start + delay
            if due <= now:
                self._evict(store, pod)
                continue
            wake = due if wake is None else min(wake, due)
        for key in set(self._first_seen) - seen:
            del self._first_seen[key]
        return wake

    def close(self) -> None:
        return None

    def register_faults(self, faults: Any) -> None:
        """`faults.node_not_ready(node)` / `faults.node_ready(node)` flip the node's Ready condition."""
        store = self._store
        if store is None:
            return
        faults.register("node_not_ready", lambda node: set_node_ready(store, node, False))
        faults.register("node_ready", lambda node: set_node_ready(store, node, True))

    def _mark_not_ready(self, store: Store, pod: Obj) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return
        stamp = now_rfc3339()
        updated = [
            {**c, "status": "False", "lastTransitionTime": stamp} if c.get("type") == "Ready" else c
            for c in conditions
        ]
        meta = pod["metadata"]
        try:
            store.patch("v1", "Pod", meta["name"], meta.get("namespace"), {"status": {"conditions": updated}},
                        "merge", subresource="status")
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _collect_orphan(self, store: Store, pod: Obj) -> None:
        # PodGC force-deletes (grace 0): no kubelet is left to end the pod's containers
        # (kubernetes/kubernetes pkg/controller/podgc/gc_controller.go, gcOrphaned, commit
        # 008b3652959ca58af8be3fb5b6ecfe9ae7638282).
        meta = pod["metadata"]
        try:
            store.delete("v1", "Pod", meta["name"], meta.get("namespace"), options=DeleteOptions(grace_period=0))
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _evict(self, store: Store, pod: Obj) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        store.record_event(pod, "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}", "Normal",
                           component="taint-eviction-controller")
        old = (pod.get("status") or {}).get("conditions") or []
        conditions = [c for c in old if c.get("type") != "DisruptionTarget"]
        conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                           "message": "Taint manager: deleting due to NoExecute taint",
                           "lastTransitionTime": now_rfc3339()})
        try:
            store.patch("v1", "Pod", name, ns, {"status": {"conditions": conditions}}, "merge", subresource="status")
            store.delete("v1", "Pod", name, ns)
        except ApiError as exc:
            if exc.code != 404:
                raise


def set_node_ready(store: Store, name: str, ready: bool, reason: str | None = None, message: str | None = None) -> Obj:
    """Fault hook: flip a node's Ready condition (the lifecycle controller then taints or untaints it)."""
    node = store.get("v1", "Node", name)
    if node is None:
        raise ApiError(404, "NotFound", f'nodes "{name}" not found')
    stamp = now_rfc3339()
    conditions = []
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            changed = (c.get("status") == "True") != ready
            c = {
                **c,
                "status": "True" if ready else "False",
                "reason": reason or ("KubeletReady" if ready else "KubeletNotReady"),
                "message": message or ("kubelet is posting ready status" if ready
                                       else "container runtime is down (simulated fault)"),
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp if changed else c.get("lastTransitionTime", stamp),
            }
        conditions.append(c)
    return store.patch("v1", "Node", name, None, {"status": {"conditions": conditions}}, "merge", subresource="status")
