"""OpenAPI v3 schemas for the simulated API server: enough for `kubectl explain` on every kind it serves.

kube-apiserver publishes one document per group-version under `/openapi/v3/<api/v1|apis/G/V>`;
kubectl explain finds the kind's schema by its `x-kubernetes-group-version-kind` extension and follows
`$ref`s through `components.schemas` (kubernetes/kubectl pkg/explain/v2, kube-openapi spec3).

Built-in kinds: the schemas are derived from the official `kubernetes` client's generated models
(field types from `openapi_types`, JSON names from `attribute_map`, descriptions from the models'
field docs), which are themselves generated from kube-apiserver's OpenAPI document. Seldon kinds:
the fields the harness writes and reads, described here in our own words from Seldon's documented
types (operator/apis/mlops/v1alpha1 in SeldonIO/seldon-core v2.10.2); Seldon's CRD files are not
used (they are BSL-licensed) and fields beyond these are shown as free-form objects.
"""

from __future__ import annotations

import importlib
import re
import threading
from functools import lru_cache
from typing import Any

from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api.fieldcheck import model_name
from harness.sim.api.patch import MERGE_KEYS, MERGED_PRIMITIVES
from harness.sim.api.resources import ResourceType, in_group_version

Obj = dict[str, Any]

_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
_PRIMITIVES: dict[str, Obj] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytearray": {"type": "string", "format": "byte"},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}
_LOCK = threading.Lock()


def _models() -> Any:
    with _LOCK:
        return importlib.import_module("kubernetes.client.models")


def _model(name: str) -> Any:
    return getattr(_models(), name, None) if name[:1] == "V" or name.startswith("CoreV") else None


def ref_name(model_name: str) -> str:
    """A schema's name under `components.schemas`, dotted like kube-apiserver's (`io.k8s.api.core.v1.Pod`),
    so that kubectl shows the type as `Pod`, not as the client's class name: `V1Pod` -> `io.k8s.v1.Pod`,
    `CoreV1Event` -> `io.k8s.core.v1.Event`."""
    m = re.match(r"^(Core)?V(\d+)((?:alpha|beta)\d+)?(.+)$", model_name)
    if m is None:
        return model_name
    core, major, pre, rest = m.groups()
    return f"io.k8s.{'core.' if core else ''}v{major}{pre or ''}.{rest}"


def _description(model: Any, attr: str) -> str:
    fields = getattr(model, "model_fields", None)
    field = fields.get(attr) if isinstance(fields, dict) else None
    return str(getattr(field, "description", "") or "")


def _type_schema(type_name: str, schemas: dict[str, Obj]) -> Obj:
    m = _LIST.match(type_name)
    if m:
        return {"type": "array", "items": _type_schema(m.group(1), schemas)}
    m = _DICT.match(type_name)
    if m:
        return {"type": "object", "additionalProperties": _type_schema(m.group(1), schemas)}
    if type_name in _PRIMITIVES:
        return dict(_PRIMITIVES[type_name])
    if _model(type_name) is None:
        return dict(_PRIMITIVES["object"])
    _add_model(type_name, schemas)
    return {"$ref": f"#/components/schemas/{ref_name(type_name)}"}


def _patch_extensions(model_name: str, json_name: str, prop: Obj) -> Obj:
    """kubectl builds client-side apply patches of built-in kinds from these extensions: lists merged by
    a key carry it (the same facts the sim's strategic merge patch uses, harness/sim/api/patch.py)."""
    if prop.get("type") != "array":
        return {}
    if json_name in MERGED_PRIMITIVES:
        return {"x-kubernetes-patch-strategy": "merge"}
    key = MERGE_KEYS.get(json_name)
    if json_name == "ports":
        key = "containerPort" if model_name.endswith("Container") else "port" if model_name == "V1ServiceSpec" \
            else None
    return {"x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": key} if key else {}


def _add_model(name: str, schemas: dict[str, Obj]) -> None:
    if ref_name(name) in schemas:
        return
    model = _model(name)
    # the generator puts the type's description first, then a fixed "Attributes:" block
    doc = (model.__doc__ or "").split("Attributes:")[0]
    schema: Obj = {"type": "object", "description": " ".join(doc.split())}
    schemas[ref_name(name)] = schema  # before the fields: models refer to themselves (JSONSchemaProps) or each other
    props: Obj = {}
    for attr, json_name in (getattr(model, "attribute_map", {}) or {}).items():
        prop = _type_schema(str((getattr(model, "openapi_types", {}) or {}).get(attr, "object")), schemas)
        prop.update(_patch_extensions(name, json_name, prop))
        text = _description(model, attr)
        # kube-openapi wraps a described $ref in allOf, as kube-apiserver's own documents do
        props[json_name] = {"allOf": [prop], "description": text} if "$ref" in prop and text else \
            ({**prop, "description": text} if text else prop)
    schema["properties"] = props


# --- Seldon kinds (our description of the fields the harness uses) ---------------------------------------

def _s(text: str, kind: str = "string", **more: Any) -> Obj:
    return {"type": kind, "description": text, **more}


_STRINGS = {"type": "array", "items": {"type": "string"}}
_CONDITIONS = {"type": "array", "description": "Conditions of the object (knative style: the dependent "
               "condition and Ready).", "items": {"type": "object", "properties": {
                   "type": _s("Type of the condition."), "status": _s("True, False or Unknown."),
                   "reason": _s("Why, in one word or phrase."), "message": _s("Details."),
                   "lastTransitionTime": _s("When the condition last changed.", format="date-time")}}}
