"""Workload controllers: StatefulSet, Deployment and DaemonSet make pods; the scheduler places them.

- StatefulSet: pods `<name>-<ordinal>` with `statefulset.kubernetes.io/pod-name`,
  `apps.kubernetes.io/pod-index` and `controller-revision-hash` labels, hostname/subdomain, one PVC
  volume per volumeClaimTemplate (claims are not created: the sim has no storage); OrderedReady
  creates ordinal i only when 0..i-1 are Running and Ready, Parallel creates all; scale-down removes
  the highest ordinals; a template change replaces pods from the highest ordinal, one at a time,
  once the others are Ready (RollingUpdate with partition; OnDelete leaves them).
- Deployment: pods `<name>-<pod-template-hash>-<5 chars>` owned directly by the Deployment (no
  ReplicaSet objects); a template change creates the new pods and removes the old ones when the
  new ones are Ready (Recreate removes the old ones first). Status carries the Available and
  Progressing conditions with the real reasons and messages.
- DaemonSet: one pod per node the pod template tolerates (NoSchedule/NoExecute) and matches
  (nodeSelector, required affinity), with the tolerations the real controller adds and a required
  node affinity on `metadata.name` that the default scheduler honours (as since Kubernetes 1.12).

Failed or Succeeded pods of a controller are deleted and replaced, as the real controllers do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from harness.k8s.taints import first_untolerated
from harness.sim.contracts import ApiError, Obj, Store
from harness.sim.scheduler import (
    is_terminated,
    matches_node_selector_and_affinity,
    node_name_of,
    now_rfc3339,
)

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes' rand.SafeEncodeString uses

DAEMONSET_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)


def safe_encode(data: str, length: int) -> str:
    digest = hashlib.sha256(data.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def template_hash(template: Obj) -> str:
    return safe_encode(json.dumps(template, sort_keys=True), 10)


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def owner_reference(owner: Obj) -> dict[str, Any]:
    meta = _meta(owner)
    return {"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner.get("kind"), "name": meta.get("name"),
            "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}


def owned_by(pods: Iterable[Obj], owner: Obj) -> list[Obj]:
    uid = _meta(owner).get("uid")
    ns = _meta(owner).get("namespace")
    return [p for p in pods if _meta(p).get("namespace") == ns
            and any(r.get("uid") == uid and r.get("controller") for r in _meta(p).get("ownerReferences") or [])]


def _healthy(pod: Obj) -> bool:
    """StatefulSet's isHealthy: running and ready, and not being deleted."""
    return pod_ready(pod) and not _meta(pod).get("deletionTimestamp")


