"""Unknown-field detection for built-in kinds, as kube-apiserver's decoder does it.

A real API server drops fields its Go types do not know; with `fieldValidation=Strict` (what kubectl
sends) it rejects them, with `Warn` (the default) it answers with `Warning` headers. The schema of the
built-in types comes from the official `kubernetes` client's generated models (`openapi_types` and
`attribute_map`), imported lazily because that import takes seconds. Seldon's custom resources are
pruned by their CRD schemas where the CRD files are present (harness/sim/api/crdschema.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api import crdschema
from harness.sim.api.resources import ResourceType

_LOCK = threading.Lock()
_MODELS: ModuleType | None = None
_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
# type name -> {JSON field: its type name}, or None for a name the client has no model of
_FIELDS: dict[str, dict[str, str] | None] = {}
_TABLE_LOADED = False
_TABLE_COMPLETE = False  # the table was read: it has every V1/CoreV1 model, so a name it lacks has none
TABLE_FORMAT = 1


def table_path() -> Path:
    """Where `make venv` writes the field table of the installed client (in the environment, never git)."""
    return Path(sys.prefix) / "share" / "seldon-gpu-harness" / f"kubernetes-fields-{_client_version()}.json"


def _client_version() -> str:
    try:
        return importlib.metadata.version("kubernetes")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _models() -> ModuleType:
    global _MODELS
    with _LOCK:
        if _MODELS is None:
            _MODELS = importlib.import_module("kubernetes.client.models")
        return _MODELS


def _load_table() -> None:
    """The prebuilt table, once per process: importing the client's models for the same answers cost
    about 0.6 CPU-seconds in every process that serves the sim's API. A missing or unreadable table
    only means the models are imported as before."""
    global _TABLE_LOADED, _TABLE_COMPLETE
    with _LOCK:
        if _TABLE_LOADED:
            return
        _TABLE_LOADED = True
        try:
            data = json.loads(table_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or (data.get("format"), data.get("kubernetes")) != (TABLE_FORMAT,
                                                                                           _client_version()):
            return
        types = data.get("types")
        if isinstance(types, dict):
            for name, fields in types.items():
                _FIELDS.setdefault(name, fields)
            _TABLE_COMPLETE = True


def warm_up() -> None:
    """Load the field table (or, without one, import the models) ahead of the first request; run it in
    a background thread."""
    _load_table()
    if not _FIELDS:
        _models()


def _fields_from_model(type_name: str) -> dict[str, str] | None:
    model = getattr(_models(), type_name, None)
    if model is None:
        return None
    types: dict[str, str] = getattr(model, "openapi_types", {})
    keys: dict[str, str] = getattr(model, "attribute_map", {})
    return {json_key: types.get(attr, "object") for attr, json_key in keys.items()}


def _fields(type_name: str) -> dict[str, str] | None:
    """The JSON fields of a client model and their type names; None where the client has no such model."""
    if not _TABLE_LOADED:
        _load_table()
    if type_name not in _FIELDS:
        _FIELDS[type_name] = None if _TABLE_COMPLETE else _fields_from_model(type_name)
    return _FIELDS[type_name]


def build_table() -> dict[str, Any]:
    """Every V1 and CoreV1 model of the installed client (the names the walk below looks up)."""
    models = _models()
    names = [n for n in dir(models) if n.startswith(("V1", "CoreV1")) and isinstance(getattr(models, n), type)]
    return {"format": TABLE_FORMAT, "kubernetes": _client_version(),
            "types": {name: _fields_from_model(name) for name in sorted(names)}}


def model_name(rt: ResourceType) -> str | None:
    if rt.group in (SELDON_GROUP, "apiextensions.k8s.io") or rt.version != "v1":
        return None
    for candidate in (f"V1{rt.kind}", f"CoreV1{rt.kind}"):
        if _fields(candidate) is not None:
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
    by_json = _fields(type_name) if type_name[:1] == "V" or type_name.startswith("CoreV") else None
    if by_json is None or not isinstance(value, dict):
        return
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


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.sim.api.fieldcheck --write-table`: write the table for the installed client."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--write-table"]:
        print("usage: python -m harness.sim.api.fieldcheck --write-table", file=sys.stderr)
        return 2
    path = table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(build_table(), sort_keys=True), encoding="utf-8")
    partial.replace(path)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
