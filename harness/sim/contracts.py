"""The seams inside the simulated cluster.

The API server (harness/sim/api) owns the object store; controllers (scheduler, kubelet, workload
controllers, node lifecycle, Seldon, data plane) run in-process against the `Store` protocol below,
never over HTTP, and are driven by one runtime loop. Objects are plain Kubernetes-shaped dicts.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json"]

# How the simulated API server says what it is: semver build metadata on `/version`'s gitVersion
# (e.g. `v1.33.1+harness-sim`). Real distributions use build metadata too (`+k3s1`), but never this
# one, so a client that reaches the sim through any kubeconfig can tell (harness.providers.common).
SIMULATED_BUILD = "harness-sim"


class ApiError(Exception):
    """A Kubernetes API failure, rendered by the HTTP layer as a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason  # NotFound, AlreadyExists, Conflict, Invalid, BadRequest, TooManyRequests, ...
        self.message = message
        self.details = details or {}


class Store(Protocol):
    """Everything the cluster knows. Thread-safe; every write bumps resourceVersion and notifies watchers."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None: ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]: ...

    def create(self, obj: Obj) -> Obj:
        """Validate (422 Invalid), default and store; 409 AlreadyExists if present."""
        ...

    def update(self, obj: Obj) -> Obj:
        """Replace spec/metadata (status is kept); a resourceVersion in `obj` must match (409 Conflict)."""
        ...

    def update_status(self, obj: Obj) -> Obj:
        """Replace status only (the status subresource)."""
        ...

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Any,
        patch_type: PatchType,
        subresource: str | None = None,
    ) -> Obj: ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               options: Any = None) -> Obj | None:
        """Delete with owner-reference cascade (background), or as `options` (a
        `harness.sim.api.deletion.DeleteOptions`) say. Returns the deleted (or now deleting) object or None."""
        ...

    def record_event(self, involved: Obj, reason: str, message: str, event_type: str = "Normal",
                     component: str = "") -> None:
        """Create or bump (count, lastTimestamp) a core/v1 Event about `involved`."""
        ...

    def append_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """Append to a container's current log (served by GET .../pods/NAME/log)."""
        ...

    def rotate_log(self, namespace: str, pod: str, container: str) -> None:
        """A container restarted: its current log becomes the `?previous=true` log."""
        ...

    def set_pod_ports(self, namespace: str, pod: str, ports: dict[int, int]) -> None:
        """Where the process behind a pod listens (container port -> local port), for the pod proxy."""
        ...


class Controller(Protocol):
    """A reconcile loop run by the sim runtime whenever the store changed or a wake-up is due."""

    name: str

    def reconcile(self, store: Store, now: float) -> float | None:
        """Bring the world in line with the objects; return the monotonic time at which to be
        called again even if nothing changes (timers such as tolerationSeconds), or None."""
        ...

    def close(self) -> None:
        """Stop any process or thread the controller started (MLServer, the mesh)."""
        ...
