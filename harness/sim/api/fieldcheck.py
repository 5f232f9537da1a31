"""Unknown-field detection for built-in kinds, as kube-apiserver's decoder does it.

A real API server drops fields its Go types do not know; with `fieldValidation=Strict` (what kubectl
sends) it rejects them, with `Warn` (the default) it answers with `Warning` headers. The schema of the
built-in types comes from the official `kubernetes` client's generated models (`openapi_types` and
`attribute_map`), imported lazily because that import takes seconds. Seldon's custom resources are
pruned by their CRD schemas where the CRD files are present (harness/sim/api/crdschema.py).
"""

from __future__ import annotations

import importlib
import re
import threading
from types import ModuleType
from typing import Any

from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api import crdschema
from harness.sim.api.resources import ResourceType

_LOCK = threading.Lock()
_MODELS: ModuleType | None = None
_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")


def _models() -> ModuleType:
    global _MODELS
    with _LOCK:
        if _MODELS is None:
            _MODELS = importlib.import_module("kubernetes.client.models")
        return _MODELS


def warm_up() -> None:
    """Import the models ahead of the first request (run it in a background thread)."""
    _models()


def _model(name: str) -> Any:
    return getattr(_models(), name, None)


def model_name(rt: ResourceType) -> str | None:
    if rt.group in (SELDON_GROUP, "apiextensions.k8s.io") or rt.version != "v1":
        return None
    for candidate in (f"V1{rt.kind}", f"CoreV1{rt.kind}"):
        if _model(candidate) is not None:
            return candidate
    return None


def _walk(type_name: str, value: Any, path: str, out: list[str], prune: bool) -> None:
    if value is None:
        return
    m = _LIST.match(type_name)
    if m:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(m.group(1), item, f"{path}[{i}]", out, prune)
        return
    m = _DICT.match(type_name)
    if m:
        if isinstance(value, dict):
            for k, item in value.items():
                _walk(m.group(1), item, f"{path}[{k}]", out, prune)
        return
    model = _model(type_name) if type_name[:1] == "V" or type_name.startswith("CoreV") else None
    if model is None or not isinstance(value, dict):
        return
    types: dict[str, str] = getattr(model, "openapi_types", {})
    keys: dict[str, str] = getattr(model, "attribute_map", {})
    by_json = {json_key: types.get(attr, "object") for attr, json_key in keys.items()}
    for key in list(value):
        if key.startswith("$"):
            continue  # strategic merge patch directives
        child = f"{path}.{key}" if path else key
        if key not in by_json:
            if value[key] is not None:  # a null in a patch deletes, whatever the field
                out.append(child)
            if prune:
                del value[key]
            continue
        _walk(by_json[key], value[key], child, out, prune)


def unknown_fields(rt: ResourceType, obj: Any, *, prune: bool = True) -> list[str]:
    """Paths (`spec.containers[0].imagePullPolcy`) of fields the kind does not have; removed when `prune`."""
    if rt.group == SELDON_GROUP:
        return crdschema.unknown_fields(rt.kind, obj, remove=prune)  # pruned as a structural schema prunes
    name = model_name(rt)
    if name is None or not isinstance(obj, dict):
        return []
    out: list[str] = []
    _walk(name, obj, "", out, prune)
    return out
