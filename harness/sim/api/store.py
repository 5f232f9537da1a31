"""The simulated cluster's object store: an in-memory implementation of `contracts.Store`.

One re-entrant lock guards everything. Every write takes the next value of one global
resourceVersion counter, is appended to a bounded history (so watches can resume from a
resourceVersion, and get 410 Gone once it has been compacted away) and is pushed to open watches.

Deletion follows the apiserver and the garbage collector (harness/sim/api/deletion.py names the
sources): an object with `metadata.finalizers` only gets a deletionTimestamp and stays until an
update removes its last finalizer; a pod bound to a node gets its grace period (deletionTimestamp =
now + grace) and stays until its kubelet deletes it with grace 0; Orphan and Foreground deletes put
the `orphan`/`foregroundDeletion` finalizer on the owner, which goes once its dependents were
orphaned or deleted; anything else goes at once and takes its dependents (ownerReferences) with it.
A deleted Namespace is always Terminating first and refuses new content (403): its objects are
deleted (pods gracefully) and the namespace itself goes on a later `finish_namespaces` pass, once
empty. Creating an object that is still being deleted answers 409 "object is being deleted".

Besides the `Store` protocol this class offers what the HTTP layer and the runtime need:
`list_with_version`, `watch`, `read_log`, `add_listener` (called after each write),
`drop_watches`, `compact_history` and a `dry_run` flag on the write methods.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import logging
import marshal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from harness.k8s.seldon_api import SELDON_GROUP
from harness.sim.api import deletion
from harness.sim.api import patch as patching
from harness.sim.api.objcopy import MARSHAL_NO_REFERENCES as _MARSHAL_NO_REFERENCES
from harness.sim.api.objcopy import clone
from harness.sim.api.resources import STORED, ResourceType, by_kind
from harness.sim.api.selectors import parse_field_selector, parse_label_selector
from harness.sim.api.validation import apply_defaults, validate
from harness.sim.contracts import ApiError, Obj, PatchType

log = logging.getLogger(__name__)
_T = TypeVar("_T")


HISTORY_LIMIT = 5000  # changes kept in all (each kind's window is narrower: _kind_window_start)
WATCH_CACHE_MIN = 100  # a watch cache's default capacity per resource
WATCH_CACHE_FRESH_S = 75.0  # eventFreshDuration: younger events are kept beyond the capacity
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_META_IMMUTABLE = ("uid", "creationTimestamp", "name", "namespace", "generation", "resourceVersion",
                   "deletionTimestamp", "deletionGracePeriodSeconds")


# staging/src/k8s.io/apiserver/pkg/storage/names/generate.go (commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282):
# the base is cut to 63 - 5 characters and 5 characters of utilrand's alphabet are appended.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_BASE = 58


def generate_name(base: str) -> str:
    import secrets

    return base[:_MAX_GENERATED_BASE] + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Change:
    """One write, as kept in the history: `old` is None for ADDED, `new` is the deleted object for DELETED."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    api_version: str
    kind: str
    old: Obj | None
    new: Obj
    at: float = 0.0  # time.monotonic() of the write (the watch cache's freshness)


