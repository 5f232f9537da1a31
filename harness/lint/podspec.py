"""Pure Kubernetes scheduling semantics over plain dicts: pod specs in objects, tolerations, node selection."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from harness.lint.model import Document

# Pod-template locations per kind (workload controllers); Servers and ServerConfigs are handled apart.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Labels a profile cannot predict (kind and clouds set them); selections on them are assumed satisfiable
# when judged against the profile's expected nodes rather than live ones.
UNPREDICTABLE_LABELS = frozenset({"kubernetes.io/hostname"})
EXPECTED_NODE_ANNOTATION = "harness.seldon.dev/expected-node"


def workload_pod(doc: Document) -> tuple[dict[str, Any], str] | None:
    path = _TEMPLATE_PATHS.get(doc.kind)
    if path is None or doc.chart is not None:
        return None
    node: Any = doc.body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else {}), ".".join(path)


def merge_server_pod(config_pod: Mapping[str, Any] | None, server_pod: Mapping[str, Any] | None) -> dict[str, Any]:
    """Seldon's merge of a Server `podSpec` into its ServerConfig's: tolerations and volumes appended,
    nodeSelector merged key by key, affinity (and other scalars) replaced, containers merged by name with
    resource maps merged key by key."""
    merged: dict[str, Any] = copy.deepcopy(dict(config_pod or {}))
    for key, value in (server_pod or {}).items():
        if key in ("tolerations", "volumes"):
            merged[key] = [*(merged.get(key) or []), *copy.deepcopy(value or [])]
        elif key == "nodeSelector":
            merged[key] = {**(merged.get(key) or {}), **(value or {})}
        elif key == "containers":
            merged[key] = _merge_containers(merged.get(key) or [], value or [])
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_containers(base: list[Any], extra: list[Any]) -> list[Any]:
    out = copy.deepcopy([c for c in base if isinstance(c, dict)])
    by_name = {c.get("name"): c for c in out}
    for container in extra:
        if not isinstance(container, dict):
            continue
        target = by_name.get(container.get("name"))
        if target is None:
            out.append(copy.deepcopy(container))
            continue
        for key, value in container.items():
            if key == "resources" and isinstance(value, dict):
                resources = target.setdefault("resources", {})
                for section in ("requests", "limits"):
                    if isinstance(value.get(section), dict):
                        resources[section] = {**(resources.get(section) or {}), **value[section]}
            else:
                target[key] = copy.deepcopy(value)
    return out


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, c in enumerate(pod.get("containers") or []):
        if isinstance(c, dict):
            yield i, c


def quantity(value: Any) -> float | None:
    """Extended resources are integers; accept ints and integer strings, None when absent."""
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def gpu_counts(container: Mapping[str, Any], resource: str) -> tuple[float | None, float | None]:
    resources = container.get("resources") or {}
    return (
        quantity((resources.get("requests") or {}).get(resource)),
        quantity((resources.get("limits") or {}).get(resource)),
    )


def requests_gpu(pod: Mapping[str, Any], resource: str) -> bool:
    """A container asks for the GPU resource (a limit alone implies the same request)."""
    for _, c in containers(pod):
        req, lim = gpu_counts(c, resource)
        if (req or 0) > 0 or (lim or 0) > 0:
            return True
    return False


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' ToleratesTaint: empty effect matches all, empty key with Exists matches all keys."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if operator != "Equal" or not key:
        return False
    return str(toleration.get("value") or "") == str(taint.get("value") or "")


def required_terms(pod: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The required node-affinity terms, or None when there is no required node affinity."""
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not isinstance(required, dict):
        return None
    return [t for t in required.get("nodeSelectorTerms") or [] if isinstance(t, dict)]


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str], expected: bool) -> bool:
    key = str(expr.get("key", ""))
    if expected and key in UNPREDICTABLE_LABELS:
        return True
    operator = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def _field_matches(expr: Mapping[str, Any], node: Mapping[str, Any], expected: bool) -> bool:
    if expr.get("key") != "metadata.name":
        return False
    if expected:
        return True  # names of nodes-to-be are not known in advance
    name = str((node.get("metadata") or {}).get("name", ""))
    values = [str(v) for v in expr.get("values") or []]
    if expr.get("operator") == "In":
        return name in values
    if expr.get("operator") == "NotIn":
        return name not in values
    return False


def node_labels(node: Mapping[str, Any]) -> dict[str, str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def is_expected(node: Mapping[str, Any]) -> bool:
    return EXPECTED_NODE_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})


def selects_node(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector (all keys) AND required affinity (any term; all expressions and fields in a term)."""
    labels = node_labels(node)
    expected = is_expected(node)
    for key, value in (pod.get("nodeSelector") or {}).items():
        if expected and key in UNPREDICTABLE_LABELS:
            continue
        if labels.get(str(key)) != str(value):
            return False
    terms = required_terms(pod)
    if terms is None:
        return True
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue  # an empty term matches nothing
        if all(_expression_matches(e, labels, expected) for e in exprs) and all(
            _field_matches(f, node, expected) for f in fields
        ):
            return True
    return False


def has_selection(pod: Mapping[str, Any]) -> bool:
    return bool(pod.get("nodeSelector")) or required_terms(pod) is not None


def targets_label(pod: Mapping[str, Any], key: str, value: str) -> bool:
    """Every way the pod may be placed requires `key=value`: by nodeSelector, or in every required term."""
    if (pod.get("nodeSelector") or {}).get(key) == value:
        return True
    terms = required_terms(pod)
    if not terms:
        return False
    for term in terms:
        if not any(
            e.get("key") == key and e.get("operator") == "In" and [str(v) for v in e.get("values") or []] == [value]
            for e in term.get("matchExpressions") or []
        ):
            return False
    return True
