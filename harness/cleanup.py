"""`python -m harness cleanup`: undo what dead runs left on a cluster.

A run killed with SIGKILL (or on a machine that lost power) runs no handler. What it leaves is still
findable, because everything a run does is recorded in the cluster first:
- node changes: each node Lease (`harness-node-<node>`) holds the undo of every change, written before
  the change (`harness.kube.nodeguard`);
- the run itself: a run Lease (`harness-run-<run id>`) names its host and process;
- its objects: every namespace, Server, Model and pod it created carries its run id label.

With `--run-id ID` that run is cleaned whatever its state (the operator says it is gone); without
it, only runs that are certainly dead: their process on this host is gone, or their Lease expired.
Nothing without a run id label, and nothing of a live run, is touched.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from harness.k8s.seldon_api import SELDON_API
from harness.kube import Kube, NodeGuard
from harness.kube.nodeguard import HOST_ANNOTATION, MANAGED, PID_ANNOTATION, holder_dead, lease_records
from harness.kube.retry import KubeApiError
from harness.render.labels import RUN_ID_KEY

Obj = dict[str, Any]
LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "default"
RUN_LEASE_PREFIX = "harness-run-"
NODE_LEASE_PREFIX = "harness-node-"
RUN_LEASE_SECONDS = 6 * 3600  # a run lease is not renewed: expiry only ever concludes "dead" late


def run_lease(run_id: str, now: str) -> Obj:
    return {
        "apiVersion": LEASE_API, "kind": "Lease",
        "metadata": {"name": f"{RUN_LEASE_PREFIX}{run_id}", "namespace": LEASE_NAMESPACE,
                     "labels": {**MANAGED, RUN_ID_KEY: run_id},
                     "annotations": {HOST_ANNOTATION: socket.gethostname(), PID_ANNOTATION: str(os.getpid())}},
        "spec": {"holderIdentity": run_id, "leaseDurationSeconds": RUN_LEASE_SECONDS,
                 "acquireTime": now, "renewTime": now},
    }


def dead_runs(kube: Kube) -> dict[str, str]:
    """run id -> why it is certainly dead, from the run and node Leases."""
    dead: dict[str, str] = {}
    live: set[str] = set()
    for lease in kube.list(LEASE_API, "Lease", LEASE_NAMESPACE,
                           label_selector="app.kubernetes.io/managed-by=seldon-gpu-harness"):
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        if not holder:
            continue
        why = holder_dead(lease)
        if why is None:
            live.add(holder)
        else:
            dead.setdefault(holder, why)
    return {run: why for run, why in dead.items() if run not in live}


def clean_run(kube: Kube, run_id: str, seldon_namespace: str, delete_s: float) -> tuple[list[str], list[str]]:
    """Restore the run's node changes, delete its objects and Leases. Returns (done, problems)."""
    done: list[str] = []
    problems: list[str] = []
    selector = f"{RUN_ID_KEY}={run_id}"
    # 1. nodes, from the records in the node Leases it holds
    for lease in kube.list(LEASE_API, "Lease", LEASE_NAMESPACE,
                           label_selector="app.kubernetes.io/managed-by=seldon-gpu-harness"):
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
    for api, kind, namespace in ((SELDON_API, "Model", seldon_namespace), (SELDON_API, "Server", seldon_namespace),
                                 ("v1", "Pod", None), ("v1", "Namespace", None)):
        try:
            items = kube.list(api, kind, namespace, label_selector=selector)
        except KubeApiError as exc:
            problems.append(f"listing {kind}s of run {run_id} failed: {exc}")
            continue
        for item in items:
            meta = item["metadata"]
            try:
                kube.delete(api, kind, meta["name"], meta.get("namespace"), wait=True, timeout=delete_s)
                done.append(f"deleted {kind} {meta.get('namespace') + '/' if meta.get('namespace') else ''}"
                            f"{meta['name']}")
            except Exception as exc:
                problems.append(f"deleting {kind} {meta['name']} failed: {exc}")
    # 3. the run Lease
    try:
        if kube.get(LEASE_API, "Lease", f"{RUN_LEASE_PREFIX}{run_id}", LEASE_NAMESPACE) is not None:
            kube.delete(LEASE_API, "Lease", f"{RUN_LEASE_PREFIX}{run_id}", LEASE_NAMESPACE, wait=False)
            done.append(f"released Lease {LEASE_NAMESPACE}/{RUN_LEASE_PREFIX}{run_id}")
    except Exception as exc:
        problems.append(f"releasing the run Lease of {run_id} failed: {exc}")
    return done, problems
