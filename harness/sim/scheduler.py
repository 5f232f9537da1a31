"""The simulated kube-scheduler: a pure placement core and the controller that binds pods.

Semantics follow kube-scheduler v1.32's default profile, filter plugins in their real order, and a
node stops at its first failing plugin (as the framework's RunFilterPlugins does):

  NodeUnschedulable  "node(s) were unschedulable" unless the pod tolerates
                     node.kubernetes.io/unschedulable:NoSchedule (UnschedulableAndUnresolvable)
  TaintToleration    first untolerated NoSchedule/NoExecute taint in node order:
                     "node(s) had untolerated taint {%s: %s}" (key, value) (UnschedulableAndUnresolvable)
  NodeAffinity       nodeSelector AND required node affinity:
                     "node(s) didn't match Pod's node affinity/selector" (UnschedulableAndUnresolvable);
                     its PreFilter keeps only nodes pinned by matchFields metadata.name In, the rest
                     read "node(s) didn't satisfy plugin(s) [NodeAffinity]" (AbsentNodesStatus, 1.31+)
  NodeResourcesFit   "Too many pods", "Insufficient cpu", "Insufficient memory",
                     "Insufficient ephemeral-storage", "Insufficient <extended resource>"; all reasons
                     of a node are kept; Unresolvable when the request exceeds the node's allocatable.

The summary is FitError.Error() (pkg/scheduler/framework/types.go): "0/%v nodes are available:" then
" %v." with the histogram entries "<count> <reason>" sorted as strings and joined by ", ", then
" %v." with the PostFilter message. DefaultPreemption's PostFilter prefixes "preemption: " to the
evaluator's own FitError, in which nodes whose status was UnschedulableAndUnresolvable read
"Preemption is not helpful for scheduling" and the others "No preemption victims found for incoming
pod" (the sim has no lower-priority victims); that is why real events end in "..". Wording checked
against kubernetes/kubernetes (plugins tainttoleration, nodeaffinity, nodeunschedulable,
noderesources/fit.go, framework/types.go, framework/preemption) and events captured from clusters.

After NodeResourcesFit comes InterPodAffinity (required terms): "node(s) didn't match pod affinity
rules", "node(s) didn't match pod anti-affinity rules", "node(s) didn't satisfy existing pods
anti-affinity rules".

PodTopologySpread (hard constraints) runs just before it: "node(s) didn't match pod topology spread
constraints" (and "... (missing required label)").

Known simplifications: no preemption (higher-priority pods do not evict others), no
ScheduleAnyway spreading or preferred pod affinity in scoring, no matchLabelKeys, no volume
plugins; scoring is lexicographic rather than a weighted sum (fewest untolerated PreferNoSchedule
taints, highest preferred-affinity weight, least allocated with the scheduler's non-zero default
requests, then node name).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from harness.k8s.affinity import (
    label_selector_matches,
    preferred_weight,
    required_terms,
    selects_node,
)
from harness.k8s.conditions import condition as pod_condition
from harness.k8s.quantity import quantity_or_zero
from harness.k8s.taints import first_untolerated
from harness.k8s.taints import tolerates as tolerated_by
from harness.sim.contracts import ApiError, Obj, Store

DEFAULT_SCHEDULER = "default-scheduler"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
# NodeAffinity's PreFilter narrows to the nodes named by `matchFields: metadata.name In [...]` (how
# DaemonSet pods are pinned); every other node gets this status without running the filters.
REASON_PREFILTER_AFFINITY = "node(s) didn't satisfy plugin(s) [NodeAffinity]"
REASON_AFFINITY_CONFLICT = "pod affinity terms conflict"
# PodTopologySpread (plugins/podtopologyspread/filtering.go), whenUnsatisfiable DoNotSchedule only.
REASON_SPREAD = "node(s) didn't match pod topology spread constraints"
REASON_SPREAD_LABEL = REASON_SPREAD + " (missing required label)"
# InterPodAffinity (plugins/interpodaffinity/filtering.go), checked in this order.
REASON_POD_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NO_NODES = "no nodes available to schedule pods"

# Requests the scheduler assumes for scoring when a container sets none (schedutil defaults).
_SCORE_DEFAULT_CPU = Fraction(1, 10)
_SCORE_DEFAULT_MEMORY = Fraction(200 * 2**20)


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def node_name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


# --- taints and tolerations -----------------------------------------------------------------------

def taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"


# --- node affinity ------------------------------------------------------------------------------------

def prefilter_node_names(pod: Obj) -> set[str] | None:
    """NodeAffinity PreFilter: the node names every required term pins with metadata.name In, or
    None when some term pins nothing (terms are ORed, so then every node stays a candidate)."""
    terms = required_terms(_spec(pod))
    if not terms:
        return None
    names: set[str] | None = None
    for term in terms:
        term_names: set[str] | None = None
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In":
                values = {str(v) for v in f.get("values") or []}
                term_names = values if term_names is None else term_names & values
        if term_names is None:
            return None
        names = term_names if names is None else names | term_names
    return names


def matches_node_selector_and_affinity(pod: Obj, node: Obj) -> bool:
    return selects_node(_spec(pod), _labels(node), node_name_of(node))


def preferred_affinity_weight(pod: Obj, node: Obj) -> int:
    return preferred_weight(_spec(pod), _labels(node), node_name_of(node))


# --- resources ----------------------------------------------------------------------------------------

def container_requests(container: dict[str, Any]) -> dict[str, Fraction]:
    """requests, falling back to limits per resource (what API defaulting does for pods)."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    out: dict[str, Fraction] = {}
    for name in set(limits) | set(requests):
        out[name] = quantity_or_zero(requests[name] if name in requests else limits[name])
    return out


