"""The `scale` subresource: an autoscaling/v1 Scale view of a workload's or a Seldon object's replicas.

Upstream: kubernetes/kubernetes pkg/registry/apps/statefulset/storage/storage.go and
deployment/storage/storage.go `ScaleREST` (commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282): spec.replicas,
status.replicas and the selector as a string; a write changes only spec.replicas. Custom resources:
staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/etcd.go `ScaleREST`, driven by
the CRD's `subresources.scale` (Seldon's Model and Server, v2.10.2: specReplicasPath `.spec.replicas`,
statusReplicasPath `.status.replicas`, labelSelectorPath `.status.selector`). `kubectl scale` patches it.
"""

from __future__ import annotations

from typing import Any

from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api import patch as patching
from harness.sim.api.resources import ResourceType
from harness.sim.contracts import ApiError, Obj, PatchType


def _selector_text(selector: Any) -> str:
    if not isinstance(selector, dict):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for req in selector.get("matchExpressions") or []:
        if not isinstance(req, dict):
            continue
        op, key, values = req.get("operator"), req.get("key"), ",".join(str(v) for v in req.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": f"{key}",
                      "DoesNotExist": f"!{key}"}.get(str(op), ""))
    return ",".join(p for p in parts if p)


def to_scale(rt: ResourceType, obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if rt.group == SELDON_GROUP:
        replicas = spec.get("replicas")
        selector = str(status.get("selector") or "")
    else:
        replicas = spec.get("replicas", 1)
        selector = _selector_text(spec.get("selector"))
    scale: Obj = {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": int(replicas)} if replicas is not None else {},
        "status": {"replicas": int(status.get("replicas") or 0), "selector": selector},
    }
    return scale


def wanted_replicas(rt: ResourceType, current: Obj, body: Any, patch_type: PatchType | None) -> int:
    """spec.replicas after a PUT (`patch_type` None) or PATCH of the Scale; 422 when it is not a count."""
    scale = to_scale(rt, current)
    if patch_type is None:
        new = body
    elif patch_type == "merge":
        new = patching.merge_patch(scale, body)
    elif patch_type == "json":
        new = patching.json_patch(scale, body)
    else:
        new = patching.strategic_merge_patch(scale, body)
    replicas = ((new or {}).get("spec") or {}).get("replicas") if isinstance(new, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        name = (current.get("metadata") or {}).get("name", "")
        raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                       f"{replicas}: must be greater than or equal to 0",
                       {"name": name, "group": "autoscaling", "kind": "Scale",
                        "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                    "message": "must be greater than or equal to 0"}]})
    return replicas
