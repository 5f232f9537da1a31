"""The disruption controller: the status of PodDisruptionBudgets that evictions read.

Upstream: kubernetes/kubernetes pkg/controller/disruption/disruption.go (commit
008b3652959ca58af8be3fb5b6ecfe9ae7638282): `currentHealthy` counts the budget's pods that are Ready,
not being deleted and not recorded in `disruptedPods`; `desiredHealthy` is `minAvailable` (a
percentage of the expected pods, rounded up) or expected minus `maxUnavailable`; `disruptionsAllowed` is
currentHealthy - desiredHealthy (never below 0); `observedGeneration` follows the spec; the
`DisruptionAllowed` condition says whether any disruption is allowed. Simplification, documented in
docs/architecture.md: the expected pod count is the number of matching pods, where upstream asks the
pods' controllers for their scale (the same while a workload is at its size).
"""

from __future__ import annotations

import math
from typing import Any

from harness.k8s.affinity import label_selector_matches
from harness.sim.contracts import ApiError, Obj, Store

PDB_API = "policy/v1"


def _scaled(value: Any, total: int) -> int:
    text = str(value)
    if text.endswith("%"):
        return math.ceil(total * int(text[:-1]) / 100)
    return int(value)


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def budget_status(pdb: Obj, pods: list[Obj]) -> Obj:
    spec = pdb.get("spec") or {}
    selector = spec.get("selector")
    old = pdb.get("status") or {}
    matching = [p for p in pods if isinstance(selector, dict)
                and (selector.get("matchLabels") or selector.get("matchExpressions"))
                and label_selector_matches(selector, (p.get("metadata") or {}).get("labels") or {})
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    names = {p["metadata"]["name"] for p in matching if not p["metadata"].get("deletionTimestamp")}
    disrupted = {k: v for k, v in (old.get("disruptedPods") or {}).items() if k in names}
    healthy = sum(1 for p in matching if _ready(p) and not p["metadata"].get("deletionTimestamp")
                  and p["metadata"]["name"] not in disrupted)
    expected = len(matching)
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    elif spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    else:
        desired = expected  # neither set: policy/v1 defaults minAvailable to 1 at admission; be strict
    allowed = max(0, healthy - desired)
    status: Obj = {"observedGeneration": int(pdb["metadata"].get("generation") or 1), "expectedPods": expected,
                   "currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed,
                   "conditions": [{"type": "DisruptionAllowed", "status": "True" if allowed > 0 else "False",
                                   "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                                   "message": "", "observedGeneration": int(pdb["metadata"].get("generation") or 1),
                                   "lastTransitionTime": _transition(old, allowed > 0)}]}
    if disrupted:
        status["disruptedPods"] = disrupted
    return status


def _transition(old: Obj, allowed: bool) -> str:
    from harness.sim.api.store import now_rfc3339

    for c in old.get("conditions") or []:
        if c.get("type") == "DisruptionAllowed" and (c.get("status") == "True") == allowed:
            return str(c.get("lastTransitionTime") or now_rfc3339())
    return now_rfc3339()


class DisruptionController:
    name = "disruption-controller"

    def reconcile(self, store: Store, now: float) -> float | None:
        budgets = store.list(PDB_API, "PodDisruptionBudget")
        if not budgets:
            return None
        pods = store.list("v1", "Pod")
        for pdb in budgets:
            ns = pdb["metadata"].get("namespace")
            status = budget_status(pdb, [p for p in pods if p["metadata"].get("namespace") == ns])
            if status == (pdb.get("status") or {}):
                continue
            try:
                store.update_status({**pdb, "status": status,
                                     "metadata": {k: v for k, v in pdb["metadata"].items() if k != "resourceVersion"}})
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return None

    def close(self) -> None:
        return None
