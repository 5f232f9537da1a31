"""Validation of core and apps kinds beyond names and resources: the 422 rules the harness can meet.

Each rule follows kubernetes/kubernetes pkg/apis/core/validation/validation.go and
pkg/apis/apps/validation/validation.go (commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282), worded as
there (`field.NotSupported`, `field.Duplicate`, `field.Forbidden`, ...):
- `validateNodeTaints`: an effect is required and one of NoSchedule/PreferNoSchedule/NoExecute; a
  key+effect pair appears once;
- `ValidateTolerations`: operators Equal/Exists; Exists takes no value; an empty key needs Exists;
  `tolerationSeconds` only with NoExecute; effects as for taints (empty allowed);
- `ValidateNodeSelectorRequirement`: In/NotIn need values, Exists/DoesNotExist take none, Gt/Lt take
  exactly one; any other operator is "not a valid selector operator"; a term needs a requirement;
- `ValidateNodeUpdate` (capacity/allocatable via `ValidateResourceQuantityValue`): extended
  resources are integers;
- `ValidateConfigMapUpdate`: an immutable ConfigMap keeps its data, binaryData and `immutable`;
- `ValidateStatefulSetUpdate`: only replicas, ordinals, template, updateStrategy,
  revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds may change;
- `ValidateDeploymentSpec` / `ValidateStatefulSetSpec` / `ValidateDaemonSetSpec`: the selector must
  match the template's labels, and (apps/v1) never changes.
"""

from __future__ import annotations

from typing import Any

from harness.k8s.affinity import label_selector_matches
from harness.k8s.quantity import quantity_or_none