def pod_requests(pod: Obj) -> dict[str, Fraction]:
    """Effective pod request: max(sum of containers + sidecars, largest init container) + overhead."""
    spec = _spec(pod)
    total: Counter[str] = Counter()
    for c in spec.get("containers") or []:
        total.update(container_requests(c))
    init_peak: dict[str, Fraction] = {}
    sidecars: Counter[str] = Counter()
    for c in spec.get("initContainers") or []:
        req = container_requests(c)
        if c.get("restartPolicy") == "Always":
            # Restartable init containers (sidecars) keep running next to the app containers.
            for name, amount in req.items():
                init_peak[name] = max(init_peak.get(name, Fraction(0)), sidecars[name] + amount)
            sidecars.update(req)
            continue
        for name, amount in req.items():
            init_peak[name] = max(init_peak.get(name, Fraction(0)), sidecars[name] + amount)
    total.update(sidecars)
    out: dict[str, Fraction] = {}
    for name in set(total) | set(init_peak):
        out[name] = max(Fraction(total.get(name, 0)), init_peak.get(name, Fraction(0)))
    for name, value in (spec.get("overhead") or {}).items():
        out[name] = out.get(name, Fraction(0)) + quantity_or_zero(value)
    return {k: v for k, v in out.items() if v != 0}


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def node_allocatable(node: Obj) -> dict[str, Fraction]:
    status = node.get("status") or {}
    source = status.get("allocatable") or status.get("capacity") or {}
    return {k: quantity_or_zero(v) for k, v in source.items()}


def requested_on(pods: Iterable[Obj]) -> Counter[str]:
    used: Counter[str] = Counter()
    for p in pods:
        used.update(pod_requests(p))
    return used


@dataclass
class NodeStatus:
    """Why one node was filtered out. `resolvable` mirrors the framework's Unschedulable code."""

    reasons: list[str] = field(default_factory=list)
    resolvable: bool = False

    @property
    def ok(self) -> bool:
        return not self.reasons


def resource_fit(pod_req: dict[str, Fraction], node: Obj, node_pods: Sequence[Obj]) -> NodeStatus:
    alloc = node_allocatable(node)
    used = requested_on(node_pods)
    status = NodeStatus(resolvable=True)
    max_pods = alloc.get("pods", Fraction(110))
    if len(node_pods) + 1 > max_pods:
        status.reasons.append("Too many pods")
    if not pod_req:
        return status
    ordered: list[str] = [r for r in ("cpu", "memory", "ephemeral-storage") if r in pod_req]
    ordered += sorted(r for r in pod_req if r not in ("cpu", "memory", "ephemeral-storage"))
    for name in ordered:
        want = pod_req[name]
        have = alloc.get(name, Fraction(0))
        if want > have - used.get(name, 0):
            status.reasons.append(f"Insufficient {name}")
            if want > have:
                status.resolvable = False
    return status


# --- inter-pod affinity (required terms only) ---------------------------------------------------------

