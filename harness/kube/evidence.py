"""Evidence collection on failure: what a human needs to see why a run went wrong.

Best effort by contract: `collect_evidence` never raises (a failing collector is written to
`errors.txt` and the others go on), so it can never mask the test's own failure. Everything
written passes through `redact` first: bearer tokens, kubeconfig secrets and storage credentials
must not end up in CI artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.fsio import write_atomic
from harness.k8s.seldon_api import SELDON_API, SERVER_NAME_LABEL
from harness.kube.client import Kube, event_time
from harness.kube.tools import HelmRunner
from harness.redact import redact, redact_tree
from harness.render.labels import RUN_ID_KEY

Obj = dict[str, Any]

SELDON_KINDS = ("Server", "Model", "ServerConfig")
HELM_RELEASES = ("seldon-core-v2-crds", "seldon-core-v2-setup", "seldon-core-v2-runtime")
LOG_TAIL_LINES = 2000

def pods_wide(pods: list[Obj]) -> str:
    """The `kubectl get pods -o wide` columns, for humans reading artifacts."""
    header = ("NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE")
    rows: list[tuple[str, ...]] = [header]
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"].get("name", ""))):
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        ready = sum(1 for c in statuses if c.get("ready"))
        total = len(spec.get("containers") or statuses)
        reason = status.get("phase", "Unknown")
        for c in statuses:
            waiting = ((c.get("state") or {}).get("waiting") or {}).get("reason")
            if waiting:
                reason = waiting
        if meta.get("deletionTimestamp"):
            reason = "Terminating"
        restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
        rows.append((meta.get("namespace", ""), meta.get("name", ""), f"{ready}/{total}", reason, str(restarts),
                     meta.get("creationTimestamp", ""), status.get("podIP", "<none>") or "<none>",
                     spec.get("nodeName", "<none>") or "<none>"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"


def events_table(events: list[Obj]) -> str:
    lines = ["TIME  NAMESPACE  TYPE  REASON  OBJECT  COUNT  MESSAGE"]
    for e in sorted(events, key=event_time):
        inv = e.get("involvedObject") or {}
        lines.append(
            f"{event_time(e)}  {(e.get('metadata') or {}).get('namespace', '')}  {e.get('type', '')}  "
            f"{e.get('reason', '')}  {inv.get('kind', '')}/{inv.get('name', '')}  {e.get('count', 1)}  "
            f"{e.get('message', '')}".rstrip())
    return "\n".join(lines) + "\n"


def nodes_table(nodes: list[Obj]) -> str:
    out: list[Obj] = []
    for n in sorted(nodes, key=lambda x: x["metadata"].get("name", "")):
        status = n.get("status") or {}
        out.append({
            "name": n["metadata"].get("name"),
            "labels": n["metadata"].get("labels") or {},
            "taints": (n.get("spec") or {}).get("taints") or [],
            "unschedulable": bool((n.get("spec") or {}).get("unschedulable")),
            "capacity": status.get("capacity") or {},
            "allocatable": status.get("allocatable") or {},
            "conditions": {c.get("type"): c.get("status") for c in status.get("conditions") or []},
        })
    return yaml.safe_dump(out, sort_keys=True)


class _Collector:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[Path] = []
        self.errors: list[str] = []

    def write(self, rel: str, text: str) -> None:
        path = self.out_dir / rel
        try:
            write_atomic(path, redact(text))
            self.written.append(path)
        except OSError as exc:
            self.errors.append(f"writing {rel}: {exc}")

    def attempt(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # best effort by contract: record and go on
            self.errors.append(f"{what}: {exc.__class__.__name__}: {exc}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def collect_evidence(kube: Kube, out_dir: Path, namespaces: list[str], *, seldon_namespace: str,
                     helm: HelmRunner | None = None, only_run: str | None = None) -> list[Path]:
    """Write the evidence files under `out_dir`; return the paths written. Never raises.

    `only_run`: on a shared cluster the Seldon namespace holds other teams' Servers, Models, pods,
    logs and events; with a run id here only this run's objects from it (labelled with the run id,
    and the pods of its Servers) and the events about them are copied. The run's own `namespaces`
    are copied whole.
    """
    c = _Collector(Path(out_dir))
    try:
        _collect(c, kube, Path(out_dir), namespaces, seldon_namespace, helm, only_run)
    except Exception as exc:  # never raise: the caller is already handling a failure
        c.errors.append(f"evidence collection stopped early: {exc.__class__.__name__}: {exc}")
    if c.errors:
        c.write("errors.txt", "\n".join(c.errors) + "\n")
    return c.written


def _owned(obj: Obj, run_id: str) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(RUN_ID_KEY) == run_id


def _run_scope(kube: Kube, namespace: str, run_id: str) -> tuple[set[str], set[str]]:
    """(names of this run's objects in `namespace`, names of its Servers)."""
    names: set[str] = set()
    servers: set[str] = set()
    for kind in SELDON_KINDS:
        for item in kube.list(SELDON_API, kind, namespace):
            if _owned(item, run_id):
                names.add(item["metadata"]["name"])
                if kind == "Server":
                    servers.add(item["metadata"]["name"])
    return names, servers


def _in_scope(obj: Obj, own: set[str], servers: set[str], run_id: str) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (_owned(obj, run_id) or meta.get("name") in own
            or labels.get(SERVER_NAME_LABEL) in servers)


def _collect(c: _Collector, kube: Kube, out_dir: Path, namespaces: list[str], seldon_namespace: str,
             helm: HelmRunner | None, only_run: str | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    spaces = list(dict.fromkeys([*namespaces, seldon_namespace]))
    shared = {seldon_namespace} - set(namespaces) if only_run is not None else set()
    all_events: list[Obj] = []
    all_pods: list[Obj] = []
    own: set[str] = set()
    servers: set[str] = set()
    if shared and only_run is not None:
        scope = _run_scope(kube, seldon_namespace, only_run)
        own, servers = scope

    for ns in spaces:
        def events(ns: str = ns) -> None:
            all_events.extend(kube.list("v1", "Event", ns))

        def pods(ns: str = ns) -> None:
            all_pods.extend(kube.list("v1", "Pod", ns))

        c.attempt(f"events in {ns}", events)
        c.attempt(f"pods in {ns}", pods)

    if shared and only_run is not None:
        run_id = only_run
        all_pods = [p for p in all_pods if (p.get("metadata") or {}).get("namespace") not in shared
                    or _in_scope(p, own, servers, run_id)]
        own |= {p["metadata"]["name"] for p in all_pods if p["metadata"].get("namespace") in shared}
        # StatefulSets are named after their Servers; events about them are this run's too.
        own |= servers
        all_events = [e for e in all_events if (e.get("metadata") or {}).get("namespace") not in shared
                      or (e.get("involvedObject") or {}).get("name") in own]

    c.write("events.txt", events_table(all_events))
    c.write("pods-wide.txt", pods_wide(all_pods))

    for pod in all_pods:
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        base = f"pods/{_safe(ns)}/{_safe(name)}"
        c.write(f"{base}/describe.yaml", yaml.safe_dump(redact_tree(pod), sort_keys=False))
        pod_events = [e for e in all_events if (e.get("involvedObject") or {}).get("name") == name
                      and (e.get("metadata") or {}).get("namespace") == ns]
        if pod_events:
            c.write(f"{base}/events.txt", events_table(pod_events))
        statuses = {s.get("name"): s for s in ((pod.get("status") or {}).get("containerStatuses") or [])
                    + ((pod.get("status") or {}).get("initContainerStatuses") or [])}
        spec = pod.get("spec") or {}
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cname = container.get("name", "")
            status = statuses.get(cname) or {}

            def logs(cname: str = cname, ns: str = ns, name: str = name, base: str = base) -> None:
                c.write(f"{base}/{_safe(cname)}.log", kube.logs(ns, name, cname, tail=LOG_TAIL_LINES))

            c.attempt(f"logs of {ns}/{name}/{cname}", logs)
            if int(status.get("restartCount", 0)) > 0:
                def previous(cname: str = cname, ns: str = ns, name: str = name, base: str = base) -> None:
                    c.write(f"{base}/{_safe(cname)}.previous.log",
                            kube.logs(ns, name, cname, previous=True, tail=LOG_TAIL_LINES))

                c.attempt(f"previous logs of {ns}/{name}/{cname}", previous)

    def nodes() -> None:
        c.write("nodes.yaml", nodes_table(kube.list("v1", "Node")))

    c.attempt("nodes", nodes)

    for kind in SELDON_KINDS:
        def crs(kind: str = kind) -> None:
            items = kube.list(SELDON_API, kind, seldon_namespace)
            if shared and only_run is not None:
                items = [i for i in items if _owned(i, only_run)]
            for ns in spaces:
                if ns != seldon_namespace:
                    items += kube.list(SELDON_API, kind, ns)
            docs = [{"name": i["metadata"].get("name"), "namespace": i["metadata"].get("namespace"),
                     "spec": i.get("spec"), "status": i.get("status")} for i in items]
            c.write(f"seldon/{kind.lower()}s.yaml", yaml.safe_dump(redact_tree(docs), sort_keys=False))

        c.attempt(f"Seldon {kind} statuses", crs)

    if helm is not None and not shared:
        for release in HELM_RELEASES:
            def status(release: str = release) -> None:
                c.write(f"helm/{release}.txt", helm.status(release, seldon_namespace))

            c.attempt(f"helm status {release}", status)
