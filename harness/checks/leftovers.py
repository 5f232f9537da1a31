"""What a run left behind: compare two captures of cluster state (namespaces, pods, nodes, Seldon CRs)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
State = dict[str, Any]


def capture(nodes: list[Obj], namespaces: list[Obj], pods: list[Obj], servers: list[Obj],
            models: list[Obj]) -> State:
    """The parts of a cluster a harness run may touch, in a comparable form."""
    def ids(objs: list[Obj]) -> list[str]:
        return sorted(f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in objs)

    return {
        "namespaces": sorted(n["metadata"]["name"] for n in namespaces),
        "pods": ids(pods),
        "servers": ids(servers),
        "models": ids(models),
        "nodes": {
            n["metadata"]["name"]: {
                "taints": sorted(
                    f"{t.get('key')}={t.get('value') or ''}:{t.get('effect')}"
                    for t in (n.get("spec") or {}).get("taints") or []
                ),
                "labels": dict(sorted((n["metadata"].get("labels") or {}).items())),
                "capacity": dict(sorted(((n.get("status") or {}).get("capacity") or {}).items())),
                "unschedulable": bool((n.get("spec") or {}).get("unschedulable")),
            }
            for n in nodes
        },
    }


def differences(before: State, after: State) -> list[str]:
    """Every difference, one readable line each; empty when the run left the cluster as it found it."""
    out: list[str] = []
    for key in ("namespaces", "pods", "servers", "models"):
        added = sorted(set(after[key]) - set(before[key]))
        removed = sorted(set(before[key]) - set(after[key]))
        out += [f"{key[:-1]} {x} left behind" for x in added]
        out += [f"{key[:-1]} {x} disappeared" for x in removed]
    for name in sorted(set(before["nodes"]) | set(after["nodes"])):
        b, a = before["nodes"].get(name), after["nodes"].get(name)
        if b is None or a is None:
            out.append(f"node {name} {'appeared' if b is None else 'disappeared'}")
            continue
        for field in ("taints", "labels", "capacity", "unschedulable"):
            if b[field] != a[field]:
                out.append(f"node {name} {field} changed: {b[field]} -> {a[field]}")
    return out
