"""Server-side printing: `meta.k8s.io/v1` Table responses, the way kubectl prefers to receive lists.

Columns follow what kubectl shows for the built-in kinds the harness inspects; other kinds get
NAME and AGE (plus READY from a `Ready` condition when the object has one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from harness.k8s.conditions import condition_status
from harness.k8s.seldon_api import SELDON_GROUP

Obj = dict[str, Any]
Column = tuple[str, str, int]  # (name, type, priority: 0 always shown, 1 only with -o wide)


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    secs = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 8:
        return f"{hours}h{mins % 60}m" if mins % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _age(obj: Obj) -> str:
    return human_age(_meta(obj).get("creationTimestamp"))


def _pod_row(pod: Obj) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in reversed(statuses):  # like kubectl's printer: the first container's state wins
        state = s.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                      else f"ExitCode:{terminated.get('exitCode', 0)}")
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    return [_meta(pod).get("name", ""), f"{ready}/{len(spec.get('containers') or [])}", reason, restarts, _age(pod),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>", "<none>", "<none>"]


def _node_row(node: Obj) -> list[Any]:
    meta, spec, status = _meta(node), node.get("spec") or {}, node.get("status") or {}
    ready = condition_status(node, "Ready")
    state = "Ready" if ready == "True" else "NotReady" if ready is not None else "Unknown"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or [] if isinstance(a, dict)}
    return [meta.get("name", ""), state, ",".join(roles) or "<none>", _age(node), info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _workload_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [_meta(obj).get("name", ""), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", _age(obj)]


def _deploy_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [_meta(obj).get("name", ""), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj)]


def _ds_row(obj: Obj) -> list[Any]:
    s = obj.get("status") or {}
    return [_meta(obj).get("name", ""), s.get("desiredNumberScheduled", 0), s.get("currentNumberScheduled", 0),
            s.get("numberReady", 0), s.get("updatedNumberScheduled", 0), s.get("numberAvailable", 0), _age(obj)]


def _svc_row(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(str(i.get("ip") or i.get("hostname")) for i in ingress) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    ports = ",".join(
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or [])
    return [_meta(obj).get("name", ""), spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), external,
            ports or "<none>", _age(obj)]


def _ns_row(obj: Obj) -> list[Any]:
    return [_meta(obj).get("name", ""), (obj.get("status") or {}).get("phase", "Active"), _age(obj)]


def _event_row(obj: Obj) -> list[Any]:
    inv = obj.get("involvedObject") or {}
    return [human_age(obj.get("lastTimestamp")), obj.get("type", ""), obj.get("reason", ""),
            f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}", obj.get("message", "")]


def _seldon_model_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [_meta(obj).get("name", ""), condition_status(obj, "Ready") or "", spec.get("replicas", 1),
            status.get("availableReplicas", 0), _age(obj)]


def _seldon_server_row(obj: Obj) -> list[Any]:
    status = obj.get("status") or {}
    return [_meta(obj).get("name", ""), condition_status(obj, "Ready") or "", status.get("replicas", 0),
            status.get("loadedModels", 0), _age(obj)]


_S, _I = "string", "integer"
LAYOUTS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "Pod": ([("Name", _S, 0), ("Ready", _S, 0), ("Status", _S, 0), ("Restarts", _I, 0), ("Age", _S, 0),
             ("IP", _S, 1), ("Node", _S, 1), ("Nominated Node", _S, 1), ("Readiness Gates", _S, 1)], _pod_row),
    "Node": ([("Name", _S, 0), ("Status", _S, 0), ("Roles", _S, 0), ("Age", _S, 0), ("Version", _S, 0),
              ("Internal-IP", _S, 1), ("External-IP", _S, 1), ("OS-Image", _S, 1), ("Kernel-Version", _S, 1),
              ("Container-Runtime", _S, 1)], _node_row),
    "StatefulSet": ([("Name", _S, 0), ("Ready", _S, 0), ("Age", _S, 0)], _workload_row),
    "Deployment": ([("Name", _S, 0), ("Ready", _S, 0), ("Up-to-date", _I, 0), ("Available", _I, 0),
                    ("Age", _S, 0)], _deploy_row),
    "DaemonSet": ([("Name", _S, 0), ("Desired", _I, 0), ("Current", _I, 0), ("Ready", _I, 0),
                   ("Up-to-date", _I, 0), ("Available", _I, 0), ("Age", _S, 0)], _ds_row),
    "Service": ([("Name", _S, 0), ("Type", _S, 0), ("Cluster-IP", _S, 0), ("External-IP", _S, 0),
                 ("Port(s)", _S, 0), ("Age", _S, 0)], _svc_row),
    "Namespace": ([("Name", _S, 0), ("Status", _S, 0), ("Age", _S, 0)], _ns_row),
    "Event": ([("Last Seen", _S, 0), ("Type", _S, 0), ("Reason", _S, 0), ("Object", _S, 0), ("Message", _S, 0)],
              _event_row),
}


# Seldon kinds: the columns their CRDs declare (names and meaning; rendered here)
CUSTOM_LAYOUTS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "Model": ([("Name", _S, 0), ("Ready", _S, 0), ("Desired Replicas", _I, 0), ("Available Replicas", _I, 0),
               ("Age", _S, 0)], _seldon_model_row),
    "Server": ([("Name", _S, 0), ("Ready", _S, 0), ("Replicas", _I, 0), ("Loaded Models", _I, 0),
                ("Age", _S, 0)], _seldon_server_row),
}


def _columns_for(kind: str, items: list[Obj], group: str = "") -> tuple[list[Column], Callable[[Obj], list[Any]]]:
    if group == SELDON_GROUP and kind in CUSTOM_LAYOUTS:
        return CUSTOM_LAYOUTS[kind]
    if kind in LAYOUTS:
        return LAYOUTS[kind]
    with_ready = any(condition_status(o, "Ready") is not None for o in items)
    cols: list[Column] = [("Name", _S, 0)] + ([("Ready", _S, 0)] if with_ready else []) + [("Age", _S, 0)]

    def row(obj: Obj) -> list[Any]:
        ready = condition_status(obj, "Ready")
        return [_meta(obj).get("name", "")] + ([ready or "Unknown"] if with_ready else []) + [_age(obj)]
    return cols, row


def to_table(kind: str, items: list[Obj], resource_version: str, include_object: str = "Metadata",
             group: str = "") -> Obj:
    columns, row = _columns_for(kind, items, group)
    rows = []
    for obj in items:
        entry: Obj = {"cells": row(obj)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": _meta(obj)}
        rows.append(entry)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n,
                               "priority": p} for n, t, p in columns],
        "rows": rows,
    }