def _pod_terms(pod: Obj, kind: str) -> list[dict[str, Any]]:
    section = (_spec(pod).get("affinity") or {}).get(kind) or {}
    return list(section.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _term_covers(term: dict[str, Any], owner: Obj, target: Obj, ns_labels: dict[str, dict[str, str]]) -> bool:
    """Does `target` fall under `owner`'s affinity term (namespaces, namespaceSelector, labelSelector)?"""
    target_ns = str((target.get("metadata") or {}).get("namespace") or "")
    names = set(term.get("namespaces") or [])
    ns_selector = term.get("namespaceSelector")
    if ns_selector is None and not names:
        names = {str((owner.get("metadata") or {}).get("namespace") or "")}
    in_ns = target_ns in names or label_selector_matches(ns_selector, ns_labels.get(target_ns, {}))
    return in_ns and label_selector_matches(term.get("labelSelector"), _labels(target))


def _hard_spread(pod: Obj) -> list[dict[str, Any]]:
    return [c for c in _spec(pod).get("topologySpreadConstraints") or []
            if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"]


@dataclass
class InterPodContext:
    """Placed pods with their nodes' labels, and namespace labels for namespaceSelector; evaluates
    PodTopologySpread (hard constraints) and InterPodAffinity (required terms) for one pod."""

    placed: list[tuple[Obj, dict[str, str]]]
    ns_labels: dict[str, dict[str, str]]
    nodes: Sequence[Obj] = ()

    def spread_status(self, pod: Obj, node: Obj) -> NodeStatus | None:
        constraints = _hard_spread(pod)
        if not constraints:
            return None
        labels = _labels(node)
        keys = [str(c.get("topologyKey", "")) for c in constraints]
        if any(k not in labels for k in keys):
            return NodeStatus([REASON_SPREAD_LABEL])
        # Domains come from nodes that carry every key and pass the pod's node affinity/selector
        # (nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore: the defaults).
        eligible = [n for n in self.nodes if all(k in _labels(n) for k in keys)
                    and matches_node_selector_and_affinity(pod, n)]
        ns = (pod.get("metadata") or {}).get("namespace")
        for c, key in zip(constraints, keys, strict=True):
            selector = c.get("labelSelector")
            counts: Counter[str] = Counter({_labels(n)[key]: 0 for n in eligible})
            eligible_values = set(counts)
            for other, node_labels in self.placed:
                if (other.get("metadata") or {}).get("namespace") != ns or key not in node_labels:
                    continue
                if node_labels[key] in eligible_values and label_selector_matches(selector, _labels(other)):
                    counts[node_labels[key]] += 1
            min_match = min(counts.values(), default=0)
            if int(c.get("minDomains") or 1) > len(counts):
                min_match = 0
            self_match = 1 if label_selector_matches(selector, _labels(pod)) else 0
            if counts.get(labels[key], 0) + self_match - min_match > int(c.get("maxSkew", 1)):
                return NodeStatus([REASON_SPREAD], resolvable=True)
        return None

    def status(self, pod: Obj, node: Obj) -> NodeStatus | None:
        spread = self.spread_status(pod, node)
        if spread is not None:
            return spread
        labels = _labels(node)
        affinity = _pod_terms(pod, "podAffinity")
        if affinity:
            # A pod counts only if it matches every term (updateWithAffinityTerms).
            matching = [pl for pl in self.placed
                        if all(_term_covers(t, pod, pl[0], self.ns_labels) for t in affinity)]
            exists = True
            for term in affinity:
                value = labels.get(str(term.get("topologyKey", "")))
                if value is None:
                    return NodeStatus([REASON_POD_AFFINITY])
                if not any(nl.get(str(term.get("topologyKey"))) == value for _, nl in matching):
                    exists = False
            # The first pod of a group with affinity to itself may go anywhere with the topology labels.
            if not exists and not (not matching and all(_term_covers(t, pod, pod, self.ns_labels) for t in affinity)):
                return NodeStatus([REASON_POD_AFFINITY])
        for term in _pod_terms(pod, "podAntiAffinity"):
            key = str(term.get("topologyKey", ""))
            value = labels.get(key)
            if value is not None and any(nl.get(key) == value and _term_covers(term, pod, other, self.ns_labels)
                                         for other, nl in self.placed):
                return NodeStatus([REASON_POD_ANTI_AFFINITY], resolvable=True)
        for other, nl in self.placed:
            for term in _pod_terms(other, "podAntiAffinity"):
                key = str(term.get("topologyKey", ""))
                if key in nl and labels.get(key) == nl[key] and _term_covers(term, other, pod, self.ns_labels):
                    return NodeStatus([REASON_EXISTING_ANTI_AFFINITY], resolvable=True)
        return None


def filter_node(
    pod: Obj, node: Obj, node_pods: Sequence[Obj], pod_req: dict[str, Fraction] | None = None,
    interpod: InterPodContext | None = None,
) -> NodeStatus:
    """Run the filter plugins in order; the first failing one decides the node's reasons."""
    spec = _spec(pod)
    tolerations = spec.get("tolerations") or []
    node_spec = _spec(node)
    if node_spec.get("unschedulable") and not tolerated_by(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return NodeStatus([REASON_UNSCHEDULABLE])
    taint = first_untolerated(tolerations, node_spec.get("taints") or [])
    if taint is not None:
        return NodeStatus([taint_reason(taint)])
    if not matches_node_selector_and_affinity(pod, node):
        return NodeStatus([REASON_AFFINITY])
    fit = resource_fit(pod_requests(pod) if pod_req is None else pod_req, node, node_pods)
    if not fit.ok or interpod is None:
        return fit
    return interpod.status(pod, node) or fit


@dataclass(frozen=True)
class Placement:
    """The scheduling decision for one pod: a node, or the FitError message of a real scheduler."""

    node: str | None
    message: str = ""
    statuses: dict[str, list[str]] = field(default_factory=dict)


def preemption_message(pod: Obj, n_nodes: int, statuses: dict[str, NodeStatus]) -> str:
    if _spec(pod).get("preemptionPolicy") == "Never":
        return "preemption: not eligible due to preemptionPolicy=Never."
    hist = Counter(NO_VICTIMS if s.resolvable else NOT_HELPFUL for s in statuses.values())
    parts = sorted(f"{count} {reason}" for reason, count in hist.items())
    return f"preemption: 0/{n_nodes} nodes are available: {', '.join(parts)}."


def fit_error_message(pod: Obj, n_nodes: int, statuses: dict[str, NodeStatus]) -> str:
    if n_nodes == 0:
        return NO_NODES
    hist = Counter(reason for s in statuses.values() for reason in s.reasons)
    message = f"0/{n_nodes} nodes are available:"
    parts = sorted(f"{count} {reason}" for reason, count in hist.items())
    if parts:
        message += f" {', '.join(parts)}."
    return message + f" {preemption_message(pod, n_nodes, statuses)}."


def _score_key(pod: Obj, pod_req: dict[str, Fraction], node: Obj, node_pods: Sequence[Obj]) -> tuple[Any, ...]:
    tolerations = _spec(pod).get("tolerations") or []
    soft = sum(
        1 for t in _spec(node).get("taints") or []
        if t.get("effect") == "PreferNoSchedule" and not tolerated_by(tolerations, t)
    )
    alloc = node_allocatable(node)
    fractions: list[Fraction] = []
    for name, default in (("cpu", _SCORE_DEFAULT_CPU), ("memory", _SCORE_DEFAULT_MEMORY)):
        capacity = alloc.get(name, Fraction(0))
        if capacity <= 0:
            continue
        used = sum((pod_requests(p).get(name) or default for p in node_pods), Fraction(0))
        fractions.append((used + (pod_req.get(name) or default)) / capacity)
    load = sum(fractions, Fraction(0)) / len(fractions) if fractions else Fraction(0)
    return (soft, -preferred_affinity_weight(pod, node), load, node_name_of(node))


def schedule(pod: Obj, nodes: Sequence[Obj], bound_pods: Sequence[Obj],
             namespace_labels: dict[str, dict[str, str]] | None = None) -> Placement:
    """Pick a node for `pod` given every node and the non-terminated pods already bound."""
    by_node: dict[str, list[Obj]] = {}
    for p in bound_pods:
        name = _spec(p).get("nodeName")
        if name and not is_terminated(p):
            by_node.setdefault(str(name), []).append(p)
    interpod: InterPodContext | None = None
    if _pod_terms(pod, "podAffinity") or _pod_terms(pod, "podAntiAffinity") or _hard_spread(pod) or any(
            _pod_terms(p, "podAntiAffinity") for pods in by_node.values() for p in pods):
        node_labels = {node_name_of(n): _labels(n) for n in nodes}
        interpod = InterPodContext(
            [(p, node_labels[name]) for name, pods in by_node.items() if name in node_labels for p in pods],
            namespace_labels or {}, nodes)
    pod_req = pod_requests(pod)
    statuses: dict[str, NodeStatus] = {}
    feasible: list[Obj] = []
    pinned = prefilter_node_names(pod)
    if pinned is not None and not pinned and nodes:
        everywhere = {node_name_of(n): NodeStatus([]) for n in nodes}
        message = (f"0/{len(nodes)} nodes are available: {REASON_AFFINITY_CONFLICT}. "
                   f"{preemption_message(pod, len(nodes), everywhere)}.")
        return Placement(None, message, {k: [REASON_AFFINITY_CONFLICT] for k in everywhere})
    for node in nodes:
        name = node_name_of(node)
        if pinned is not None and name not in pinned:
            statuses[name] = NodeStatus([REASON_PREFILTER_AFFINITY])
            continue
        status = filter_node(pod, node, by_node.get(name, []), pod_req, interpod)
        if status.ok:
            feasible.append(node)
        else:
            statuses[name] = status
    if feasible:
        best = min(feasible, key=lambda n: _score_key(pod, pod_req, n, by_node.get(node_name_of(n), [])))
        return Placement(node_name_of(best))
    return Placement(None, fit_error_message(pod, len(nodes), statuses), {k: v.reasons for k, v in statuses.items()})


# --- the controller -----------------------------------------------------------------------------------

def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_scheduling(pod: Obj) -> bool:
    spec = _spec(pod)
    if spec.get("nodeName") or is_terminated(pod):
        return False
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (spec.get("schedulerName") or DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER


def _with_condition(pod: Obj, condition: dict[str, Any]) -> list[dict[str, Any]]:
    conditions = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != condition["type"]]
    return [*conditions, condition]


def _queue_key(pod: Obj) -> tuple[Any, ...]:
    meta = pod.get("metadata") or {}
    # The active queue pops by priority, then by arrival.
    return (-int(_spec(pod).get("priority") or 0), meta.get("creationTimestamp") or "",
            meta.get("namespace") or "", meta.get("name") or "")


class SchedulerController:
    """Binds pending pods; records PodScheduled and the Scheduled / FailedScheduling events.

    It re-evaluates every pending pod whenever the runtime calls it (any store change), which is
    how unschedulable pods are retried when nodes or pods change; it writes only when the outcome
    differs from what the pod already shows, so its own writes do not loop.
    """

    name = "scheduler"

    def __init__(self) -> None:
        self._reported: dict[str, str] = {}

    def reconcile(self, store: Store, now: float) -> float | None:
        nodes = sorted(store.list("v1", "Node"), key=node_name_of)
        pods = store.list("v1", "Pod")
        ns_labels = {node_name_of(ns): _labels(ns) for ns in store.list("v1", "Namespace")}
        bound = [p for p in pods if _spec(p).get("nodeName") and not is_terminated(p)]
        live: set[str] = set()
        for pod in sorted((p for p in pods if needs_scheduling(p)), key=_queue_key):
            uid = str((pod.get("metadata") or {}).get("uid") or _pod_key(pod))
            live.add(uid)
            if _spec(pod).get("schedulingGates"):
                self._gated(store, pod)
                continue
            placement = schedule(pod, nodes, bound, ns_labels)
            try:
                if placement.node is not None:
                    bound.append(self._bind(store, pod, placement.node))
                    self._reported.pop(uid, None)
                elif self._reported.get(uid) != placement.message:
                    self._unschedulable(store, pod, placement.message)
                    self._reported[uid] = placement.message
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
        for uid in set(self._reported) - live:
            del self._reported[uid]
        return None

    def close(self) -> None:
        return None

    def _bind(self, store: Store, pod: Obj, node: str) -> Obj:
        meta = pod["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        # the binding subresource: an update may not set nodeName (pod specs are immutable)
        bound = store.patch("v1", "Pod", name, ns, {"spec": {"nodeName": node}}, "merge", subresource="binding")
        condition = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                     "lastTransitionTime": now_rfc3339()}
        bound = store.patch("v1", "Pod", name, ns, {"status": {"conditions": _with_condition(bound, condition)}},
                            "merge", subresource="status")
        store.record_event(bound, "Scheduled", f"Successfully assigned {ns}/{name} to {node}", "Normal",
                           component=DEFAULT_SCHEDULER)
        return bound

    def _unschedulable(self, store: Store, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        previous = pod_condition(pod, "PodScheduled")
        transition = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == "False" else None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": transition or now_rfc3339()}
        store.patch("v1", "Pod", meta["name"], meta.get("namespace"),
                    {"status": {"phase": "Pending", "conditions": _with_condition(pod, condition)}},
                    "merge", subresource="status")
        store.record_event(pod, "FailedScheduling", message, "Warning", component=DEFAULT_SCHEDULER)

    def _gated(self, store: Store, pod: Obj) -> None:
        previous = pod_condition(pod, "PodScheduled")
        if previous and previous.get("reason") == "SchedulingGated":
            return
        meta = pod["metadata"]
        condition = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                     "message": "Scheduling is blocked due to non-empty scheduling gates",
                     "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        store.patch("v1", "Pod", meta["name"], meta.get("namespace"),
                    {"status": {"phase": "Pending", "conditions": _with_condition(pod, condition)}},
                    "merge", subresource="status")


def _pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