class Watch:
    """An open watch: a filtered, bounded-by-history queue of events for one kind."""

    def __init__(self, store: MemoryStore, rt: ResourceType, namespace: str | None,
                 label_selector: str | None, field_selector: str | None) -> None:
        self._store = store
        self.rt = rt
        self.namespace = namespace
        self._labels = parse_label_selector(label_selector)
        self._fields = parse_field_selector(field_selector, rt.kind)
        self._events: collections.deque[tuple[str, Obj]] = collections.deque()
        self._cond = threading.Condition()
        self.closed = False
        self.dropped = False

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self._labels(meta.get("labels") or {}) and self._fields(obj)

    def offer(self, change: Change) -> None:
        if change.api_version != self.rt.api_version or change.kind != self.rt.kind:
            return
        old_in, new_in = self.matches(change.old), self.matches(change.new)
        if change.type == "DELETED":
            event = "DELETED" if new_in else None
        elif old_in and new_in:
            event = "MODIFIED"
        elif new_in:
            event = "ADDED"
        elif old_in:
            event = "DELETED"  # stopped matching the selector: the watcher sees it leave
        else:
            event = None
        if event:
            self.push(event, change.new)

    def push(self, event: str, obj: Obj) -> None:
        with self._cond:
            self._events.append((event, obj))
            self._cond.notify_all()

    def next(self, timeout: float) -> tuple[str, Obj] | None:
        """The next event, or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._events and not self.closed:
                self._cond.wait(timeout)
            if self._events:
                return self._events.popleft()
            return None

    def close(self, dropped: bool = False) -> None:
        with self._cond:
            self.closed = True
            self.dropped = self.dropped or dropped
            self._cond.notify_all()
        self._store._forget(self)


class MemoryStore:
    """In-memory, thread-safe Kubernetes object store (see module docstring)."""

    def __init__(self, history_limit: int = HISTORY_LIMIT) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {
            (r.api_version, r.kind): {} for r in STORED
        }
        # id(stored object) -> (the object, its marshal bytes): the frozen form reads copy from (_copy).
        self._frozen: dict[int, tuple[Obj, bytes]] = {}
        self._rv = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=history_limit)
        self._compacted_rv = 0  # watches from an rv below this get 410 Gone
        self._cache_start_rv = 0  # set when the API server starts serving (start_watch_cache)
        self._watches: list[Watch] = []
        self._listeners: list[tuple[Callable[[], None], frozenset[str]]] = []
        self._logs: dict[tuple[str, str, str], tuple[str, str]] = {}
        # (namespace, pod) -> container port -> local port of the process behind it (pod proxy).
        self._pod_ports: dict[tuple[str, str], dict[int, int]] = {}
        self._event_index: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._event_seq = 0
        for ns in SYSTEM_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.create({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}})

    # ------------------------------------------------------------------ helpers
    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def add_listener(self, callback: Callable[[], None], *, ignore_kinds: Iterable[str] = ()) -> None:
        """`callback()` runs after every committed write of a kind not in `ignore_kinds` (keep it cheap;
        it runs under the store lock)."""
        with self._lock:
            self._listeners.append((callback, frozenset(ignore_kinds)))

    def _rt(self, api_version: str, kind: str) -> ResourceType:
        rt = by_kind(api_version, kind)
        if rt is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({kind} {api_version})")
        return rt

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects[(rt.api_version, rt.kind)]

    @staticmethod
    def _key(rt: ResourceType, name: str, namespace: str | None) -> tuple[str, str]:
        return ((namespace or "") if rt.namespaced else "", name)

    def _not_found(self, rt: ResourceType, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{rt.qualified_plural} "{name}" not found',
                        {"name": name, "group": rt.group, "kind": rt.plural})

    def _write(self, change_type: str, rt: ResourceType, key: tuple[str, str], old: Obj | None, new: Obj) -> None:
        """The one way an object changes in the store: a new resourceVersion, the bucket, then the change
        (history, watches, listeners). ADDED and MODIFIED store `new`; DELETED removes `key`, and `new` is
        the object as it was deleted."""
        new["metadata"]["resourceVersion"] = self._next_rv()
        bucket = self._bucket(rt)
        replaced = bucket.get(key)
        if replaced is not None:
            self._frozen.pop(id(replaced), None)
        if change_type == "DELETED":
            del bucket[key]
        else:
            bucket[key] = new
            with contextlib.suppress(ValueError):  # what marshal refuses is copied by `clone` on each read
                self._frozen[id(new)] = (new, marshal.dumps(new, _MARSHAL_NO_REFERENCES))
        self._commit(change_type, rt, old, self._copy(new))

    def _copy(self, obj: _T) -> _T:
        """A copy of `obj` for a caller: from the stored object's frozen form when it is one (the store
        never changes a stored object in place, only replaces it in `_write`), else `clone`. Reads copy
        every object they hand out, so this halves the copying: the serialising is done once per write."""
        frozen = self._frozen.get(id(obj))
        if frozen is not None and frozen[0] is obj:
            return cast(_T, marshal.loads(frozen[1]))
        return clone(obj)

    def _commit(self, change_type: str, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        change = Change(self._rv, change_type, rt.api_version, rt.kind, old, new, time.monotonic())
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv
        self._history.append(change)
        for w in list(self._watches):
            w.offer(change)
        for cb, ignored in list(self._listeners):
            if rt.kind in ignored:
                continue
            try:
                cb()
            except Exception:  # a listener must never break a write
                log.exception("store listener failed")

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _spec_part(obj: Obj) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    # ------------------------------------------------------------------ reads
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        rt = self._rt(api_version, kind)
        with self._lock:
            obj = self._bucket(rt).get(self._key(rt, name, namespace))
            return self._copy(obj) if obj is not None else None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        return self.list_with_version(api_version, kind, namespace, label_selector, field_selector)[0]

    def list_with_version(self, api_version: str, kind: str, namespace: str | None = None,
                          label_selector: str | None = None,
                          field_selector: str | None = None) -> tuple[builtins.list[Obj], str]:
        rt = self._rt(api_version, kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, kind)
        with self._lock:
            items = []
            for (ns, _), obj in sorted(self._bucket(rt).items()):
                if namespace and rt.namespaced and ns != namespace:
                    continue
                if labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj):
                    items.append(self._copy(obj))
            return items, str(self._rv)

    def list_exact(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None,
                   field_selector: str | None, resource_version: int) -> builtins.list[Obj]:
        """The list as it was at `resource_version` (resourceVersionMatch=Exact): rebuilt by undoing the
        changes after it; 410 Expired once that version left the history, 504 for a future one."""
        rt = self._rt(api_version, kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, kind)
        with self._lock:
            if resource_version > self._rv:
                raise ApiError(504, "Timeout", f"Too large resource version: {resource_version}, current: {self._rv}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}], "retryAfterSeconds": 1})
            if resource_version < self._compacted_rv:
                raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")
            state = {key: obj for key, obj in self._bucket(rt).items()}
            for change in reversed(self._history):
                if change.rv <= resource_version:
                    break
                if change.api_version != rt.api_version or change.kind != rt.kind:
                    continue
                meta = (change.old or change.new)["metadata"]
                key = self._key(rt, meta["name"], meta.get("namespace"))
                if change.type == "ADDED":
                    state.pop(key, None)
                elif change.old is not None:
                    state[key] = change.old
            return [self._copy(obj) for (ns, _), obj in sorted(state.items())
                    if not (namespace and rt.namespaced and ns != namespace)
                    and labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)]

    # ------------------------------------------------------------------ admission
    def _admit_runtime_class(self, pod: Obj) -> None:
        """The RuntimeClass admission plugin on pod create (kubernetes/kubernetes
        plugin/pkg/admission/runtimeclass/admission.go, commit 04791b4906602ffda5ccf9bc4c84d3329f1d7080):
        a pod naming a RuntimeClass that does not exist is refused with 403. A class with `overhead` or
        `scheduling` would change the pod; the sim does not model that and refuses instead of ignoring it."""
        wanted = (pod.get("spec") or {}).get("runtimeClassName")
        if not wanted:
            return
        name = (pod.get("metadata") or {}).get("name") or ""
        runtime_class = self._bucket(self._rt("node.k8s.io/v1", "RuntimeClass")).get(("", str(wanted)))
        if runtime_class is None:
            raise ApiError(403, "Forbidden",
                           f'pods "{name}" is forbidden: pod rejected: RuntimeClass "{wanted}" not found',
                           {"name": name, "kind": "pods"})
        unmodelled = [key for key in ("overhead", "scheduling") if runtime_class.get(key)]
        if unmodelled:
            raise ApiError(400, "BadRequest",
                           f'pods "{name}": RuntimeClass "{wanted}" sets {" and ".join(unmodelled)}, which the '
                           "simulated cluster does not model (it would change the pod); remove it for the sim")

    # ------------------------------------------------------------------ writes
    def create(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        rt = self._rt(api_version, kind)
        new = self._copy(obj)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        with self._lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = generate_name(str(meta["generateName"]))
            name = meta.get("name") or ""
            if rt.namespaced:
                ns = meta.get("namespace") or "default"
                meta["namespace"] = ns
                namespace_obj = self._bucket(self._rt("v1", "Namespace")).get(("", ns))
                if namespace_obj is None:
                    raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                                   {"name": ns, "kind": "namespaces"})
                if namespace_obj["metadata"].get("deletionTimestamp"):
                    raise ApiError(403, "Forbidden", f'{rt.qualified_plural} "{meta.get("name") or ""}" is forbidden: '
                                   f"unable to create new content in namespace {ns} because it is being terminated",
                                   {"name": meta.get("name") or "", "group": rt.group, "kind": rt.plural})
            else:
                meta.pop("namespace", None)
            if rt.kind == "Pod":
                self._admit_runtime_class(new)
            apply_defaults(rt, new)
            validate(rt, new)
            key = self._key(rt, name, meta.get("namespace"))
            existing = self._bucket(rt).get(key)
            if existing is not None:
                # the generic registry's Create: an object still being deleted says so
                # (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go, Create)
                prefix = "object is being deleted: " if existing["metadata"].get("deletionTimestamp") else ""
                raise ApiError(409, "AlreadyExists", f'{prefix}{rt.qualified_plural} "{name}" already exists',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            if rt.kind == "Service":
                self._allocate_service(new)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta["generation"] = 1
            meta.pop("deletionTimestamp", None)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return new
            self._write("ADDED", rt, key, None, new)
            if self._owners_gone(new):
                # What the garbage collector does with a dependent whose owners no longer exist
                # (a controller that created it from a stale view of a just-deleted owner).
                self._delete_one(rt, key, new)
                self._cascade(new)
            if rt.kind == "Namespace":
                # what the serviceaccount controller does for every new namespace
                self.create({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "default", "namespace": name}})
            return self._copy(new)

    def _allocate_service(self, svc: Obj) -> None:
        """ClusterIP and node ports, as the apiserver's allocators assign them (unique within the store)."""
        spec = svc.setdefault("spec", {})
        used_ips: set[Any] = set()
        used_ports: set[Any] = set()
        for other in self._bucket(self._rt("v1", "Service")).values():
            used_ips.add((other.get("spec") or {}).get("clusterIP"))
            used_ports.update(p.get("nodePort") for p in (other.get("spec") or {}).get("ports") or [])
        if not spec.get("clusterIP") and spec.get("type") != "ExternalName":
            for n in range(65000):  # bounded: the 10.96.0.0/16 service range
                ip = f"10.96.{n // 254}.{n % 254 + 1}"
                if ip not in used_ips:
                    spec["clusterIP"] = ip
                    break
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            free = (port for port in range(30000, 32768) if port not in used_ports)
            for p in spec.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    p["nodePort"] = next(free, None)

    def _check_rv(self, rt: ResourceType, name: str, current: Obj, obj: Obj) -> None:
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted and str(wanted) != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rt.qualified_plural} "{name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": rt.group, "kind": rt.plural})

    def _replace(self, rt: ResourceType, current: Obj, new: Obj, dry_run: bool) -> Obj:
        """Commit `new` over `current` (both full objects); bumps generation when the spec changed."""
        if rt.kind == "Service" and isinstance(new.get("spec"), dict):
            # allocated fields survive an update that omits them (the apiserver keeps them too)
            old_spec = current.get("spec") or {}
            for fld in ("clusterIP", "clusterIPs"):
                if fld in old_spec and not new["spec"].get(fld):
                    new["spec"][fld] = self._copy(old_spec[fld])
        meta = new.setdefault("metadata", {})
        for k in _META_IMMUTABLE:
            if k in current["metadata"]:
                meta[k] = current["metadata"][k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if new == current:
            return self._copy(current)  # a no-op write keeps its resourceVersion, as on a real server
        if self._spec_part(new) != self._spec_part(current):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new
        self._write("MODIFIED", rt, self._key(rt, meta["name"], meta.get("namespace")), current, new)
        return self._copy(new)

    def _current(self, rt: ResourceType, obj: Obj) -> tuple[str, Obj]:
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        ns = meta.get("namespace") or ("default" if rt.namespaced else None)
        current = self._bucket(rt).get(self._key(rt, name, ns))
        if current is None:
            raise self._not_found(rt, name)
        return name, current

    def update(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        rt = self._rt(obj.get("apiVersion", ""), obj.get("kind", ""))
        with self._lock:
            name, current = self._current(rt, obj)
            self._check_rv(rt, name, current, obj)
            new = self._copy(obj)
            apply_defaults(rt, new)  # defaulting runs on every write, not only on create
            if "status" in rt.subresources:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = self._copy(current["status"])
            self._check_finalizers(rt, current, new)
            validate(rt, new, old=current)
            return self._replace_or_finalize(rt, current, new, dry_run)

    def update_status(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        rt = self._rt(obj.get("apiVersion", ""), obj.get("kind", ""))
        with self._lock:
            name, current = self._current(rt, obj)
            self._check_rv(rt, name, current, obj)
            new = self._copy(current)
            if "status" in obj:
                new["status"] = self._copy(obj["status"])
            else:
                new.pop("status", None)
            if rt.kind == "Node":
                validate(rt, new, old=current)  # ValidateNodeUpdate checks capacity/allocatable
            return self._replace(rt, current, new, dry_run)

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: Any,
              patch_type: PatchType, subresource: str | None = None, *, dry_run: bool = False) -> Obj:
        rt = self._rt(api_version, kind)
        with self._lock:
            current = self._bucket(rt).get(self._key(rt, name, namespace))
            if current is None:
                raise self._not_found(rt, name)
            if subresource == "binding":
                return self._bind(rt, current, patch, dry_run)
            if patch_type == "merge":
                patched = patching.merge_patch(current, patch)
            elif patch_type == "json":
                patched = patching.json_patch(current, patch)
            elif patch_type == "strategic":
                if rt.group == SELDON_GROUP:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: "
                                   "application/json-patch+json, application/merge-patch+json, "
                                   "application/apply-patch+yaml")
                patched = patching.strategic_merge_patch(current, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: patch produced a non-object')
            self._check_rv(rt, name, current, patched)
            if subresource == "status":
                new = self._copy(current)
                if "status" in patched:
                    new["status"] = patched["status"]
                else:
                    new.pop("status", None)
                if rt.kind == "Node":
                    validate(rt, new, old=current)  # ValidateNodeUpdate checks capacity/allocatable
            else:
                new = patched
                apply_defaults(rt, new)
                if "status" in rt.subresources:
                    new.pop("status", None)
                    if "status" in current:
                        new["status"] = self._copy(current["status"])
                self._check_finalizers(rt, current, new)
                validate(rt, new, old=current)
            return self._replace_or_finalize(rt, current, new, dry_run)

    def _bind(self, rt: ResourceType, current: Obj, patch: Any, dry_run: bool) -> Obj:
        """The pods/binding subresource: the one way to set a pod's nodeName (once)."""
        name = current["metadata"]["name"]
        node = ((patch or {}).get("spec") or {}).get("nodeName") if isinstance(patch, dict) else None
        if rt.kind != "Pod" or not node:
            raise ApiError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value')
        bound_to = (current.get("spec") or {}).get("nodeName")
        if bound_to:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                           f'already assigned to node "{bound_to}"')
        if current["metadata"].get("deletionTimestamp"):
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                           "being deleted, cannot be assigned to a host")
        new = self._copy(current)
        new.setdefault("spec", {})["nodeName"] = str(node)
        return self._replace(rt, current, new, dry_run)

    def _check_finalizers(self, rt: ResourceType, current: Obj, new: Obj) -> None:
        """ValidateObjectMetaUpdate: an object being deleted takes no new finalizers."""
        if not current["metadata"].get("deletionTimestamp"):
            return
        old = set(current["metadata"].get("finalizers") or [])
        added = [f for f in (new.get("metadata") or {}).get("finalizers") or [] if f not in old]
        if added:
            raise ApiError(422, "Invalid", f'{rt.qualified_kind} "{current["metadata"]["name"]}" is invalid: '
                           "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                           f"deleted, found new finalizers {added}",
                           {"name": current["metadata"]["name"], "group": rt.group, "kind": rt.kind,
                            "causes": [{"reason": "FieldValueForbidden", "field": "metadata.finalizers",
                                        "message": "Forbidden: no new finalizers can be added if the object is "
                                                   "being deleted"}]})

    def _replace_or_finalize(self, rt: ResourceType, current: Obj, new: Obj, dry_run: bool) -> Obj:
        """Commit an update; an object being deleted whose last finalizer went is removed instead."""
        if not current["metadata"].get("deletionTimestamp") or (new.get("metadata") or {}).get("finalizers"):
            return self._replace(rt, current, new, dry_run)
        if dry_run:
            return new
        replaced = self._replace(rt, current, new, False)
        key = self._key(rt, replaced["metadata"]["name"], replaced["metadata"].get("namespace"))
        self._delete_one(rt, key, replaced)
        self._cascade(replaced)
        self._finish_namespace(replaced["metadata"].get("namespace") if rt.namespaced else None)
        self._finish_foreground()
        return replaced

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               dry_run: bool = False, orphan: bool = False,
               options: deletion.DeleteOptions | None = None) -> Obj | None:
        """Delete as the generic registry does (module docstring): preconditions, a pod's grace
        period, finalizers, and the propagation policy's finalizer on the owner."""
        rt = self._rt(api_version, kind)
        opts = options or deletion.DeleteOptions(policy="Orphan" if orphan else None)
        with self._lock:
            key = self._key(rt, name, namespace)
            current = self._bucket(rt).get(key)
            if current is None:
                return None
            deletion.check_preconditions(current, opts, rt.qualified_kind)
            if rt.kind == "Pod":
                grace = self._pod_grace(current, opts)
                if grace is None:  # graceful deletion pending with an equal or longer grace: nothing changes
                    return self._copy(current)
                if grace > 0:
                    return self._mark_deleting(rt, key, current, dry_run, opts.policy, grace)
            if rt.kind == "Namespace" or current["metadata"].get("finalizers") \
                    or opts.policy in ("Orphan", "Foreground"):
                return self._mark_deleting(rt, key, current, dry_run, opts.policy, 0)
            if dry_run:
                return self._copy(current)
            self._delete_one(rt, key, current)
            self._cascade(current)
            self._finish_namespace(current["metadata"].get("namespace") if rt.namespaced else None)
            self._finish_foreground()
            return self._copy(current)

    def _pod_grace(self, pod: Obj, opts: deletion.DeleteOptions) -> int | None:
        """The grace a pod's delete gets now (0: at once), or None when a graceful delete stays pending."""
        if pod["metadata"].get("deletionTimestamp"):
            if pod["metadata"].get("finalizers") and pod["metadata"].get("deletionGracePeriodSeconds") == 0:
                return None  # only finalizers hold it: another delete changes nothing
            return deletion.shortened(pod, opts)
        return deletion.pod_grace_period(pod, opts)

    def _mark_deleting(self, rt: ResourceType, key: tuple[str, str], current: Obj, dry_run: bool,
                       policy: str | None, grace: int = 0) -> Obj:
        """Graceful deletion: set deletionTimestamp (now + grace); a pod's kubelet, finalizers, the
        garbage collector (Orphan/Foreground) or the namespace controller decide when it goes."""
        new = self._copy(current)
        meta = new["metadata"]
        if not meta.get("deletionTimestamp") or grace != meta.get("deletionGracePeriodSeconds"):
            meta["deletionTimestamp"] = deletion.deletion_timestamp(grace)
            meta["deletionGracePeriodSeconds"] = grace
            if rt.kind == "Pod" and not current["metadata"].get("deletionTimestamp"):
                meta["generation"] = int(meta.get("generation") or 1) + 1  # BeforeDelete bumps it once
        finalizer = {"Orphan": deletion.ORPHAN_FINALIZER, "Foreground": deletion.FOREGROUND_FINALIZER}.get(policy or "")
        if finalizer and rt.kind != "Namespace" and finalizer not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), finalizer]
        if rt.kind == "Namespace":
            new.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return new
        if new != current:
            self._write("MODIFIED", rt, key, current, new)
        answer = self._copy(new)
        if rt.kind == "Namespace":
            # The namespace controller empties it; the namespace itself goes on a later pass
            # (finish_namespaces), never inside the DELETE call (a real one is always Terminating first).
            self._cascade(new)
        elif finalizer == deletion.ORPHAN_FINALIZER:
            self._orphan(new)
            self._drop_finalizer(rt, key, deletion.ORPHAN_FINALIZER)
        elif finalizer == deletion.FOREGROUND_FINALIZER:
            self._cascade(new)
            self._finish_foreground()
        return answer

    def _drop_finalizer(self, rt: ResourceType, key: tuple[str, str], finalizer: str) -> None:
        """What the garbage collector does once its work for `finalizer` is done."""
        current = self._bucket(rt).get(key)
        if current is None or finalizer not in (current["metadata"].get("finalizers") or []):
            return
        new = self._copy(current)
        kept = [f for f in new["metadata"].get("finalizers") or [] if f != finalizer]
        if kept:
            new["metadata"]["finalizers"] = kept
        else:
            new["metadata"].pop("finalizers", None)
        self._replace_or_finalize(rt, current, new, False)

    def _finish_foreground(self) -> None:
        """Foreground owners whose blocking dependents are gone lose `foregroundDeletion` (and go).
        Dependents with `blockOwnerDeletion: true` block; others do not (the garbage collector's rule)."""
        for _ in range(1000):  # bounded: each round removes a finalizer or ends
            waiting = [(rt, key, obj) for rt in STORED for key, obj in self._bucket(rt).items()
                       if deletion.FOREGROUND_FINALIZER in (obj["metadata"].get("finalizers") or [])]
            if not waiting:
                return
            blocking: set[str] = set()
            for rt in STORED:
                for obj in self._bucket(rt).values():
                    for ref in obj["metadata"].get("ownerReferences") or []:
                        if isinstance(ref, dict) and ref.get("blockOwnerDeletion"):
                            blocking.add(str(ref.get("uid")))
            done = [(rt, key) for rt, key, obj in waiting if obj["metadata"].get("uid") not in blocking]
            if not done:
                return
            for rt, key in done:
                self._drop_finalizer(rt, key, deletion.FOREGROUND_FINALIZER)

    def finish_namespaces(self, names: set[str] | None = None) -> None:
        """The namespace controller's pass: delete what is left in Terminating namespaces (`names`,
        or all; pods gracefully) and remove each namespace once it is empty."""
        with self._lock:
            for key, ns in list(self._bucket(self._rt("v1", "Namespace")).items()):
                if names is not None and key[1] not in names:
                    continue
                if ns["metadata"].get("deletionTimestamp") and not ns["metadata"].get("finalizers"):
                    self._cascade(ns)
                    self._finish_namespace(key[1])

    def _finish_namespace(self, namespace: str | None) -> None:
        """A Terminating namespace goes once nothing is left in it (the namespace controller's last step)."""
        if not namespace:
            return
        ns_rt = self._rt("v1", "Namespace")
        ns_obj = self._bucket(ns_rt).get(("", namespace))
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if any(key[0] == namespace for rt in STORED if rt.namespaced for key in self._bucket(rt)):
            return
        self._delete_one(ns_rt, ("", namespace), ns_obj)

    def _orphan(self, owner: Obj) -> None:
        """Orphan propagation: the garbage collector strips the owner's reference from its dependents."""
        uid = owner["metadata"].get("uid")
        for rt in STORED:
            bucket = self._bucket(rt)
            for key, obj in list(bucket.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if not (isinstance(r, dict) and r.get("uid") == uid)]
                if len(kept) == len(refs):
                    continue
                new = self._copy(obj)
                if kept:
                    new["metadata"]["ownerReferences"] = kept
                else:
                    new["metadata"].pop("ownerReferences", None)
                self._write("MODIFIED", rt, key, obj, new)

    def _delete_one(self, rt: ResourceType, key: tuple[str, str], obj: Obj) -> None:
        self._write("DELETED", rt, key, self._copy(obj), self._copy(obj))
        if rt.kind == "Pod":
            ns, name = key
            for log_key in [k for k in self._logs if k[0] == ns and k[1] == name]:
                del self._logs[log_key]
            self._pod_ports.pop((ns, name), None)

    def _owners_gone(self, obj: Obj) -> bool:
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if isinstance(r, dict) and r.get("uid")]
        if not refs:
            return False
        wanted = {r["uid"] for r in refs}
        return not any(o["metadata"].get("uid") in wanted for rt in STORED for o in self._bucket(rt).values())

    def _cascade(self, root: Obj) -> None:
        """Delete dependents of `root` (and theirs); a Namespace takes all its objects with it. What
        holds (finalizers, a running pod's grace period) is marked deleting and left to finish."""
        pending = [root]
        for _ in range(100000):  # bounded: each pass removes at least one object or ends
            if not pending:
                return
            owner = pending.pop()
            uid = owner["metadata"].get("uid")
            is_ns = owner.get("kind") == "Namespace" and owner.get("apiVersion") == "v1"
            ns_name = owner["metadata"].get("name")
            for rt in STORED:
                bucket = self._bucket(rt)
                for key, obj in list(bucket.items()):
                    refs = obj["metadata"].get("ownerReferences") or []
                    owned = any(r.get("uid") == uid for r in refs if isinstance(r, dict))
                    if not (owned or (is_ns and rt.namespaced and key[0] == ns_name)) or key not in bucket:
                        continue
                    if obj["metadata"].get("deletionTimestamp"):
                        continue  # already on its way out
                    grace = deletion.pod_grace_period(obj, deletion.DeleteOptions()) if rt.kind == "Pod" else 0
                    if grace > 0 or obj["metadata"].get("finalizers"):
                        self._mark_deleting(rt, key, obj, False, None, grace)
                        continue
                    self._delete_one(rt, key, obj)
                    pending.append(obj)

    # ------------------------------------------------------------------ events and logs
    def record_event(self, involved: Obj, reason: str, message: str, event_type: str = "Normal",
                     component: str = "") -> None:
        meta = involved.get("metadata") or {}
        uid = meta.get("uid", "")
        ns = meta.get("namespace") or "default"
        ts = now_rfc3339()
        with self._lock:
            existing_key = self._event_index.get((uid, reason, message))
            if existing_key is not None:
                current = self._bucket(self._rt("v1", "Event")).get(existing_key)
                if current is not None:
                    bumped = self._copy(current)
                    bumped["count"] = int(current.get("count", 1)) + 1
                    bumped["lastTimestamp"] = ts
                    self._replace(self._rt("v1", "Event"), current, bumped, False)
                    return
            self._event_seq += 1
            name = f"{meta.get('name', 'unknown')}.{self._event_seq:016x}"
            event: Obj = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion", ""), "kind": involved.get("kind", ""),
                    "name": meta.get("name", ""), "namespace": meta.get("namespace", ""), "uid": uid,
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "reason": reason, "message": message, "type": event_type,
                "source": {"component": component} if component else {},
                "reportingComponent": component, "reportingInstance": "",
                "count": 1, "firstTimestamp": ts, "lastTimestamp": ts, "eventTime": None,
            }
            if not (involved.get("metadata") or {}).get("namespace"):
                event["involvedObject"].pop("namespace")
            try:
                self.create(event)
            except ApiError as exc:
                if exc.code != 403:
                    raise
                return  # a Terminating namespace takes no new events; recorders drop them too
            self._event_index[(uid, reason, message)] = (ns, name)

    def append_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        with self._lock:
            current, previous = self._logs.get((namespace, pod, container), ("", ""))
            self._logs[(namespace, pod, container)] = (current + text, previous)

    def set_pod_ports(self, namespace: str, pod: str, ports: dict[int, int]) -> None:
        """Where the process behind a pod listens: container port -> local port (empty: nothing)."""
        with self._lock:
            if ports:
                self._pod_ports[(namespace, pod)] = dict(ports)
            else:
                self._pod_ports.pop((namespace, pod), None)

    def pod_ports(self, namespace: str, pod: str) -> dict[int, int]:
        with self._lock:
            return dict(self._pod_ports.get((namespace, pod)) or {})

    def rotate_log(self, namespace: str, pod: str, container: str) -> None:
        with self._lock:
            current, _ = self._logs.get((namespace, pod, container), ("", ""))
            self._logs[(namespace, pod, container)] = ("", current)

    def read_log(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        """A container's log, or None when the container never logged (or has no previous instance)."""
        with self._lock:
            entry = self._logs.get((namespace, pod, container))
            if entry is None:
                return None
            if previous and not entry[1]:
                return None
            return entry[1] if previous else entry[0]

    # ------------------------------------------------------------------ watches
    def watch(self, api_version: str, kind: str, namespace: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              resource_version: str | None = None, *, initial_events_end: bool = False) -> Watch:
        """Open a watch. With no (or "0") resourceVersion the current objects arrive first as ADDED;
        otherwise every change after that version is replayed; 410 Expired if it was compacted."""
        rt = self._rt(api_version, kind)
        w = Watch(self, rt, namespace, label_selector, field_selector)
        with self._lock:
            if resource_version in (None, "", "0"):
                items, _ = self.list_with_version(api_version, kind, namespace, label_selector, field_selector)
                for obj in items:
                    w.push("ADDED", obj)
                if initial_events_end:
                    # the WatchList protocol: a bookmark marks the end of the initial state
                    mark = self.bookmark(api_version, kind)
                    mark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                    w.push("BOOKMARK", mark)
            else:
                try:
                    since = int(str(resource_version))
                except ValueError:
                    raise ApiError(400, "BadRequest",
                                   f"invalid resource version: {resource_version!r}") from None
                oldest = max(self._compacted_rv, self._cache_start_rv, self._kind_window_start(rt))
                if since < oldest:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({oldest})")
                for change in self._history:
                    if change.rv > since:
                        w.offer(change)
            self._watches.append(w)
        return w

    def start_watch_cache(self) -> None:
        """The API server starts serving: its watch caches begin at the current resourceVersion, so a
        watch from an older one (say "1") is 410 Expired, as on any running cluster."""
        with self._lock:
            self._cache_start_rv = self._rv

    def _kind_window_start(self, rt: ResourceType) -> int:
        """The oldest resourceVersion a watch of this kind may resume from: one watch cache per resource,
        keeping at least its last WATCH_CACHE_MIN changes and every change younger than
        WATCH_CACHE_FRESH_S (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go: default
        capacity 100, grown while events are fresher than eventFreshDuration = 75 s)."""
        now = time.monotonic()
        kept = 0
        start = self._compacted_rv
        for change in reversed(self._history):
            if change.api_version != rt.api_version or change.kind != rt.kind:
                continue
            if kept >= WATCH_CACHE_MIN and now - change.at > WATCH_CACHE_FRESH_S:
                return change.rv  # this change and older ones are out of the window
            kept += 1
        return start

    def bookmark(self, api_version: str, kind: str) -> Obj:
        """A BOOKMARK object at the current resourceVersion (safe to send once a watch's queue is empty)."""
        with self._lock:
            return {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": str(self._rv)}}

    def _forget(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def drop_watches(self, api_version: str | None = None, kind: str | None = None) -> int:
        """Close open watches (all, or those of one kind) as a broken connection would; returns how many."""
        with self._lock:
            victims = [w for w in self._watches if (kind is None or w.rt.kind == kind)
                       and (api_version is None or w.rt.api_version == api_version)]
        for w in victims:
            w.close(dropped=True)
        return len(victims)

    def compact_history(self) -> None:
        """Forget every change so far: a watch from an older resourceVersion now gets 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv
