"""The namespace controller: empties a Terminating namespace, then removes it.

Upstream: kubernetes/kubernetes pkg/controller/namespace/deletion/namespaced_resources_deleter.go
(commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282): a deleted namespace is Terminating while the
controller deletes its content (pods gracefully, objects with finalizers waiting for them); once
nothing is left it removes the `kubernetes` finalizer and the namespace goes. Until then creating a
namespace of that name answers 409 "object is being deleted".

A real controller needs seconds for that (it discovers every namespaced resource and lists each);
the sim removes an emptied namespace no sooner than `MIN_TERMINATING_S` after it first saw it
Terminating, a lower bound, so a client that recreates a namespace at once meets the 409 it would
meet on a cluster instead of winning a race it would lose there.
"""

from __future__ import annotations

from harness.sim.contracts import Store

MIN_TERMINATING_S = 0.3  # short: every test namespace's teardown waits for it


class NamespaceController:
    name = "namespace-controller"

    def __init__(self, min_terminating_s: float = MIN_TERMINATING_S) -> None:
        self.min_terminating_s = min_terminating_s
        self._first_seen: dict[str, float] = {}

    def reconcile(self, store: Store, now: float) -> float | None:
        finish = getattr(store, "finish_namespaces", None)
        if not callable(finish):
            return None
        terminating = {str(ns["metadata"].get("uid")): str(ns["metadata"]["name"])
                       for ns in store.list("v1", "Namespace") if ns["metadata"].get("deletionTimestamp")}
        for uid in [u for u in self._first_seen if u not in terminating]:
            del self._first_seen[uid]
        due: set[str] = set()
        wake: float | None = None
        for uid, name in terminating.items():
            at = self._first_seen.setdefault(uid, now) + self.min_terminating_s
            if at <= now:
                due.add(name)
            else:
                wake = at if wake is None else min(wake, at)
        if due:
            finish(due)
        return wake

    def close(self) -> None:
        return None
