"""Pure model scheduling of the simulated Seldon scheduler (design B1).

A model goes to exactly one Server. Server filters first (connected replicas, the pin, every
requirement among the capabilities); then replica filters (memory) and the replica count. The two
failure texts are Seldon's. Among several candidates the choice is deterministic: the Server that
already holds the model wins (Seldon avoids flip-flops), then the lexicographically smallest name.

Simplification, documented: a replica's memory capacity is the inference container's memory request
x 1.1 (Seldon's default 10 % overcommit) and is not reduced by other models on that replica.
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


@dataclass(frozen=True)
class ModelRequest:
    name: str
    requirements: tuple[str, ...] = ()
    server: str | None = None  # spec.server: pin, no fallback
    memory_bytes: int = 0
    replicas: int = 1


@dataclass(frozen=True)
class Placement:
    """Either `server` is set, or `reason` says why scheduling failed."""

    server: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.server is not None


def _server_matches(model: ModelRequest, server: ServerView) -> bool:
    if server.ready_replicas <= 0:
        return False
    if model.server is not None and server.name != model.server:
        return False
    return satisfies(model.requirements, server.capabilities)


def _suitable_replicas(model: ModelRequest, server: ServerView) -> int:
    if model.memory_bytes > server.memory_bytes * OVERCOMMIT:
        return 0
    return server.ready_replicas


def schedule_model(model: ModelRequest, servers: Iterable[ServerView], current: str | None = None) -> Placement:
    """Pick the Server for `model`, or say why none fits (Seldon's two ScheduleFailed reasons)."""
    matching = [s for s in servers if _server_matches(model, s)]
    if not matching:
        return Placement(None, NO_MATCHING_SERVERS)
    able = [s for s in matching if _suitable_replicas(model, s) >= max(model.replicas, 1)]
    if not able:
        return Placement(None, NOT_ENOUGH_REPLICAS)
    chosen = sorted(able, key=lambda s: (s.name != current, s.name))[0]
    return Placement(chosen.name)


def candidates(model: ModelRequest, servers: Sequence[ServerView]) -> list[str]:
    """Names of every Server that could take the model, in preference order (for diagnostics)."""
    matching = [s for s in servers if _server_matches(model, s)]
    return sorted(s.name for s in matching if _suitable_replicas(model, s) >= max(model.replicas, 1))