Obj = dict[str, Any]
Cause = tuple[str, str, str]  # (reason, field, message)

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
STATEFULSET_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _supported(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _go_taint(taint: Obj) -> str:
    return (f'core.Taint{{Key:"{taint.get("key") or ""}", Value:"{taint.get("value") or ""}", '
            f'Effect:"{taint.get("effect") or ""}", TimeAdded:<nil>}}')


def _go_map(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def taint_causes(taints: Any, path: str = "spec.taints") -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints if isinstance(taints, list) else []):
        if not isinstance(taint, dict):
            continue
        here = f"{path}[{i}]"
        effect = str(taint.get("effect") or "")
        if not effect:
            causes.append(("FieldValueRequired", f"{here}.effect", "Required value"))
        elif effect not in TAINT_EFFECTS:
            causes.append(("FieldValueNotSupported", f"{here}.effect",
                           f'Unsupported value: "{effect}": supported values: {_supported(TAINT_EFFECTS)}'))
        pair = (str(taint.get("key") or ""), effect)
        if pair in seen:
            causes.append(("FieldValueDuplicate", here, f"Duplicate value: {_go_taint(taint)}: taints must be "
                           "unique by key and effect pair"))
            continue
        seen.add(pair)
    return causes


def toleration_causes(tolerations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, tol in enumerate(tolerations if isinstance(tolerations, list) else []):
        if not isinstance(tol, dict):
            continue
        here = f"{path}[{i}]"
        key, operator = str(tol.get("key") or ""), str(tol.get("operator") or "")
        value, effect = str(tol.get("value") or ""), str(tol.get("effect") or "")
        if not key and operator != "Exists":
            causes.append(("FieldValueInvalid", f"{here}.operator", f'Invalid value: "{operator}": operator must be '
                           'Exists when `key` is empty, which means "match all values and all keys"'))
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            causes.append(("FieldValueInvalid", f"{here}.effect", f'Invalid value: "{effect}": effect must be '
                           "'NoExecute' when `tolerationSeconds` is set"))
        if operator == "Exists":
            if value:
                causes.append(("FieldValueInvalid", f"{here}.operator", f'Invalid value: core.Toleration{{Key:"{key}", '
                               f'Operator:"Exists", Value:"{value}", Effect:"{effect}", TolerationSeconds:<nil>}}: '
                               "value must be empty when `operator` is 'Exists'"))
        elif operator not in ("", "Equal"):
            causes.append(("FieldValueNotSupported", f"{here}.operator",
                           f'Unsupported value: "{operator}": supported values: "Equal", "Exists"'))
        if effect and effect not in TAINT_EFFECTS:
            causes.append(("FieldValueNotSupported", f"{here}.effect",
                           f'Unsupported value: "{effect}": supported values: {_supported(TAINT_EFFECTS)}'))
    return causes


def _requirement_causes(req: Obj, path: str) -> list[Cause]:
    operator = str(req.get("operator") or "")
    values = req.get("values") or []
    if operator in ("In", "NotIn") and not values:
        return [("FieldValueRequired", f"{path}.values",
                 "Required value: must be specified when `operator` is 'In' or 'NotIn'")]
    if operator in ("Exists", "DoesNotExist") and values:
        return [("FieldValueForbidden", f"{path}.values",
                 "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]
    if operator in ("Gt", "Lt") and len(values) != 1:
        return [("FieldValueRequired", f"{path}.values",
                 "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")]
    if operator not in SELECTOR_OPERATORS:
        return [("FieldValueInvalid", f"{path}.operator", f'Invalid value: "{operator}": not a valid selector '
                 "operator")]
    return []


def node_affinity_causes(affinity: Any, path: str) -> list[Cause]:
    if not isinstance(affinity, dict):
        return []
    required = ((affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not isinstance(required, dict):
        return []
    causes: list[Cause] = []
    terms_path = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        causes.append(("FieldValueRequired", terms_path, "Required value: must have at least one node selector term"))
    for i, term in enumerate(terms if isinstance(terms, list) else []):
        if not isinstance(term, dict):
            continue
        for j, req in enumerate(term.get("matchExpressions") or []):
            if isinstance(req, dict):
                causes.extend(_requirement_causes(req, f"{terms_path}[{i}].matchExpressions[{j}]"))
    return causes


def pod_spec_causes(spec: Any, path: str) -> list[Cause]:
    """Tolerations and required node affinity of a pod spec (pods and workload templates)."""
    if not isinstance(spec, dict):
        return []
    return [*toleration_causes(spec.get("tolerations"), f"{path}.tolerations"),
            *node_affinity_causes(spec.get("affinity"), f"{path}.affinity")]


def node_status_causes(status: Any) -> list[Cause]:
    """Extended resources in a node's capacity and allocatable must be whole numbers."""
    causes: list[Cause] = []
    for section in ("capacity", "allocatable"):
        values = (status or {}).get(section) if isinstance(status, dict) else None
        for name, qty in (values or {}).items() if isinstance(values, dict) else []:
            parsed = quantity_or_none(qty)
            if "/" in str(name) and parsed is not None and parsed.denominator != 1 \
                    and not str(name).split("/", 1)[0].endswith("kubernetes.io"):
                causes.append(("FieldValueInvalid", f"status.{section}.{name}",
                               f'Invalid value: "{qty}": must be an integer'))
    return causes


def configmap_update_causes(new: Obj, old: Obj) -> list[Cause]:
    if old.get("immutable") is not True:
        return []
    causes: list[Cause] = []
    if new.get("immutable") is not True:
        causes.append(("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set"))
    for key in ("data", "binaryData"):
        if (new.get(key) or {}) != (old.get(key) or {}):
            causes.append(("FieldValueForbidden", key, "Forbidden: field is immutable when `immutable` is set"))
    return causes


def selector_causes(kind: str, spec: Any) -> list[Cause]:
    """A workload's selector must select its own template (ValidateDeploymentSpec and kin)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("selector"), dict):
        return []
    selector = spec["selector"]
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return [("FieldValueInvalid", "spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]"
                 "string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid "
                 f"for {kind.lower()}")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not label_selector_matches(selector, labels):
        return [("FieldValueInvalid", "spec.template.metadata.labels",
                 f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`")]
    return []


def workload_update_causes(kind: str, new: Any, old: Any) -> list[Cause]:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return []
    causes: list[Cause] = []
    if (new.get("selector") or {}) != (old.get("selector") or {}):
        causes.append(("FieldValueInvalid", "spec.selector", "Invalid value: v1.LabelSelector{...}: field is "
                       "immutable"))
    if kind == "StatefulSet":
        rest_new = {k: v for k, v in new.items() if k not in STATEFULSET_UPDATABLE and k != "selector"}
        rest_old = {k: v for k, v in old.items() if k not in STATEFULSET_UPDATABLE and k != "selector"}
        if rest_new != rest_old:
            causes.append(("FieldValueForbidden", "spec", "Forbidden: updates to statefulset spec for fields other "
                           "than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                           "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return causes
