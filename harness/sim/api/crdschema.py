"""Seldon objects checked against Seldon's own CRD schemas, as the API server checks custom resources.

The schemas are read at run time from the CRD files of SeldonIO/seldon-core v2.10.2
(operator/config/crd/bases/mlops.seldon.io_<plural>.yaml), looked for in `$HARNESS_SELDON_CRDS` or in
`../shared/seldon-crds` beside the repository. They are Business Source License files: they are never
copied into this project, only read where they already are. Without them the sim says so once in its
log and checks only the required fields it knows (`MINIMAL_REQUIRED`), and `schema_source()` says which.

What the API server does with a structural schema (kubernetes/kubernetes
staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema: pruning, and validation through
kube-openapi's validate package; commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282), as far as these
schemas use it: unknown fields are pruned (with `fieldValidation=Strict`, refused; with Warn, warned
about) unless `x-kubernetes-preserve-unknown-fields`; then `type`, `required`, `enum`, `pattern`,
`minimum`/`maximum` and `x-kubernetes-int-or-string` give 422 Invalid, worded as there
("spec.replicas in body must be of type integer: \"string\"").
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
Cause = tuple[str, str, str]

log = logging.getLogger(__name__)

PLURALS = {"Model": "models", "Server": "servers", "ServerConfig": "serverconfigs"}
MINIMAL_REQUIRED = {"Model": "storageUri", "Server": "serverConfig"}
_LOCK = threading.Lock()
_SCHEMAS: dict[str, Obj | None] = {}
_SAID_ABSENT = False


def crd_dir() -> Path | None:
    configured = os.environ.get("HARNESS_SELDON_CRDS")
    if configured:
        return Path(configured)
    candidate = Path(__file__).resolve().parents[3].parent / "shared" / "seldon-crds"
    return candidate if candidate.is_dir() else None


def schema(kind: str) -> Obj | None:
    """The openAPIV3Schema of a Seldon kind, or None when the CRD files are not here."""
    global _SAID_ABSENT
    plural = PLURALS.get(kind)
    if plural is None:
        return None
    with _LOCK:
        if kind in _SCHEMAS:
            return _SCHEMAS[kind]
        folder = crd_dir()
        path = folder / f"mlops.seldon.io_{plural}.yaml" if folder else None
        loaded: Obj | None = None
        if path is not None and path.is_file():
            # The C safe loader where PyYAML has it: the Server CRD is 600 KB, seconds for the pure-Python one.
            with path.open(encoding="utf-8") as fh:
                crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            loaded = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        elif not _SAID_ABSENT:
            _SAID_ABSENT = True
            log.warning("Seldon CRD files not found (set HARNESS_SELDON_CRDS or put them in ../shared/seldon-crds): "
                        "the simulated API server checks only Model.spec.storageUri and Server.spec.serverConfig")
        _SCHEMAS[kind] = loaded
        return loaded


def forget() -> None:
    """Drop the loaded schemas (tests that move `HARNESS_SELDON_CRDS`)."""
    global _SAID_ABSENT
    with _LOCK:
        _SCHEMAS.clear()
        _SAID_ABSENT = False


def schema_source() -> str:
    folder = crd_dir()
    return f"CRD schemas from {folder}" if folder else "no CRD files: required fields only"


# JSON types by Python type; bool before int (a bool is an int in Python, never in JSON).
_JSON_TYPES: tuple[tuple[type, str], ...] = ((bool, "boolean"), (int, "integer"), (float, "number"),
                                             (str, "string"), (list, "array"), (dict, "object"))


def _type_name(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


def _type_ok(expected: str, value: Any) -> bool:
    actual = _type_name(value)
    return actual == expected or (expected == "number" and actual == "integer")


def _go_value(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def prune(node: Obj, value: Any, path: str, out: list[str], remove: bool) -> None:
    """Structural pruning: fields the schema does not declare (listed in `out`; removed when `remove`)."""
    if (isinstance(value, dict) and node.get("type") == "object") or (isinstance(value, dict) and "properties" in node):
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = node.get("properties")
        extra = node.get("additionalProperties")
        for key in list(value):
            child = f"{path}.{key}" if path else key
            if isinstance(props, dict) and key in props:
                prune(props[key], value[key], child, out, remove)
            elif isinstance(extra, dict):
                prune(extra, value[key], child, out, remove)
            elif props is not None or extra is False:
                out.append(child)
                if remove:
                    del value[key]
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            prune(node["items"], item, f"{path}[{i}]", out, remove)


def _check(node: Obj, value: Any, path: str, causes: list[Cause]) -> None:
    if value is None:
        return  # nullable, or a null the API server drops before validation
    if node.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            causes.append(("FieldValueInvalid", path, f'Invalid value: "{_type_name(value)}": {path} in body must be '
                           f'of type integer,string: "{_type_name(value)}"'))
            return
    elif node.get("type") and not _type_ok(str(node["type"]), value):
        actual = _type_name(value)
        causes.append(("FieldValueInvalid", path, f'Invalid value: "{actual}": {path} in body must be of type '
                       f'{node["type"]}: "{actual}"'))
        return
    if "enum" in node and value not in node["enum"]:
        causes.append(("FieldValueNotSupported", path, f"Unsupported value: {_go_value(value)}: supported values: "
                       + ", ".join(_go_value(v) for v in node["enum"])))
    if isinstance(value, str) and node.get("pattern") and not re.search(str(node["pattern"]), value):
        causes.append(("FieldValueInvalid", path, f'Invalid value: "{value}": {path} in body should match '
                       f"'{node['pattern']}'"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            causes.append(("FieldValueInvalid", path, f"Invalid value: {value}: {path} in body should be greater "
                           f"than or equal to {node['minimum']}"))
        if "maximum" in node and value > node["maximum"]:
            causes.append(("FieldValueInvalid", path, f"Invalid value: {value}: {path} in body should be less "
                           f"than or equal to {node['maximum']}"))
    if isinstance(value, dict):
        for req in node.get("required") or []:
            if value.get(req) is None:
                causes.append(("FieldValueRequired", f"{path}.{req}", "Required value"))
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if isinstance(props, dict) else None
            if sub is None and isinstance(extra, dict):
                sub = extra
            if isinstance(sub, dict):
                _check(sub, item, f"{path}.{key}", causes)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            _check(node["items"], item, f"{path}[{i}]", causes)


def causes(kind: str, obj: Obj, old: Obj | None = None) -> list[Cause]:
    """422 causes for a Seldon object's spec (status is the controller's and is not checked here).

    On an update, what was already invalid and did not change passes (CRD validation ratcheting,
    on by default since Kubernetes 1.30): a controller can still update an object stored before the
    schema refused it."""
    found = _causes(kind, obj)
    if old is None or not found:
        return found
    before = set(_causes(kind, old))
    return [c for c in found if c not in before]


def _causes(kind: str, obj: Obj) -> list[Cause]:
    root = schema(kind)
    spec = obj.get("spec")
    if root is None:
        wanted = MINIMAL_REQUIRED.get(kind)
        if wanted and (not isinstance(spec, dict) or spec.get(wanted) in (None, "")):
            return [("FieldValueRequired", f"spec.{wanted}", "Required value")]
        return []
    props = root.get("properties") or {}
    found: list[Cause] = []
    for key in ("spec",):
        node = props.get(key)
        if isinstance(node, dict):
            if spec is None and key in (root.get("required") or []):
                found.append(("FieldValueRequired", key, "Required value"))
            else:
                _check(node, spec, key, found)
    return found


def unknown_fields(kind: str, obj: Any, *, remove: bool = True) -> list[str]:
    """Paths of fields Seldon's schema does not declare (metadata and status left to the API server)."""
    root = schema(kind)
    if root is None or not isinstance(obj, dict):
        return []
    out: list[str] = []
    props = root.get("properties") or {}
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata", "status"):
            continue
        if key not in props:
            out.append(key)
            if remove:
                del obj[key]
            continue
        prune(props[key], obj[key], key, out, remove)
    return out
