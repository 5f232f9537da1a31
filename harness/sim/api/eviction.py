"""The pods/eviction subresource with PodDisruptionBudgets, as kube-apiserver answers it.

Upstream: kubernetes/kubernetes pkg/registry/core/pod/storage/eviction.go `EvictionREST.Create`
(commit 01aa0f3f6052c9866dcb69054d8924fa8c96e3cb): the Eviction's name must be the URL's (400); a pod
that is Pending, finished or already being deleted is deleted without looking at budgets; more than
one matching budget is a 500; a budget whose status is older than its spec, or that allows no
disruption, answers 429 TooManyRequests with a DisruptionBudget cause; otherwise the budget's
`disruptionsAllowed` is decremented, the pod recorded in `disruptedPods`, and the pod deleted with the
Eviction's delete options (gracefully). An unready pod is deleted without decrementing while the
budget has its desired healthy pods. The budget's status comes from the disruption controller
(harness/sim/disruption.py).
"""

from __future__ import annotations

from typing import Any

from harness.k8s.affinity import label_selector_matches
from harness.sim.api.deletion import DeleteOptions, parse_options
from harness.sim.api.store import MemoryStore, now_rfc3339
from harness.sim.contracts import ApiError, Obj

PDB_API = "policy/v1"
VIOLATES = "Cannot evict pod as it would violate the pod's disruption budget."


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _too_many(message: str, cause: str, retry_after: int) -> ApiError:
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, "TooManyRequests", message, details)


def matching_budgets(store: MemoryStore, pod: Obj) -> list[Obj]:
    """Budgets in the pod's namespace whose (non-empty) selector matches its labels."""
    ns = (pod.get("metadata") or {}).get("namespace")
    labels = (pod.get("metadata") or {}).get("labels") or {}
    out = []
    for pdb in store.list(PDB_API, "PodDisruptionBudget", ns):
        selector = (pdb.get("spec") or {}).get("selector")
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            continue  # a nil or empty selector matches nothing
        if label_selector_matches(selector, labels):
            out.append(pdb)
    return out


def evict(store: MemoryStore, namespace: str, name: str, body: Any, dry_run: bool) -> None:
    """Evict pod `name` (raises ApiError as the API server answers)."""
    if not isinstance(body, dict) or (body.get("metadata") or {}).get("name") != name:
        raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
    raw = body.get("deleteOptions") if isinstance(body.get("deleteOptions"), dict) else None
    options = parse_options(None, None, raw) if raw is not None else DeleteOptions()
    pod = store.get("v1", "Pod", name, namespace)
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        store.delete("v1", "Pod", name, namespace, dry_run=dry_run, options=options)
        return
    budgets = matching_budgets(store, pod)
    if len(budgets) > 1:
        raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                       "subresource does not support.")
    if budgets:
        pdb = budgets[0]
        status = pdb.get("status") or {}
        desired, healthy = int(status.get("desiredHealthy") or 0), int(status.get("currentHealthy") or 0)
        if not (not _ready(pod) and healthy >= desired and desired > 0):
            pdb_name = pdb["metadata"]["name"]
            if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
                raise _too_many(VIOLATES, f"The disruption budget {pdb_name} is still being processed by the "
                                "server.", 10)
            allowed = int(status.get("disruptionsAllowed") or 0)
            if allowed < 0:
                raise ApiError(403, "Forbidden", f'poddisruptionbudget.policy "{pdb_name}" is forbidden: pdb '
                               "disruptions allowed is negative")
            if allowed == 0:
                raise _too_many(VIOLATES, f"The disruption budget {pdb_name} needs {desired} healthy pods and has "
                                f"{healthy} currently", 0)
            if not dry_run:
                disrupted = dict(status.get("disruptedPods") or {})
                disrupted[name] = now_rfc3339()
                store.patch(PDB_API, "PodDisruptionBudget", pdb_name, namespace,
                            {"status": {"disruptionsAllowed": allowed - 1, "disruptedPods": disrupted}},
                            "merge", subresource="status")
    store.delete("v1", "Pod", name, namespace, dry_run=dry_run, options=options)
