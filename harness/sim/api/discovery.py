"""Discovery documents (`/version`, `/api`, `/apis`, resource lists) built from the resource table."""

from __future__ import annotations

from typing import Any

from harness.sim.api.resources import ResourceType, groups, in_group_version

Obj = dict[str, Any]

SERVER_VERSION: Obj = {
    "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "simulated", "gitTreeState": "clean",
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
