"""Pure model scheduling of the simulated Seldon scheduler (design B1).

Follows SeldonIO/seldon-core v2.10.2 (commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce)
scheduler/pkg/scheduler/scheduler.go `scheduleToServer`/`findAndUpdateToServers` and its filters:
a model goes to exactly one Server. Server filters first (connected replicas, the pin, every
requirement, trimmed, among the capabilities); then replica filters (memory) and the replica count.
When no Server has `replicas` suitable replicas but the model sets `minReplicas`, a Server with at
least `minReplicas` takes it on as many replicas as it has, up to `replicas` (partial scheduling,
not a failure). The two failure texts are Seldon's. Among several candidates the choice is
deterministic: the Server that already holds the model wins (Seldon's ModelAlreadyLoadedOnServer
sorter), then the lexicographically smallest name.

A replica's memory is the inference container's memory request x 1.1 (Seldon's default 10 %
overcommit) less the memory of the models already loaded on it (the agent's
`GetAvailableMemoryBytesWithOverCommit`, scheduler/pkg/agent/state_manager.go, and the
`AvailableMemoryReplicaFilter`, scheduler/pkg/scheduler/filters/replicamemory.go): a replica that
already holds the model always passes. Replicas are taken in index order among those that pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.k8s.seldon import satisfies

NO_MATCHING_SERVERS = "Failed to schedule model as no matching servers are available"
NOT_ENOUGH_REPLICAS = "Failed to schedule model as no matching server had enough suitable replicas"
OVERCOMMIT = 1.1


@dataclass(frozen=True)
class ServerView:
    """What the scheduler knows about one Server: its agents' announcements."""

    name: str
    capabilities: tuple[str, ...]
    ready_replicas: int
    memory_bytes: int  # per replica, the inference container's memory request
    # per ready replica (index order): memory of the other models loaded there, and whether this model is
    used_bytes: tuple[int, ...] = ()
    holds_model: tuple[bool, ...] = ()


@dataclass(frozen=True)
class ModelRequest:
    name: str
    requirements: tuple[str, ...] = ()
    server: str | None = None  # spec.server: pin, no fallback
    memory_bytes: int = 0
    replicas: int = 1
    min_replicas: int = 0  # spec.minReplicas: schedule on fewer replicas rather than fail


@dataclass(frozen=True)
class Placement:
    """Either `server` is set (with how many of its replicas load the model), or `reason` says why
    scheduling failed."""

    server: str | None
    reason: str | None = None
    replicas: int = 0
    indexes: tuple[int, ...] = ()  # which ready replicas (index order) load it

    @property
    def ok(self) -> bool:
        return self.server is not None


SCALING_SPEC_ERROR = "scaling spec is invalid"


def scaling_spec(replicas: int | None, min_replicas: int | None, max_replicas: int | None) -> tuple[int, int] | str:
    """(replicas, minReplicas) as Seldon's operator validates them (operator/internal/utils.go
    `GetValidatedScalingSpec`), or the error text that fails the Model."""
    wanted, low = 1, 0
    if replicas is None and min_replicas is None and max_replicas is None:
        return wanted, low
    if replicas is not None and replicas >= 0:
        wanted = replicas
    elif min_replicas is not None and min_replicas > 0:
        if replicas is not None and replicas < min_replicas:
            return (f"{SCALING_SPEC_ERROR}: number of replicas {replicas} cannot be less than minimum replica "
                    f"{min_replicas}")
        wanted = min_replicas
    if min_replicas is not None and min_replicas > 0:
        low = min_replicas
        if wanted < low:
            return f"{SCALING_SPEC_ERROR}: number of replicas {wanted} must be >= min replicas {low}"
    if max_replicas is not None and max_replicas > 0:
        if low > max_replicas:
            return (f"{SCALING_SPEC_ERROR}: min number of replicas {low} must be <= max number of replicas "
                    f"{max_replicas}")
        if wanted > max_replicas:
            return f"{SCALING_SPEC_ERROR}: number of replicas {wanted} must be <= max replicas {max_replicas}"
    return wanted, low


def _server_matches(model: ModelRequest, server: ServerView) -> bool:
    if server.ready_replicas <= 0:
        return False
    if model.server is not None and server.name != model.server:
        return False
    return satisfies(model.requirements, server.capabilities)


def _fitting(model: ModelRequest, server: ServerView) -> list[int]:
    """Indexes of the ready replicas whose available memory takes the model (or that hold it already)."""
    capacity = server.memory_bytes * OVERCOMMIT
    out = []
    for i in range(server.ready_replicas):
        used = server.used_bytes[i] if i < len(server.used_bytes) else 0
        held = i < len(server.holds_model) and server.holds_model[i]
        if held or model.memory_bytes <= max(0.0, capacity - used):
            out.append(i)
    return out


def _suitable_replicas(model: ModelRequest, server: ServerView) -> int:
    return len(_fitting(model, server))


def schedule_model(model: ModelRequest, servers: Iterable[ServerView], current: str | None = None) -> Placement:
    """Pick the Server for `model`, or say why none fits (Seldon's two ScheduleFailed reasons)."""
    matching = sorted((s for s in servers if _server_matches(model, s)), key=lambda s: (s.name != current, s.name))
    if not matching:
        return Placement(None, NO_MATCHING_SERVERS)
    wanted = model.replicas
    if wanted <= 0 and model.min_replicas <= 0:
        return Placement(matching[0].name, replicas=0)  # scaled down: on its Server, loaded nowhere
    for server in matching:
        fitting = _fitting(model, server)
        if len(fitting) >= wanted:
            return Placement(server.name, replicas=wanted, indexes=tuple(fitting[:wanted]))
    if model.min_replicas > 0:
        for server in matching:
            fitting = _fitting(model, server)
            if len(fitting) >= model.min_replicas:
                count = min(len(fitting), wanted)
                return Placement(server.name, replicas=count, indexes=tuple(fitting[:count]))
    return Placement(None, NOT_ENOUGH_REPLICAS)


def candidates(model: ModelRequest, servers: Sequence[ServerView]) -> list[str]:
    """Names of every Server that could take the model, in preference order (for diagnostics)."""
    matching = [s for s in servers if _server_matches(model, s)]
    needed = model.min_replicas if model.min_replicas > 0 else max(model.replicas, 1)
    return sorted(s.name for s in matching if _suitable_replicas(model, s) >= needed)
