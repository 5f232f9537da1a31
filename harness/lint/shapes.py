"""Shape checks before the rules run: every field a rule reads has the type Kubernetes gives it.

A manifest with, say, `tolerations: 7` is unusable input, not a finding: it becomes one `UsageError`
line naming the file, the document and the field (exit 2), and the rules never see a wrong type.
Absent and null fields are fine everywhere (YAML `key:` with nothing after it reads as null).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from harness.errors import UsageError
from harness.lint.model import Document


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class MapOf:
    value: Shape


# A shape: a Python type (or tuple of types), a dict of field shapes (a mapping whose listed keys are
# checked), a list of items, or a mapping with free keys.
Shape: TypeAlias = type | tuple[type, ...] | dict[str, "Shape"] | ListOf | MapOf

SCALAR: tuple[type, ...] = (str, int, float, bool)
_EXPRESSION: dict[str, Shape] = {"key": str, "operator": str, "values": ListOf(SCALAR)}
_TERMS: Shape = ListOf({"matchExpressions": ListOf(_EXPRESSION), "matchFields": ListOf(_EXPRESSION)})
_PLACEMENT: dict[str, Shape] = {
    "nodeSelector": MapOf(SCALAR),
    "tolerations": ListOf({"key": str, "operator": str, "value": SCALAR, "effect": str}),
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": _TERMS}}},
}
_CONTAINERS: Shape = ListOf({
    "name": str,
    "image": str,
    "resources": {"requests": MapOf(SCALAR), "limits": MapOf(SCALAR)},
    "env": ListOf({"name": str, "value": SCALAR}),
})
POD: dict[str, Shape] = {**_PLACEMENT, "containers": _CONTAINERS, "initContainers": _CONTAINERS}
_TEMPLATE: dict[str, Shape] = {"spec": {"template": {"spec": POD}}}

KIND_SHAPES: dict[str, dict[str, Shape]] = {
    "Pod": {"spec": POD},
    "Deployment": _TEMPLATE,
    "StatefulSet": _TEMPLATE,
    "DaemonSet": _TEMPLATE,
    "ReplicaSet": _TEMPLATE,
    "Job": _TEMPLATE,
    "CronJob": {"spec": {"jobTemplate": _TEMPLATE}},
    "Server": {"spec": {
        "serverConfig": str, "replicas": int, "minReplicas": int, "maxReplicas": int,
        "capabilities": ListOf(str), "extraCapabilities": ListOf(str), "podSpec": POD,
    }},
    "ServerConfig": {"spec": {"podSpec": POD}},
    "Model": {"spec": {"storageUri": str, "requirements": ListOf(str), "server": str}},
    "Cluster": {"nodes": ListOf({"role": str, "image": str})},
}
# Helm values by chart (the kind of every values document is HELM_VALUES_KIND).
CHART_SHAPES: dict[str, dict[str, Shape]] = {
    "nvidia-device-plugin": _PLACEMENT,
    "seldon-core-v2-runtime": {c: {"disable": bool} for c in ("dataflow", "modelgateway", "pipelinegateway")},
}
_METADATA: dict[str, Shape] = {"metadata": {"name": SCALAR, "namespace": str, "labels": MapOf(SCALAR)}}


def _type_name(shape: Shape) -> str:
    if isinstance(shape, dict | MapOf):
        return "a mapping"
    if isinstance(shape, ListOf):
        return "a list"
    if shape == SCALAR:
        return "a string or number"
    if isinstance(shape, tuple):
        return " or ".join(t.__name__ for t in shape)
    return {"str": "a string", "int": "an integer"}.get(shape.__name__, shape.__name__)


def _check(value: Any, shape: Shape, where: str) -> str | None:
    """The first wrong field as `path: expected X, got Y`, or None."""
    if value is None:
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where}: expected {_type_name(shape)}, got {type(value).__name__}"
        for key, sub in shape.items():
            problem = _check(value.get(key), sub, f"{where}.{key}" if where else key)
            if problem:
                return problem
        return None
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return f"{where}: expected {_type_name(shape)}, got {type(value).__name__}"
        for i, item in enumerate(value):
            if item is None:
                return f"{where}[{i}]: expected {_type_name(shape.item)}, got null"
            problem = _check(item, shape.item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return f"{where}: expected {_type_name(shape)}, got {type(value).__name__}"
        for key, item in value.items():
            problem = _check(item, shape.value, f"{where}.{key}")
            if problem:
                return problem
        return None
    if not isinstance(value, shape):
        return f"{where}: expected {_type_name(shape)}, got {type(value).__name__} {value!r}"
    return None


def check_shape(doc: Document) -> None:
    """Raise `UsageError` naming the file, document and field when a field lint reads has the wrong type."""
    shapes: list[dict[str, Shape]]
    if doc.chart is not None:
        shapes = [CHART_SHAPES.get(doc.chart, {})]
    else:
        shapes = [KIND_SHAPES.get(doc.kind, {})]
        shapes.append(_METADATA)
        if doc.kind in KIND_SHAPES and doc.kind not in ("Cluster",):
            shapes.append({"spec": {}})
    for shape in shapes:
        problem = _check(doc.body, shape, "")
        if problem:
            raise UsageError(f"{doc.source}: document {doc.index + 1} ({doc.kind}): {problem}")
