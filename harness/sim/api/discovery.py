"""Discovery documents (`/version`, `/api`, `/apis`, resource lists) built from the resource table."""

from __future__ import annotations

from typing import Any

from harness.sim.api import openapi
from harness.sim.api.resources import ResourceType, groups, in_group_version
from harness.sim.contracts import SIMULATED_BUILD

Obj = dict[str, Any]

SERVER_VERSION: Obj = {
    "major": "1", "minor": "33", "gitVersion": f"v1.33.1+{SIMULATED_BUILD}", "gitCommit": "simulated",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
}

_SUB: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # subresource -> (kind, group, verbs)
    "status": ("", "", ("get", "patch", "update")),
    "log": ("Pod", "", ("get",)),
    "binding": ("Binding", "", ("create",)),
    "eviction": ("Eviction", "policy", ("create",)),
    "scale": ("Scale", "autoscaling", ("get", "patch", "update")),
}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> Obj:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list() -> Obj:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(name, versions) for name, versions in groups().items()]}


def api_group(name: str) -> Obj | None:
    versions = groups().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _resource_entry(r: ResourceType) -> Obj:
    entry: Obj = {"name": r.plural, "singularName": r.singular_name, "namespaced": r.namespaced,
                  "kind": r.kind, "verbs": list(r.verbs)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def resource_list(group: str, version: str) -> Obj | None:
    resources = in_group_version(group, version)
    if not resources:
        return None
    out: list[Obj] = []
    for r in resources:
        out.append(_resource_entry(r))
        for sub in r.subresources:
            kind, sub_group, verbs = _SUB[sub]
            item: Obj = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                         "kind": kind or r.kind, "verbs": list(verbs)}
            if sub_group:
                item["group"], item["version"] = sub_group, "v1"
            out.append(item)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


# ---------------------------------------------------------------- OpenAPI v3 (what kubectl uses)
# kubectl decides whether the server validates fields itself (`fieldValidation=Strict`) by looking for
# that query parameter on the PATCH operation of the kind's path in /openapi/v3: declaring it lets
# kubectl create/apply leave validation to the server (which rejects unknown fields of built-in kinds).
# `components.schemas` carries every served kind's schema (harness/sim/api/openapi.py), which is what
# `kubectl explain` reads.
OPENAPI_HASH = "sim-0002"
_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_root() -> Obj:
    seen: dict[str, Obj] = {}
    for group, versions in [("", ["v1"]), *groups().items()]:
        for version in versions:
            path = _gv_path(group, version)
            seen[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={OPENAPI_HASH}"}
    return {"paths": seen}


def openapi_v3_group_version(group: str, version: str) -> Obj | None:
    resources = in_group_version(group, version)
    if not resources:
        return None
    params = [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in _QUERY_PARAMS]
    paths: dict[str, Obj] = {}
    for r in resources:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        base = f"/{_gv_path(group, version)}" + ("/namespaces/{namespace}" if r.namespaced else "")
        response: Obj = {"description": "OK"}
        name = openapi.schema_name(r)
        if name is not None:
            response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": response}}
        paths[f"{base}/{r.plural}/{{name}}"] = {"get": op, "put": op, "patch": op, "delete": op}
        paths[f"{base}/{r.plural}"] = {"get": {**op, "responses": {"200": {"description": "OK"}}}, "post": op}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (simulated)", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": dict(openapi.group_version_schemas(group, version))}}
