"""`python -m harness cleanup`: undo what dead runs left on a cluster.

A run killed with SIGKILL (or on a machine that lost power) runs no handler. What it leaves is still
findable, because everything a run does is recorded in the cluster first:
- node changes: each node Lease (`harness-node-<node>`) holds the undo of every change, written before
  the change (`harness.kube.nodeguard`);
- the run itself: a run Lease (`harness-run-<run id>`, `harness.kube.lease`), renewed on a timer,
  that also names the namespaces the run creates Servers, Models and pods in;
- its objects: every namespace, Server, Model and pod it created carries its run id label.

A run is dead only when its run Lease has not been renewed for longer than its duration, by the API
server's clock (a run without a run Lease: by its node Leases). That holds whatever host, container
or PID namespace cleanup runs from. Without `--run-id` every dead run is cleaned; `--run-id ID`
cleans that run, and still refuses while its Lease is being renewed (its process is alive).
The run's objects are found from its Lease, never from the profile given to cleanup. The run Lease
is released only when nothing of the run is left, so a cleanup that could not finish can be rerun.
Nothing without a run id label, and nothing of a live run, is touched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness.k8s.seldon_api import SELDON_API
from harness.kube import Kube, NodeGuard
from harness.kube.lease import (
    LEASE_API,
    LEASE_NAMESPACE,
    RUN_LEASE_PREFIX,
    expired,
    recorded_namespaces,
    run_lease_name,
    run_of,
)
from harness.kube.nodeguard import MANAGED, lease_records
from harness.kube.retry import KubeApiError
from harness.render.labels import RUN_ID_KEY

Obj = dict[str, Any]
NODE_LEASE_PREFIX = "harness-node-"
_MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())


def run_states(kube: Kube, now: dt.datetime | None = None) -> dict[str, str | None]:
    """run id -> why it is dead (None: it may be alive), for every run holding a harness Lease."""
    now = now or kube.server_time()
    leases = kube.list(LEASE_API, "Lease", LEASE_NAMESPACE, label_selector=_MANAGED_SELECTOR)
    states: dict[str, str | None] = {}
    for lease in leases:
        if str(lease["metadata"]["name"]).startswith(RUN_LEASE_PREFIX):
            states[run_of(lease)] = expired(lease, now)
    # A node Lease whose run holds no run Lease (it never took one, or it was deleted): the run is
    # dead when every node Lease it holds expired.
    by_node: dict[str, list[str | None]] = {}
    for lease in leases:
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        if str(lease["metadata"]["name"]).startswith(NODE_LEASE_PREFIX) and holder and holder not in states:
            by_node.setdefault(holder, []).append(expired(lease, now))
    for run, whys in by_node.items():
        states[run] = None if any(why is None for why in whys) else whys[0]
    return states


def dead_runs(kube: Kube) -> dict[str, str]:
    """run id -> why it is certainly dead (its Lease expired by the API server's clock)."""
    return {run: why for run, why in run_states(kube).items() if why is not None}


def clean_run(kube: Kube, run_id: str, delete_s: float) -> tuple[list[str], list[str]]:
    """Restore the run's node changes, delete its objects and Leases. Returns (done, problems).

    Servers and Models are looked up in the namespaces the run recorded in its Lease (all
    namespaces when it left no run Lease), never in the namespaces of the profile cleanup was given."""
    done: list[str] = []
    problems: list[str] = []
    selector = f"{RUN_ID_KEY}={run_id}"
    run_lease = kube.get(LEASE_API, "Lease", run_lease_name(run_id), LEASE_NAMESPACE)
    namespaces: list[str | None] = list(recorded_namespaces(run_lease)) if run_lease is not None else [None]
    # 1. nodes, from the records in the node Leases it holds
    for lease in kube.list(LEASE_API, "Lease", LEASE_NAMESPACE, label_selector=_MANAGED_SELECTOR):
        name = str(lease["metadata"]["name"])
        if not name.startswith(NODE_LEASE_PREFIX) or (lease.get("spec") or {}).get("holderIdentity") != run_id:
            continue
        records = lease_records(lease)
        guard = NodeGuard(kube, owner=run_id, lease_namespace=LEASE_NAMESPACE, install_signal_handlers=False)
        node = records[0].node if records else name[len(NODE_LEASE_PREFIX):]
        guard.adopt(node, records)
        failed = guard.restore_all()
        problems.extend(failed)
        if not failed:
            done += [f"restored {u.describe()}" for u in records] or [f"released Lease {name} (nothing to undo)"]
    # 2. its objects: Models before Servers (as a run's own cleanup does), then pods and namespaces
    targets = [(SELDON_API, "Model", ns) for ns in namespaces] + [(SELDON_API, "Server", ns) for ns in namespaces]
    targets += [("v1", "Pod", None), ("v1", "Namespace", None)]
    for api, kind, namespace in targets:
        try:
            items = kube.list(api, kind, namespace, label_selector=selector)
        except KubeApiError as exc:
            if exc.status == 404 and api == SELDON_API:
                continue  # no Seldon CRDs (any more): nothing of that kind can be left
            problems.append(f"listing {kind}s of run {run_id}{' in ' + namespace if namespace else ''} failed: {exc}")
            continue
        for item in items:
            meta = item["metadata"]
            where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
            try:
                kube.delete(api, kind, meta["name"], meta.get("namespace"), wait=True, timeout=delete_s)
                done.append(f"deleted {kind} {where}{meta['name']}")
            except Exception as exc:
                problems.append(f"deleting {kind} {where}{meta['name']} failed: {exc}")
    # 3. the run Lease, only when nothing is left: it is the record a later cleanup needs
    if problems:
        problems.append(f"kept Lease {LEASE_NAMESPACE}/{run_lease_name(run_id)} so that cleanup can be run again")
    elif run_lease is not None:
        try:
            kube.delete(LEASE_API, "Lease", run_lease_name(run_id), LEASE_NAMESPACE, wait=False)
            done.append(f"released Lease {LEASE_NAMESPACE}/{run_lease_name(run_id)}")
        except Exception as exc:
            problems.append(f"releasing the run Lease of {run_id} failed: {exc}")
    return done, problems