def pod_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def build_pod(owner: Obj, name: str, labels: dict[str, str], spec_overrides: dict[str, Any] | None = None) -> Obj:
    template: dict[str, Any] = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    spec.update(spec_overrides or {})
    meta: dict[str, Any] = {
        "name": name, "namespace": _meta(owner).get("namespace"),
        "labels": {**(tmeta.get("labels") or {}), **labels},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


_COMPONENT = {"StatefulSet": "statefulset-controller", "DaemonSet": "daemonset-controller",
              "Deployment": "deployment-controller", "Job": "job-controller"}


def _pod_event(store: Store, owner: Obj | None, pod: Obj, created: bool) -> None:
    """The controller's SuccessfulCreate / SuccessfulDelete event, worded as the real controllers do."""
    if owner is None or owner.get("kind") == "Deployment":
        return  # Deployments report ScalingReplicaSet instead (their ReplicaSets are not simulated)
    kind, name, pod_name = owner.get("kind"), _meta(owner).get("name"), _meta(pod).get("name")
    if kind == "StatefulSet":
        message = f"{'create' if created else 'delete'} Pod {pod_name} in StatefulSet {name} successful"
    else:
        message = f"{'Created' if created else 'Deleted'} pod: {pod_name}"
    store.record_event(owner, "SuccessfulCreate" if created else "SuccessfulDelete", message, "Normal",
                       component=_COMPONENT.get(str(kind), ""))


def _create(store: Store, pod: Obj, owner: Obj | None = None) -> bool:
    """Create a workload's pod; False when admission refused it (there is no such pod then)."""
    try:
        store.create(pod)
    except ApiError as exc:
        if exc.code == 409:
            return True
        if owner is None:
            raise
        # An admission refusal (a missing RuntimeClass, a terminating namespace) leaves no pod: the
        # controller says so in a Warning event on its workload and tries again on its next sync, as
        # kubernetes/kubernetes pkg/controller/statefulset/stateful_pod_control.go (recordPodEvent) and
        # daemon/daemon_controller.go do (commit fd18d233ad4113d7f0782b62534ae405ecc5f027).
        kind, name = owner.get("kind"), _meta(owner).get("name")
        message = (f"create Pod {_meta(pod).get('name')} in StatefulSet {name} failed error: {exc.message}"
                   if kind == "StatefulSet" else f"Error creating: {exc.message}")
        # Said once: counting each retry would be a write, and every write wakes the controllers again.
        said = any(e.get("reason") == "FailedCreate" and e.get("message") == message
                   and (e.get("involvedObject") or {}).get("uid") == _meta(owner).get("uid")
                   for e in store.list("v1", "Event", _meta(owner).get("namespace")))
        if not said:
            store.record_event(owner, "FailedCreate", message, "Warning", component=_COMPONENT.get(str(kind), ""))
        return False
    _pod_event(store, owner, pod, True)
    return True


def _delete(store: Store, pod: Obj, owner: Obj | None = None) -> None:
    if _meta(pod).get("deletionTimestamp"):
        return  # already terminating: deleting again changes nothing, and the event was said
    try:
        gone = store.delete("v1", "Pod", str(_meta(pod)["name"]), _meta(pod).get("namespace"))
    except ApiError as exc:
        if exc.code != 404:
            raise
        return
    if gone is not None:
        _pod_event(store, owner, pod, False)


def _write_status(store: Store, obj: Obj, status: dict[str, Any]) -> None:
    """Merge `status` into the object's status, unless every field already says so: the no-op patch
    would change nothing in the store either, but it cost a locked copy and merge on every pass."""
    current = obj.get("status") or {}
    if all(current.get(key) == value for key, value in status.items()):
        return
    meta = _meta(obj)
    try:
        store.patch(str(obj.get("apiVersion")), str(obj.get("kind")), str(meta["name"]), meta.get("namespace"),
                    {"status": status}, "merge", subresource="status")
    except ApiError as exc:
        if exc.code != 404:
            raise


def _condition(obj: Obj, ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """A workload condition that keeps its timestamps while its status does not change."""
    stamp = now_rfc3339()
    conditions = (obj.get("status") or {}).get("conditions") or []
    old: dict[str, Any] = next((c for c in conditions if c.get("type") == ctype), {})
    same = old.get("status") == status and old.get("reason") == reason and old.get("message") == message
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": old.get("lastUpdateTime", stamp) if same else stamp,
            "lastTransitionTime": old.get("lastTransitionTime", stamp) if old.get("status") == status else stamp}


def _replace_terminated(store: Store, pods: list[Obj], owner: Obj | None = None,
                        keep_terminating: bool = False) -> list[Obj]:
    """Delete finished pods; return the active ones. A pod being deleted (graceful termination) is
    not active (ReplicaSet's and DaemonSet's FilterActivePods, kubernetes/kubernetes
    pkg/controller/controller_utils.go, commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282), so a
    replacement is made at once; a StatefulSet keeps it (`keep_terminating`): its name blocks the
    ordinal until the kubelet has removed it."""
    alive = []
    for p in pods:
        if is_terminated(p):
            _delete(store, p, owner)
        elif keep_terminating or not _meta(p).get("deletionTimestamp"):
            alive.append(p)
    return alive


# --- StatefulSet -------------------------------------------------------------------------------------

def _ordinal(pod: Obj, name: str) -> int | None:
    suffix = str(_meta(pod).get("name", ""))[len(name) + 1:]
    return int(suffix) if suffix.isdigit() else None


class _WorkloadController:
    """One pass: every object of `kind` synced against one listing of all pods."""

    name = ""
    kind = ""

    def reconcile(self, store: Store, now: float) -> float | None:
        pods = store.list("v1", "Pod")
        for obj in store.list("apps/v1", self.kind):
            self._sync(store, obj, pods)
        return None

    def close(self) -> None:
        return None

    def _sync(self, store: Store, obj: Obj, all_pods: list[Obj]) -> None:
        raise NotImplementedError


class StatefulSetController(_WorkloadController):
    name = "statefulset-controller"
    kind = "StatefulSet"

    def _sync(self, store: Store, sts: Obj, all_pods: list[Obj]) -> None:
        meta, spec = _meta(sts), sts.get("spec") or {}
        name = str(meta["name"])
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{template_hash(spec.get('template') or {})}"
        by_ordinal: dict[int, Obj] = {}
        for p in _replace_terminated(store, owned_by(all_pods, sts), sts, keep_terminating=True):
            i = _ordinal(p, name)
            if i is not None:
                by_ordinal[i] = p
        for i in sorted((i for i in by_ordinal if i >= replicas), reverse=True):
            _delete(store, by_ordinal.pop(i), sts)
        parallel = spec.get("podManagementPolicy") == "Parallel"
        for i in range(replicas):
            if i in by_ordinal:
                continue
            if not parallel and not all(j in by_ordinal and _healthy(by_ordinal[j]) for j in range(i)):
                break
            pod = self._pod(sts, i, revision)
            if not _create(store, pod, sts):
                break  # the next sync (any change in the cluster) tries again
            by_ordinal[i] = pod
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
            stale = [i for i, p in by_ordinal.items() if i >= partition
                     and (_meta(p).get("labels") or {}).get("controller-revision-hash") != revision]
            others_ready = all(pod_ready(p) for i, p in by_ordinal.items() if i not in stale)
            if stale and (others_ready or parallel):
                _delete(store, by_ordinal.pop(max(stale)), sts)
        pods = list(by_ordinal.values())
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if (_meta(p).get("labels") or {}).get("controller-revision-hash") == revision)
        previous = (sts.get("status") or {}).get("currentRevision") or revision
        current_rev = revision if updated == replicas and ready == replicas else previous
        current = sum(1 for p in pods if (_meta(p).get("labels") or {}).get("controller-revision-hash") == current_rev)
        _write_status(store, sts, {
            "observedGeneration": meta.get("generation", 1), "replicas": len(pods), "readyReplicas": ready,
            "availableReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
            "currentRevision": current_rev, "updateRevision": revision, "collisionCount": 0,
        })

    @staticmethod
    def _pod(sts: Obj, i: int, revision: str) -> Obj:
        spec = sts.get("spec") or {}
        pod_name = f"{_meta(sts)['name']}-{i}"
        overrides: dict[str, Any] = {"hostname": pod_name}
        if spec.get("serviceName"):
            overrides["subdomain"] = spec["serviceName"]
        pod = build_pod(sts, pod_name, {"statefulset.kubernetes.io/pod-name": pod_name,
                                        "apps.kubernetes.io/pod-index": str(i), "controller-revision-hash": revision},
                        overrides)
        volumes = pod["spec"].setdefault("volumes", [])
        have = {v.get("name") for v in volumes}
        for vct in spec.get("volumeClaimTemplates") or []:
            claim = str(_meta(vct).get("name", ""))
            if claim and claim not in have:
                volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{pod_name}"}})
        if not volumes:
            del pod["spec"]["volumes"]
        return pod


