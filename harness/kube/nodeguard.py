"""`NodeGuard`: every node change the harness makes, made so that it can be undone.

Each change: take a node lease (two runs must not fight over one node), snapshot the node,
register the undo BEFORE patching (a crash between patch and registration would leak the change),
patch with a resourceVersion precondition (a concurrent writer makes us re-read, not clobber),
and on restore patch back only what we added, then verify. Things that were already there are
recorded as nothing-to-undo, so the guard never removes what it did not add. Restore runs from
`restore_all()`, on SIGINT/SIGTERM (then the signal's usual behaviour follows) and at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from harness.errors import UsageError
from harness.kube.client import Kube
from harness.kube.lease import micro_time, run_gone
from harness.kube.retry import KubeApiError

Obj = dict[str, Any]

CONFLICT_RETRIES = 5
# Guards of one run in one process share node leases (same holder): count them, release with the last.
_HELD: dict[tuple[str, str, str], int] = {}
_HELD_LOCK = threading.RLock()  # re-entrant: a signal handler on the thread holding it restores too
LEASE_SECONDS = 900
# The undo of every change, written into the node's Lease BEFORE the node is patched: a run killed
# with SIGKILL (no handler, no atexit) still leaves in the cluster what `harness cleanup` must undo.
UNDO_ANNOTATION = "harness.seldon.dev/undo"
HOST_ANNOTATION = "harness.seldon.dev/holder-host"
PID_ANNOTATION = "harness.seldon.dev/holder-pid"
MANAGED = {"app.kubernetes.io/managed-by": "seldon-gpu-harness"}


def cleanup_command(run_id: str) -> str:
    return f"python -m harness cleanup --profile <profile> --run-id {run_id}"


@dataclass
class _Undo:
    node: str
    what: str  # "taint" | "label" | "capacity"
    key: str
    added: Any  # the taint dict / label value / capacity value we set
    before: Any  # label value or capacity value before (None: absent)

    def describe(self) -> str:
        return f"{self.what} {self.key} on node {self.node}"

    @classmethod
    def from_record(cls, record: Any) -> _Undo:
        if not isinstance(record, dict) or record.get("what") not in ("taint", "label", "capacity"):
            raise ValueError(f"not an undo record: {record!r}")
        return cls(str(record["node"]), str(record["what"]), str(record["key"]), record.get("added"),
                   record.get("before"))


def lease_records(lease: Obj) -> list[_Undo]:
    """The undo records a run left in a node Lease (unreadable ones are skipped, never guessed)."""
    raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(UNDO_ANNOTATION)
    if not raw:
        return []
    try:
        return [_Undo.from_record(r) for r in json.loads(raw)]
    except (ValueError, KeyError, TypeError):
        return []


def _taint_id(t: dict[str, Any]) -> tuple[str, str]:
    return str(t.get("key", "")), str(t.get("effect", ""))


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class NodeGuard:
    """Restore-first node changes for one run (`owner` is the run id, the lease holder)."""

    def __init__(self, kube: Kube, owner: str, lease_namespace: str = "default",
                 install_signal_handlers: bool = True) -> None:
        self.kube = kube
        self.owner = owner
        self.lease_namespace = lease_namespace
        self._undo: list[_Undo] = []
        self._leases: list[str] = []
        self._lock = threading.RLock()
        self._install_handlers = install_signal_handlers
        self._previous: dict[int, Any] = {}
        self._atexit = False

    # --- public changes -----------------------------------------------------------------
    def add_taint(self, node: str, taint: dict[str, Any]) -> None:
        wanted: dict[str, Any] = {k: taint[k] for k in ("key", "value", "effect") if k in taint}

        def change(obj: Obj) -> tuple[Any, _Undo | None]:
            taints = list((obj.get("spec") or {}).get("taints") or [])
            for t in taints:
                if _taint_id(t) == _taint_id(wanted):
                    if t.get("value", "") == wanted.get("value", ""):
                        return None, None  # already there: nothing to do, nothing to undo
                    raise UsageError(
                        f"node {node}: taint {wanted.get('key')}:{wanted.get('effect')} already exists with value "
                        f"{t.get('value', '')!r}; the harness will not replace a taint it did not add")
            undo = _Undo(node, "taint", f"{wanted.get('key')}:{wanted.get('effect')}", wanted, None)
            return {"spec": {"taints": [*taints, wanted]}}, undo

        self._change(node, change, "merge")

    def add_label(self, node: str, key: str, value: str) -> None:
        def change(obj: Obj) -> tuple[Any, _Undo | None]:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels.get(key) == value:
                return None, None
            return {"metadata": {"labels": {key: value}}}, _Undo(node, "label", key, value, labels.get(key))

        self._change(node, change, "merge")

    def set_extended_capacity(self, node: str, resource: str, count: int) -> None:
        """Advertise `count` of an extended resource (fake GPUs) through a JSON patch on `/status`."""
        value = str(count)

        def change(obj: Obj) -> tuple[Any, _Undo | None]:
            status = obj.get("status") or {}
            cap = (status.get("capacity") or {}).get(resource)
            alloc = (status.get("allocatable") or {}).get(resource)
            if cap == value and alloc == value:
                return None, None
            if (cap is not None or alloc is not None) and not self._owns(node, "capacity", resource):
                raise UsageError(
                    f"node {node}: {resource} is already advertised (capacity {cap}, allocatable {alloc}); "
                    f"the harness only fakes GPU capacity on nodes that have none")
            ops = self._capacity_ops(obj, resource, value)
            return ops, _Undo(node, "capacity", resource, value, None)

        self._change(node, change, "json", subresource="status")

    def changes(self) -> list[str]:
        with self._lock:
            return [u.describe() for u in self._undo]

    # --- restore ------------------------------------------------------------------------
    def restore_all(self) -> list[str]:
        """Undo every recorded change (newest first), verify each, release leases. Returns problems."""
        problems: list[str] = []
        with self._lock:
            pending = list(reversed(self._undo))
            for undo in pending:
                try:
                    self._restore(undo)
                    problem = self._verify(undo)
                except Exception as exc:  # restore must go on for the other nodes
                    problem = f"restoring {undo.describe()} failed: {exc}"
                if problem:
                    problems.append(problem)
                else:
                    self._undo.remove(undo)
            for node in list(self._leases):
                if any(u.node == node for u in self._undo):
                    # keep the lease (and what is left to undo) on a node we could not restore:
                    # others must not assume it clean, and `harness cleanup` can finish the job
                    with contextlib.suppress(Exception):
                        self._record(node)
                    continue
                key = self._lease_key(node)
                try:
                    with _HELD_LOCK:
                        last = _HELD.get(key, 1) <= 1
                    if last:  # another guard of this run (e.g. a test's, inside the session's) still holds it
                        self.kube.delete("coordination.k8s.io/v1", "Lease", self._lease_name(node),
                                         self.lease_namespace, wait=False)
                    with _HELD_LOCK:
                        _HELD[key] = _HELD.get(key, 1) - 1
                        if _HELD[key] <= 0:
                            del _HELD[key]
                    self._leases.remove(node)
                except Exception as exc:
                    problems.append(f"releasing the lease of node {node} failed: {exc}")
            if not self._undo:
                self._uninstall()
        return problems

    def _uninstall(self) -> None:
        """Nothing left to undo: give SIGINT/SIGTERM back to whoever had them."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in list(self._previous.items()):
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, handler)
            del self._previous[sig]

    # --- internals ----------------------------------------------------------------------
    def _owns(self, node: str, what: str, key: str) -> bool:
        return any(u.node == node and u.what == what and u.key == key for u in self._undo)

    @staticmethod
    def _capacity_ops(obj: Obj, resource: str, value: str | None) -> list[dict[str, Any]]:
        status = obj.get("status") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]
        for field in ("capacity", "allocatable"):
            present = resource in (status.get(field) or {})
            if value is None:
                if present:
                    ops.append({"op": "remove", "path": f"/status/{field}/{_escape(resource)}"})
            elif status.get(field) is None:
                ops.append({"op": "add", "path": f"/status/{field}", "value": {resource: value}})
            else:
                ops.append({"op": "add", "path": f"/status/{field}/{_escape(resource)}", "value": value})
        return ops

    def _lease_name(self, node: str) -> str:
        return f"harness-node-{node}"[:253]

    def _take_lease(self, node: str) -> None:
        if node in self._leases:
            return
        name = self._lease_name(node)
        lease = self.kube.get("coordination.k8s.io/v1", "Lease", name, self.lease_namespace)
        if lease is not None:
            holder = (lease.get("spec") or {}).get("holderIdentity")
            if holder and holder != self.owner:
                # Alive or not is the holder's run Lease's word (renewed on a timer, judged by the
                # API server's clock); host names and pids prove nothing across PID namespaces.
                dead = run_gone(self.kube, str(holder), lease)
                left = lease_records(lease)
                if dead and left:
                    # Its changes are still on the node: taking over would make a leaked taint look
                    # pre-existing to this run (and nobody would ever remove it).
                    raise UsageError(
                        f"node {node}: harness run {holder} that changed it is gone ({dead}) and left "
                        f"{', '.join(u.describe() for u in left)}; restore it with `{cleanup_command(holder)}`")
                if not dead:
                    raise UsageError(
                        f"node {node} is being changed by another harness run ({holder}, Lease "
                        f"{self.lease_namespace}/{name}); wait for it to finish, or if that run is gone, "
                        f"`{cleanup_command(holder)}`")
        now = micro_time(self.kube.server_time())  # expiry is judged by the API server's clock
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": self.lease_namespace, "labels": dict(MANAGED),
                         "annotations": {HOST_ANNOTATION: socket.gethostname(), PID_ANNOTATION: str(os.getpid()),
                                         UNDO_ANNOTATION: "[]"}},
            "spec": {"holderIdentity": self.owner, "leaseDurationSeconds": LEASE_SECONDS,
                     "acquireTime": now, "renewTime": now},
        }
        if lease is None:
            try:
                self.kube.create(body)
            except KubeApiError as exc:
                if exc.status == 409:
                    raise UsageError(f"node {node}: another harness run took Lease {self.lease_namespace}/{name} "
                                     f"at the same moment; try again") from None
                raise
        else:
            body["metadata"]["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
            self.kube.patch("coordination.k8s.io/v1", "Lease", name, self.lease_namespace,
                            {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"],
                                          "annotations": body["metadata"]["annotations"]},
                             "spec": body["spec"]})
        self._leases.append(node)
        with _HELD_LOCK:
            key = self._lease_key(node)
            _HELD[key] = _HELD.get(key, 0) + 1

    def _record(self, node: str) -> None:
        records = [asdict(u) for u in self._undo if u.node == node]
        self.kube.patch("coordination.k8s.io/v1", "Lease", self._lease_name(node), self.lease_namespace,
                        {"metadata": {"annotations": {UNDO_ANNOTATION: json.dumps(records, sort_keys=True)}}})

    def adopt(self, node: str, records: list[_Undo]) -> None:
        """Take over a dead run's records for `node` (its Lease already held by this guard's owner),
        so `restore_all` undoes them: what `harness cleanup` does."""
        with self._lock:
            self._undo.extend(records)
            if node not in self._leases:
                self._leases.append(node)
                with _HELD_LOCK:
                    key = self._lease_key(node)
                    _HELD[key] = _HELD.get(key, 0) + 1

    def _lease_key(self, node: str) -> tuple[str, str, str]:
        return self.lease_namespace, self._lease_name(node), self.owner

    def _install(self) -> None:
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        if not self._install_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            if sig in self._previous:
                continue
            if signal.getsignal(sig) == signal.SIG_IGN:
                # The process does not stop on this signal (a job started in the background by a
                # script ignores SIGINT), so restoring nodes on it would undo them under a live run.
                continue
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            for problem in self.restore_all():
                print(f"node restore at exit: {problem}", file=sys.stderr)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        saved = dict(self._previous)
        # Through a connection pool of its own: the signal may have landed inside this client's pool
        # (its lock held by this very thread), where a request would wait forever (Kube.fresh).
        kube = self.kube
        with contextlib.suppress(Exception):  # a client that cannot be copied is used as it is
            self.kube = kube.fresh()
        try:
            for problem in self.restore_all():
                print(f"node restore: {problem}", file=sys.stderr)
        finally:
            if self.kube is not kube:
                with contextlib.suppress(Exception):
                    self.kube.close()
                self.kube = kube
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        self._previous.clear()
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)  # e.g. the default SIGINT handler raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # die of the signal, as the process would have without us

    def _read(self, node: str) -> Obj:
        obj = self.kube.get("v1", "Node", node)
        if obj is None:
            raise UsageError(f"node {node}: not found in the cluster")
        return obj

    def _change(self, node: str, change: Any, patch_type: str, subresource: str | None = None) -> None:
        with self._lock:
            self._take_lease(node)
            self._install()
            for attempt in range(1, CONFLICT_RETRIES + 1):
                obj = self._read(node)
                patch, undo = change(obj)
                if patch is None or undo is None:
                    return
                if patch_type == "merge":
                    patch.setdefault("metadata", {})["resourceVersion"] = obj["metadata"]["resourceVersion"]
                # Restore first: registered (in memory and in the node's Lease) before the patch is
                # sent, so no path, not even SIGKILL, leaves it unrecorded.
                if not self._owns(undo.node, undo.what, undo.key):
                    self._undo.append(undo)
                    self._record(node)
                try:
                    self.kube.patch("v1", "Node", node, None, patch, patch_type,  # type: ignore[arg-type]
                                    subresource)
                    return
                except KubeApiError as exc:
                    if not self._conflict(exc, node, obj) or attempt == CONFLICT_RETRIES:
                        raise
            # unreachable: the loop returns or raises

    def _restore(self, undo: _Undo) -> None:
        for attempt in range(1, CONFLICT_RETRIES + 1):
            obj = self._read(undo.node)
            rv = obj["metadata"]["resourceVersion"]
            patch: Any
            patch_type = "merge"
            subresource = None
            if undo.what == "taint":
                taints = list((obj.get("spec") or {}).get("taints") or [])
                kept = [t for t in taints if not (_taint_id(t) == _taint_id(undo.added)
                                                  and t.get("value", "") == undo.added.get("value", ""))]
                if len(kept) == len(taints):
                    return  # already gone
                patch = {"metadata": {"resourceVersion": rv}, "spec": {"taints": kept or None}}
            elif undo.what == "label":
                labels = (obj.get("metadata") or {}).get("labels") or {}
                if labels.get(undo.key) != undo.added:
                    return  # someone changed it since; not ours to touch any more
                patch = {"metadata": {"resourceVersion": rv, "labels": {undo.key: undo.before}}}
            else:
                patch_type, subresource = "json", "status"
                patch = self._capacity_ops(obj, undo.key, None)
                if len(patch) == 1:
                    return
            try:
                self.kube.patch("v1", "Node", undo.node, None, patch, patch_type,  # type: ignore[arg-type]
                                subresource)
                return
            except KubeApiError as exc:
                if not self._conflict(exc, undo.node, obj) or attempt == CONFLICT_RETRIES:
                    raise

    def _conflict(self, exc: KubeApiError, node: str, seen: Obj) -> bool:
        """Did the node change under us? 409 says so; a failed JSON-patch `test` on resourceVersion is
        reported as 409, 422 or 400 depending on the server, so those count when the version moved."""
        if exc.status == 409:
            return True
        if exc.status not in (400, 422):
            return False
        now = self.kube.get("v1", "Node", node)
        return now is not None and now["metadata"].get("resourceVersion") != seen["metadata"].get("resourceVersion")

    def _verify(self, undo: _Undo) -> str | None:
        obj = self._read(undo.node)
        if undo.what == "taint":
            for t in (obj.get("spec") or {}).get("taints") or []:
                if _taint_id(t) == _taint_id(undo.added) and t.get("value", "") == undo.added.get("value", ""):
                    return f"node {undo.node}: taint {undo.key} still present after restore"
        elif undo.what == "label":
            now = ((obj.get("metadata") or {}).get("labels") or {}).get(undo.key)
            if now == undo.added and undo.added != undo.before:
                return f"node {undo.node}: label {undo.key}={now} still present after restore (was {undo.before})"
        else:
            status = obj.get("status") or {}
            for field in ("capacity", "allocatable"):
                if undo.key in (status.get(field) or {}):
                    return f"node {undo.node}: {field} {undo.key} still advertised after restore"
        return None
