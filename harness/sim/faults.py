"""Fault injection for the simulated cluster, reachable as `SimCluster.faults`.

API-level faults live here:
- `fail_next(verb, resource, name=None, count=1, code=500, retry_after=None)`: the next `count`
  requests matching verb (get, list, watch, create, update, patch, delete; "*" for any), resource
  (plural such as "pods", optionally "pods/log"; "*" for any) and name (None for any) are answered
  with `code` (500 InternalError, 429 TooManyRequests with `Retry-After`, 503 ServiceUnavailable, ...).
- `drop_watches(resource=None)`: end every open watch stream (or those of one resource) as a dropped
  connection would; clients must re-watch.
- `compact_history()`: forget the store's change history, so resuming a watch from an older
  resourceVersion gets 410 Gone (Expired).

Controllers add their own faults through a small registry: a controller calls
`faults.register("pod_crash", callback)` when it is built, and a test then calls
`faults.pod_crash(namespace, name)`, which delegates to that callback. `SimCluster` calls each
controller's `register_faults(faults)` at start. Named hooks with wrappers here:
`pod_crash(namespace, pod, container=None)`, `node_not_ready(node)`, `node_ready(node)`,
`model_load_failure(namespace, model)`, `kill_mlserver(namespace, pod)`,
`slow_model(namespace, model, factor)` (the mesh holds the model's answers until `factor` times
the server's own time has passed: a model made 2x slower, for regression-gate tests). Others registered by the
controllers (kubelet: `pod_crash_loop`, `end_crash_loop`; Seldon: `clear_model_load_failure`,
`kill_mlserver_mid_load`) and any future name work through `trigger(name, *args, **kwargs)`;
`registered()` lists them. An unregistered hook raises `LookupError` naming what is registered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.sim.api.resources import RESOURCES

REASONS = {
    400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


@dataclass
class ApiFault:
    verb: str
    resource: str
    name: str | None
    remaining: int
    code: int
    retry_after: int | None
    message: str

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return ((self.verb in ("*", verb)) and (self.resource in ("*", resource))
                and (self.name is None or self.name == name))


@dataclass(frozen=True)
class InjectedError:
    code: int
    reason: str
    message: str
    retry_after: int | None


class Faults:
    def __init__(self, store: Any | None = None) -> None:
        self._lock = threading.Lock()
        self._api: list[ApiFault] = []
        self._hooks: dict[str, Callable[..., Any]] = {}
        self._store = store
        self.injected = 0  # how many requests were failed on purpose

    def attach(self, store: Any) -> None:
        self._store = store

    # ---------------------------------------------------------------- API faults
    def fail_next(self, verb: str, resource: str, name: str | None = None, *, count: int = 1, code: int = 500,
                  retry_after: int | None = None, message: str | None = None) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        if code == 429 and retry_after is None:
            retry_after = 1
        text = message or ("injected fault: too many requests, please try again later" if code == 429
                           else f"injected fault: {verb} {resource} failed")
        with self._lock:
            self._api.append(ApiFault(verb, resource, name, count, code, retry_after, text))

    def clear(self) -> None:
        with self._lock:
            self._api.clear()

    def check(self, verb: str, resource: str, name: str | None) -> InjectedError | None:
        """Called by the HTTP layer for each request: the error to answer with, if a fault matches."""
        with self._lock:
            for fault in self._api:
                if fault.matches(verb, resource, name):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._api.remove(fault)
                    self.injected += 1
                    return InjectedError(fault.code, REASONS.get(fault.code, "InternalError"), fault.message,
                                         fault.retry_after)
        return None

    def drop_watches(self, resource: str | None = None) -> int:
        """End open watch streams (all, or of one plural resource such as "pods"); returns how many."""
        if self._store is None:
            return 0
        if resource is None:
            return int(self._store.drop_watches())
        kinds = {(r.api_version, r.kind) for r in RESOURCES if r.plural == resource}
        if not kinds:
            raise ValueError(f"unknown resource {resource!r}")
        return sum(int(self._store.drop_watches(api_version=av, kind=k)) for av, k in kinds)

    def compact_history(self) -> None:
        if self._store is not None:
            self._store.compact_history()

    # ---------------------------------------------------------------- controller hooks
    def register(self, name: str, callback: Callable[..., Any]) -> None:
        with self._lock:
            self._hooks[name] = callback

    def registered(self) -> list[str]:
        with self._lock:
            return sorted(self._hooks)

    def trigger(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            hook = self._hooks.get(name)
        if hook is None:
            known = ", ".join(self.registered()) or "none"
            raise LookupError(f"no fault hook {name!r} is registered (registered: {known})")
        return hook(*args, **kwargs)

    def pod_crash(self, namespace: str, pod: str, container: str | None = None) -> Any:
        return self.trigger("pod_crash", namespace, pod, container)

    def node_not_ready(self, node: str) -> Any:
        return self.trigger("node_not_ready", node)

    def node_ready(self, node: str) -> Any:
        return self.trigger("node_ready", node)

    def model_load_failure(self, namespace: str, model: str) -> Any:
        return self.trigger("model_load_failure", namespace, model)

    def kill_mlserver(self, namespace: str, pod: str) -> Any:
        return self.trigger("kill_mlserver", namespace, pod)

    def slow_model(self, namespace: str, model: str, factor: float) -> Any:
        return self.trigger("slow_model", namespace, model, factor)