# --- Deployment --------------------------------------------------------------------------------------

def _max_unavailable(spec: dict[str, Any], replicas: int) -> int:
    value = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


class DeploymentController(_WorkloadController):
    name = "deployment-controller"
    kind = "Deployment"

    def _sync(self, store: Store, deploy: Obj, all_pods: list[Obj]) -> None:
        meta, spec = _meta(deploy), deploy.get("spec") or {}
        name = str(meta["name"])
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        rs_name = f"{name}-{pod_hash}"
        pods = _replace_terminated(store, owned_by(all_pods, deploy))
        new = [p for p in pods if (_meta(p).get("labels") or {}).get("pod-template-hash") == pod_hash]
        old = [p for p in pods if p not in new]
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        before = len(new)
        if recreate and old:
            self._drop_old(store, deploy, old)
            old = []
        else:
            taken = {str(_meta(p).get("name")) for p in all_pods}
            uid = meta.get("uid")
            for n in range(1000):
                if len(new) >= replicas:
                    break
                pod_name = f"{rs_name}-{safe_encode(f'{uid}/{pod_hash}/{n}', 5)}"
                if pod_name in taken:
                    continue
                pod = build_pod(deploy, pod_name, {"pod-template-hash": pod_hash})
                _create(store, pod)
                taken.add(pod_name)
                new.append(pod)
            # Surplus: unready first, then the newest.
            surplus = sorted(new, key=lambda p: (pod_ready(p), _meta(p).get("creationTimestamp") or ""))
            for p in surplus[: max(len(new) - replicas, 0)]:
                _delete(store, p)
                new.remove(p)
            if old and sum(1 for p in new if pod_ready(p)) >= replicas:
                self._drop_old(store, deploy, old)
                old = []
        if len(new) != before:
            direction = "up" if len(new) > before else "down"
            store.record_event(deploy, "ScalingReplicaSet", f"Scaled {direction} replica set {rs_name} to {len(new)}",
                               "Normal", component="deployment-controller")
        live = new + old
        available = sum(1 for p in live if pod_ready(p))
        updated_ready = sum(1 for p in new if pod_ready(p))
        minimum = replicas - _max_unavailable(spec, replicas)
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation", 1), "replicas": len(live), "updatedReplicas": len(new),
            "readyReplicas": available, "availableReplicas": available,
            "unavailableReplicas": max(replicas - available, 0) or None,
        }
        conditions = [
            _condition(deploy, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if available >= minimum else
            _condition(deploy, "Available", "False", "MinimumReplicasUnavailable",
                       "Deployment does not have minimum availability."),
            _condition(deploy, "Progressing", "True", "NewReplicaSetAvailable",
                       f'ReplicaSet "{rs_name}" has successfully progressed.')
            if updated_ready >= replicas and not old else
            _condition(deploy, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'),
        ]
        status["conditions"] = conditions
        _write_status(store, deploy, status)


    @staticmethod
    def _drop_old(store: Store, deploy: Obj, old: list[Obj]) -> None:
        hashes = sorted({str((_meta(p).get("labels") or {}).get("pod-template-hash", "")) for p in old})
        for p in old:
            _delete(store, p)
        for h in hashes:
            store.record_event(deploy, "ScalingReplicaSet", f"Scaled down replica set {_meta(deploy)['name']}-{h} to 0",
                               "Normal", component="deployment-controller")


# --- DaemonSet ---------------------------------------------------------------------------------------

def daemon_pod_template(ds: Obj) -> Obj:
    """The DaemonSet's pod template with the tolerations the real controller always adds."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    spec = template.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    keys = {(t.get("key"), t.get("effect")) for t in tolerations}
    extra = list(DAEMONSET_TOLERATIONS)
    if spec.get("hostNetwork"):
        extra.append({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"})
    tolerations += [t for t in extra if (t["key"], t["effect"]) not in keys]
    spec["tolerations"] = tolerations
    return template


def should_run_on(template: Obj, node: Obj) -> bool:
    pod = {"spec": template.get("spec") or {}}
    taints = (node.get("spec") or {}).get("taints") or []
    if first_untolerated(pod["spec"].get("tolerations") or [], taints) is not None:
        return False
    return matches_node_selector_and_affinity(pod, node)


def should_continue_running(template: Obj, node: Obj) -> bool:
    """A daemon pod already on a node stays while it tolerates the node's NoExecute taints."""
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = (template.get("spec") or {}).get("tolerations") or []
    return first_untolerated(tolerations, taints, ("NoExecute",)) is None


def _daemon_target(pod: Obj) -> str:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return str((pod.get("spec") or {}).get("nodeName") or "")


class DaemonSetController:
    name = "daemonset-controller"

    def reconcile(self, store: Store, now: float) -> float | None:
        pods = store.list("v1", "Pod")
        nodes = store.list("v1", "Node")
        for ds in store.list("apps/v1", "DaemonSet"):
            self._sync(store, ds, nodes, pods)
        return None

    def close(self) -> None:
        return None

    def _sync(self, store: Store, ds: Obj, nodes: list[Obj], all_pods: list[Obj]) -> None:
        meta = _meta(ds)
        template = daemon_pod_template(ds)
        revision = template_hash((ds.get("spec") or {}).get("template") or {})
        eligible = {node_name_of(n) for n in nodes if should_run_on(template, n)}
        # Pods on nodes that no longer qualify stay while they tolerate the NoExecute taints (as in
        # NodeShouldRunDaemonPod's shouldContinueRunning); they count as misscheduled.
        keep = {node_name_of(n) for n in nodes if should_continue_running(template, n)
                and matches_node_selector_and_affinity({"spec": template.get("spec") or {}}, n)}
        by_node: dict[str, Obj] = {}
        misscheduled = 0
        for p in _replace_terminated(store, owned_by(all_pods, ds), ds):
            target = _daemon_target(p)
            stale = (_meta(p).get("labels") or {}).get("controller-revision-hash") != revision
            if target in by_node or stale or (target not in eligible and target not in keep):
                _delete(store, p, ds)
                continue
            if target not in eligible:
                misscheduled += 1
            by_node[target] = p
        taken = {str(_meta(p).get("name")) for p in all_pods}
        ds_name, uid = meta["name"], meta.get("uid")
        for node in sorted(eligible - set(by_node)):
            pod_name = ""
            for n in range(1000):
                pod_name = f"{ds_name}-{safe_encode(f'{uid}/{node}/{n}', 5)}"
                if pod_name not in taken:
                    break
            taken.add(pod_name)
            pod = self._pod(ds, template, pod_name, node, revision)
            _create(store, pod, ds)
            by_node[node] = pod
        pods = [p for target, p in by_node.items() if target in eligible]
        scheduled = sum(1 for p in pods if (p.get("spec") or {}).get("nodeName"))
        ready = sum(1 for p in pods if pod_ready(p))
        _write_status(store, ds, {
            "observedGeneration": meta.get("generation", 1), "desiredNumberScheduled": len(eligible),
            "currentNumberScheduled": scheduled, "numberMisscheduled": misscheduled, "numberReady": ready,
            "numberAvailable": ready, "updatedNumberScheduled": scheduled,
            "numberUnavailable": max(len(eligible) - ready, 0) or None,
        })

    @staticmethod
    def _pod(ds: Obj, template: Obj, pod_name: str, node: str, revision: str) -> Obj:
        spec = copy.deepcopy(template.get("spec") or {})
        affinity = spec.setdefault("affinity", {})
        node_affinity = affinity.setdefault("nodeAffinity", {})
        # The real controller replaces the required terms with one that names the node.
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        pod = build_pod(ds, pod_name, {"controller-revision-hash": revision,
                                       "pod-template-generation": str(_meta(ds).get("generation", 1))})
        pod["spec"] = spec
        return pod
