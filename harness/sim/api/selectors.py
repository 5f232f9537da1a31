"""Label and field selectors, parsed the way the API server parses them.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-separated
(ANDed). Field selectors: `path=v`, `path==v`, `path!=v` over a fixed set of supported fields; an
unsupported field is a 400 BadRequest, as on a real cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from harness.sim.contracts import ApiError

Obj = dict[str, Any]
Requirement = Callable[[dict[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")

FIELDS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.unschedulable": ("spec", "unschedulable"),
    "status.phase": ("status", "phase"),
    "involvedObject.name": ("involvedObject", "name"),
    "involvedObject.kind": ("involvedObject", "kind"),
    "involvedObject.namespace": ("involvedObject", "namespace"),
    "involvedObject.uid": ("involvedObject", "uid"),
    "reason": ("reason",),
    "type": ("type",),
    "source": ("source", "component"),
}

# Which field selectors each kind answers (kubernetes/kubernetes pkg/registry/core/*/strategy.go
# `ToSelectableFields`/`GetAttrs` and pkg/apis/*/v1/conversion.go field label conversions, commit
# 008b3652959ca58af8be3fb5b6ecfe9ae7638282); every kind also has metadata.name (and metadata.namespace
# when namespaced). Custom resources answer only those two (apiextensions-apiserver).
_META_ONLY: tuple[str, ...] = ()
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "ReplicaSet": ("status.replicas",),
    "Service": ("spec.clusterIP", "spec.type"),
}
CUSTOM_KINDS = frozenset({"Server", "ServerConfig", "Model"})


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def _set_req(key: str, values: frozenset[str], inside: bool) -> Requirement:
    def req(labels: dict[str, str]) -> bool:
        if inside:
            return key in labels and labels[key] in values
        return key not in labels or labels[key] not in values
    return req


def _eq_req(key: str, value: str, equal: bool) -> Requirement:
    def req(labels: dict[str, str]) -> bool:
        if equal:
            return key in labels and labels[key] == value
        return labels.get(key) != value
    return req


def _exists_req(key: str, present: bool) -> Requirement:
    def req(labels: dict[str, str]) -> bool:
        return (key in labels) == present
    return req


def _field_req(path: tuple[str, ...], value: str, equal: bool) -> Callable[[Obj], bool]:
    def req(obj: Obj) -> bool:
        return (_field_value(obj, path) == value) == equal
    return req


def parse_label_selector(text: str | None) -> Requirement:
    if not text or not text.strip():
        return lambda labels: True
    reqs: list[Requirement] = []
    for part in _split_top(text):
        m = _SET_RE.match(part)
        if m and not m.group(1):
            key, op = m.group(2), m.group(3)
            values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append(_set_req(key, values, op == "in"))
            continue
        m = _CMP_RE.match(part)
        if m:
            key, op, value = m.groups()
            reqs.append(_eq_req(key, value, op != "!="))
            continue
        m = _EXISTS_RE.match(part)
        if m:
            neg, key = m.groups()
            reqs.append(_exists_req(key, not neg))
            continue
        raise ApiError(400, "BadRequest", f"unable to parse requirement: found '{part.strip()}', expected a "
                       "label selector (key=value, key!=value, key in (...), key notin (...), key, !key)")
    return lambda labels: all(r(labels) for r in reqs)


def _field_value(obj: Obj, path: tuple[str, ...]) -> str:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, kind: str = "") -> Callable[[Obj], bool]:
    if not text or not text.strip():
        return lambda obj: True
    reqs: list[Callable[[Obj], bool]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.groups()
        allowed = ("metadata.name", "metadata.namespace", *KIND_FIELDS.get(kind, _META_ONLY)) if kind else None
        if allowed is not None and name not in allowed:
            if kind in CUSTOM_KINDS:
                raise ApiError(400, "BadRequest", f'"{name}" is not a known field selector: only "metadata.name", '
                               '"metadata.namespace"')
            raise ApiError(400, "BadRequest", f"field label not supported: {name}")
        if allowed is None and name not in FIELDS:
            raise ApiError(400, "BadRequest", f"field label not supported: {name}")
        path = FIELDS.get(name) or tuple(name.split("."))
        reqs.append(_field_req(path, value, op != "!="))
    return lambda obj: all(r(obj) for r in reqs)