_SCALING = {
    "replicas": _s("Number of replicas.", "integer", format="int32"),
    "minReplicas": _s("Minimum number of replicas: the model is scheduled on fewer than `replicas` "
                      "when no Server has that many, as long as it has this many.", "integer", format="int32"),
    "maxReplicas": _s("Maximum number of replicas.", "integer", format="int32"),
}
_SELDON: dict[str, Obj] = {
    "Model": {
        "spec": {"type": "object", "description": "What to load and where it may run.", "required": ["storageUri"],
                 "properties": {
                     "storageUri": _s("Where the model artifacts are (rclone-style URI)."),
                     "requirements": {**_STRINGS, "description": "Capabilities a Server must offer "
                                      "(each trimmed, then matched exactly)."},
                     "server": _s("Pin the model to this Server (no fallback)."),
                     "memory": _s("Memory the model needs on a replica (a quantity).",
                                  "string", **{"x-kubernetes-int-or-string": True}),
                     "modelType": _s("Added to the requirements."),
                     "artifactVersion": _s("Version of the artifact.", "integer", format="int32"),
                     "secretName": _s("Secret holding the storage credentials."),
                     "parameters": {"type": "array", "description": "Parameters passed to the model.",
                                    "items": {"type": "object", "properties": {"name": _s("Name."),
                                                                              "value": _s("Value.")}}},
                     "dedicated": _s("Documented as doing nothing.", "boolean"),
                     "preloaded": _s("Documented as doing nothing.", "boolean"),
                     **_SCALING,
                 }, "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "description": "Where the model landed and how many replicas serve it.",
                   "properties": {
                       "conditions": _CONDITIONS,
                       "replicas": _s("Replicas targeted (available + unavailable); omitted when 0.", "integer"),
                       "availableReplicas": _s("Replicas serving; omitted when 0.", "integer"),
                       "selector": _s("`server=<Server>`: where the model is scheduled."),
                   }},
    },
    "Server": {
        "spec": {"type": "object", "description": "An inference server: a ServerConfig plus overrides.",
                 "required": ["serverConfig"], "properties": {
                     "serverConfig": _s("The ServerConfig (in the controller's namespace) to start from."),
                     "capabilities": {**_STRINGS, "description": "Replace the ServerConfig's capabilities."},
                     "extraCapabilities": {**_STRINGS, "description": "Add to the ServerConfig's capabilities."},
                     "podSpec": {"type": "object", "description": "Merged over the ServerConfig's pod spec "
                                 "(tolerations and volumes appended, nodeSelector merged, affinity replaced, "
                                 "containers merged by name).", "x-kubernetes-preserve-unknown-fields": True},
                     **_SCALING,
                 }, "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "description": "The Server's StatefulSet and what it has loaded.",
                   "properties": {
                       "conditions": _CONDITIONS,
                       "loadedModels": _s("Model replicas loaded on the Server's replicas.", "integer"),
                       "replicas": _s("Desired replicas.", "integer"),
                       "selector": _s("Label selector of the Server's pods."),
                   }},
    },
    "ServerConfig": {
        "spec": {"type": "object", "description": "A whole pod template for Servers (it replaces the default "
                 "one; it is not merged with it).", "properties": {
                     "podSpec": {"type": "object", "description": "The pod spec.",
                                 "x-kubernetes-preserve-unknown-fields": True},
                     "volumeClaimTemplates": {"type": "array", "description": "Volume claims per replica.",
                                              "items": {"type": "object",
                                                        "x-kubernetes-preserve-unknown-fields": True}},
                 }},
    },
}


def _seldon_schema(rt: ResourceType, schemas: dict[str, Obj]) -> str:
    name = f"io.seldon.mlops.{rt.version}.{rt.kind}"
    _add_model("V1ObjectMeta", schemas)
    schemas[name] = {"type": "object", "description": f"Seldon Core 2 {rt.kind}.", "properties": {
        "apiVersion": _s("APIVersion of this representation."), "kind": _s("Kind of this object."),
        "metadata": {"allOf": [{"$ref": f"#/components/schemas/{ref_name('V1ObjectMeta')}"}],
                     "description": "Standard object metadata."},
        **_SELDON.get(rt.kind, {}),
    }}
    return name


@lru_cache(maxsize=64)
def group_version_schemas(group: str, version: str) -> tuple[tuple[str, Obj], ...]:
    """`components.schemas` of one group-version document (cached: building it walks many models)."""
    schemas: dict[str, Obj] = {}
    for rt in in_group_version(group, version):
        gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
        if rt.group == SELDON_GROUP:
            name: str | None = _seldon_schema(rt, schemas)
        else:
            model = model_name(rt)
            name = None if model is None else ref_name(model)
            if model is not None:
                _add_model(model, schemas)
        if name is not None:
            schemas[name] = {**schemas[name], "x-kubernetes-group-version-kind": gvk}
    return tuple(sorted(schemas.items()))


def schema_name(rt: ResourceType) -> str | None:
    """The name under `components.schemas` of a kind's schema, or None when none is published."""
    if rt.group == SELDON_GROUP:
        return f"io.seldon.mlops.{rt.version}.{rt.kind}"
    model = model_name(rt)
    return None if model is None else ref_name(model)
