"""Cluster providers (sim | kind | existing) behind one lifecycle interface."""

from __future__ import annotations

from harness.config import Profile
from harness.errors import UsageError
from harness.kube.tools import ToolPaths
from harness.providers.base import (
    ClusterFacts,
    ClusterHandle,
    HostProbe,
    MeshEndpoint,
    PreflightCheck,
    Provider,
    ProviderOptions,
)


def get_provider(profile: Profile, options: ProviderOptions) -> Provider:
    kind = profile.cluster.provider
    if kind == "sim":
        from harness.providers.sim import SimProvider

        return SimProvider(profile, options)
    if kind == "kind":
        from harness.providers.kind import KindProvider

        return KindProvider(profile, options)
    if kind == "existing":
        from harness.providers.existing import ExistingProvider

        return ExistingProvider(profile, options)
    raise UsageError(f"{profile.source}: cluster.provider: expected sim, kind or existing, got {kind!r}")


__all__ = [
    "ClusterFacts",
    "ClusterHandle",
    "HostProbe",
    "MeshEndpoint",
    "PreflightCheck",
    "Provider",
    "ProviderOptions",
    "ToolPaths",
    "get_provider",
]
