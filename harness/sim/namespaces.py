"""The namespace controller: empties a Terminating namespace, then removes it.

Upstream: kubernetes/kubernetes pkg/controller/namespace/deletion/namespaced_resources_deleter.go
(commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282): a deleted namespace is Terminating while the
controller deletes its content (pods gracefully, objects with finalizers waiting for them); once
nothing is left it removes the `kubernetes` finalizer and the namespace goes. Until then creating a
namespace of that name answers 409 "object is being deleted".
"""

from __future__ import annotations

from harness.sim.contracts import Store


class NamespaceController:
    name = "namespace-controller"

    def reconcile(self, store: Store, now: float) -> float | None:
        finish = getattr(store, "finish_namespaces", None)
        if callable(finish):
            finish()
        return None

    def close(self) -> None:
        return None
