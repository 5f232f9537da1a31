"""The resource types the simulated API server serves: one table drives discovery, routing and the store.

A `ResourceType` says where a kind lives (group/version/plural), whether it is namespaced, which
short names and subresources kubectl may use, and which verbs discovery advertises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.k8s.seldon_api import SELDON_GROUP, SELDON_VERSION

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def qualified_kind(self) -> str:
        """How error messages name the kind: `StatefulSet.apps`, `Pod` (core has no suffix)."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def qualified_plural(self) -> str:
        """How NotFound messages name the resource: `statefulsets.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural



RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status", "log", "binding", "eviction"), categories=("all",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",), categories=("all",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), categories=("all",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"),
                 categories=("all",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), categories=("all",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status",), categories=("all",)),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    ResourceType("batch", "v1", "jobs", "Job", True, (), ("status",), categories=("all",)),
    ResourceType("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                 ("crd", "crds"), ("status",), verbs=READ_VERBS),
    ResourceType(SELDON_GROUP, SELDON_VERSION, "servers", "Server", True, ("mls",), ("status", "scale")),
    ResourceType(SELDON_GROUP, SELDON_VERSION, "serverconfigs", "ServerConfig", True, ("mlsc",)),
    ResourceType(SELDON_GROUP, SELDON_VERSION, "models", "Model", True, ("mlm",), ("status", "scale")),
)

# Events are served as core/v1 only (no events.k8s.io/v1 view), so discovery never promises what is not served.
STORED: tuple[ResourceType, ...] = RESOURCES

_BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in STORED}
_BY_PLURAL: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def by_plural(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PLURAL.get((group, version, plural))


def groups() -> dict[str, list[str]]:
    """group -> versions, in discovery order (core group excluded)."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in out.setdefault(r.group, []):
            out[r.group].append(r.version)
    return out


def in_group_version(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
