"""The `existing` provider: attach to a cluster someone else runs.

Never creates or deletes the cluster; the preflight only reads; node taints and labels are
REPORTED when missing, never added (the platform team owns them). Seldon is installed only when
the profile asks (`seldon.install`), and only what was installed here is removed on teardown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.config import Profile
from harness.errors import UsageError
from harness.kube.client import Kube
from harness.kube.kubeconfig import KubeconfigChoice, resolve, single_file
from harness.kube.nodeguard import NodeGuard
from harness.kube.retry import KubeApiError
from harness.kube.tools import HelmRunner, ToolPaths, ToolRunner
from harness.providers import common
from harness.providers.base import ClusterFacts, ClusterHandle, MeshEndpoint, PreflightCheck, ProviderOptions

SELDON_CRD = "servers.mlops.seldon.io"


def missing_dedication(nodes: list[dict[str, Any]], profile: Profile) -> list[str]:
    """One line per GPU-pool node that lacks the profile's taint or pool label (pure)."""
    taint, pool = profile.gpu.taint, profile.gpu.pool_label
    problems = []
    by_name = {str(n["metadata"]["name"]): n for n in nodes}
    for name in common.gpu_node_names(list(by_name.values()), profile):
        node = by_name[name]
        labels = (node.get("metadata") or {}).get("labels") or {}
        taints = (node.get("spec") or {}).get("taints") or []
        if not any(t.get("key") == taint.key and t.get("value", "") == taint.value and t.get("effect") == taint.effect
                   for t in taints):
            problems.append(f"GPU node {name} lacks the taint {taint}: add it with "
                            f"`kubectl taint nodes {name} {taint}` (the harness never changes it)")
        if labels.get(pool.key) != pool.value:
            problems.append(f"GPU node {name} lacks the label {pool.key}={pool.value}: add it with "
                            f"`kubectl label nodes {name} {pool.key}={pool.value}`")
    return problems


def device_plugins_present(kube: Kube, profile: Profile) -> list[str]:
    """What shows a GPU device plugin already runs: its DaemonSets (any namespace; upstream chart,
    GPU Operator, GKE's) and nodes that already advertise the GPU resource, which only a registered
    device plugin makes them do."""
    found: list[str] = []
    try:
        for ds in kube.list("apps/v1", "DaemonSet"):
            meta = ds.get("metadata") or {}
            name = str(meta.get("name", ""))
            app = str((meta.get("labels") or {}).get("app.kubernetes.io/name", ""))
            if "device-plugin" in name + app and ("nvidia" in name + app or "gpu" in name + app):
                found.append(f"DaemonSet {meta.get('namespace')}/{name}")
    except KubeApiError as exc:
        found.append(f"cannot list DaemonSets to check ({exc.status or exc})")
    resource = profile.gpu.resource_name
    advertising = [str(n["metadata"]["name"]) for n in kube.list("v1", "Node")
                   if str(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0")) not in ("0", "")]
    if advertising and not profile.cluster.fake_gpus:
        found.append(f"node(s) {', '.join(sorted(advertising))} already advertise {resource}")
    return found


class ExistingProvider:
    name = "existing"

    def __init__(self, profile: Profile, options: ProviderOptions, runner: ToolRunner | None = None) -> None:
        self.profile = profile
        self.options = options
        self.runner = runner or ToolRunner(profile.timeouts.subprocess_s, options.tools or ToolPaths())
        self.context = profile.cluster.context
        self.workdir = Path(options.workdir)
        # kubectl's rules: --kubeconfig (or the profile's) alone, else every $KUBECONFIG file merged,
        # else ~/.kube/config. A problem is kept for the preflight to report with what was tried.
        self.kubeconfig_problem: str | None = None
        source = "--kubeconfig" if options.kubeconfig else "profile cluster.kubeconfig"
        explicit = options.kubeconfig or (Path(profile.cluster.kubeconfig) if profile.cluster.kubeconfig else None)
        try:
            self.choice: KubeconfigChoice | None = resolve(explicit, os.environ.get("KUBECONFIG"), Path.home(),
                                                           source=source)
            self.kubeconfig = self.choice.files[0]
        except UsageError as exc:
            self.choice, self.kubeconfig_problem = None, str(exc)
            self.kubeconfig = Path(explicit) if explicit else Path.home() / ".kube" / "config"
        self._single: Path | None = None
        self.installed: list[str] = []

    def _kube(self) -> Kube:
        return Kube.from_kubeconfig(self._kubeconfig_file(), self.context, self.profile.timeouts)

    def _kubeconfig_file(self) -> Path:
        """One file for the client, kubectl and helm: a merged $KUBECONFIG is written to the workdir."""
        if self.kubeconfig_problem is not None or self.choice is None:
            raise UsageError(self.kubeconfig_problem or f"{self.kubeconfig}: kubeconfig not found")
        if self._single is None:
            self._single = single_file(self.choice, self.workdir)
            self.kubeconfig = self._single
        return self._single

    def preflight(self) -> list[PreflightCheck]:
        try:
            kube = self._kube()
        except UsageError as exc:
            return [PreflightCheck("cluster.kubeconfig", False, str(exc))]
        try:
            return self._preflight(kube)
        finally:
            kube.close()

    def _preflight(self, kube: Kube) -> list[PreflightCheck]:
        out: list[PreflightCheck] = []
        try:
            version = kube.server_version()
        except KubeApiError as exc:
            return [PreflightCheck("cluster.reachable", False,
                            f"the API server of {self.kubeconfig} is not reachable: {exc}")]
        out.append(PreflightCheck("cluster.reachable", True, f"Kubernetes {version}"))
        try:
            nodes = kube.list("v1", "Node")
        except KubeApiError as exc:
            return [*out, PreflightCheck("cluster.nodes", False, f"cannot list nodes ({exc}); see manifests/rbac/")]
        gpu_nodes = common.gpu_node_names(nodes, self.profile)
        need = sum(g.count for g in self.profile.cluster.nodes.gpu_workers)
        if len(gpu_nodes) < need:
            out.append(PreflightCheck("cluster.gpu-nodes", False,
                               f"found {len(gpu_nodes)} GPU node(s) ({', '.join(gpu_nodes) or 'none'}; by label "
                               f"{self.profile.gpu.pool_label.key}={self.profile.gpu.pool_label.value}, "
                               f"nvidia.com/gpu.present=true or {self.profile.gpu.resource_name} allocatable), "
                               f"the profile needs {need}"))
        else:
            out.append(PreflightCheck("cluster.gpu-nodes", True, f"GPU nodes: {', '.join(gpu_nodes)}"))
        try:
            crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", SELDON_CRD)
            installed = common.seldon_version(kube, self.profile.seldon.namespace)
        except KubeApiError as exc:
            crd, installed = None, None
            out.append(PreflightCheck("seldon.readable", False, f"cannot read Seldon's CRDs or controller: {exc}"))
        if not self.profile.seldon.install:
            if crd is None:
                out.append(PreflightCheck("seldon.installed", False,
                                   f"Seldon Core 2 is not installed (no CRD {SELDON_CRD}): install it or set "
                                   f"seldon.install: true in the profile"))
            else:
                shown = installed or "unknown version"
                same = installed in (None, self.profile.seldon.version)
                out.append(PreflightCheck("seldon.installed", True,
                                   f"Seldon Core 2 {shown} in {self.profile.seldon.namespace}"
                                   + ("" if same else f" (the profile names {self.profile.seldon.version})")))
        if self.profile.seldon.install and crd is not None:
            where = f", controller {installed} in {self.profile.seldon.namespace}" if installed else ""
            out.append(PreflightCheck("seldon.preexisting", False,
                               f"seldon.install is true but Seldon Core 2 is already on this cluster (CRD "
                               f"{SELDON_CRD}{where}); set seldon.install: false to test it: the harness never "
                               "upgrades or uninstalls a release it did not install"))
        if self.profile.gpu.device_plugin.install:
            present = device_plugins_present(kube, self.profile)
            if present:
                out.append(PreflightCheck("gpu.device-plugin.preexisting", False,
                                   f"gpu.device_plugin.install is true but a device plugin is already there "
                                   f"({'; '.join(present)}); set gpu.device_plugin.install: false: the harness "
                                   "never upgrades or uninstalls a release it did not install"))
        if self.profile.seldon.install and self.runner.which("helm") is None:
            out.append(PreflightCheck("tool.helm", False,
                                      "seldon.install is true but helm is not on PATH: install helm 3"))
        return out

    def provision(self) -> ClusterHandle:
        self._kubeconfig_file()
        return ClusterHandle(provider=self.name, kubeconfig=self.kubeconfig, context=self.context, simulated=False,
                             cluster_name=self.context or "current-context", created=False)

    def prepare_nodes(self, kube: Kube, guard: NodeGuard) -> list[str]:
        nodes = kube.list("v1", "Node")
        problems = missing_dedication(nodes, self.profile)
        if self.profile.cluster.fake_gpus:
            # A GPU-less shared cluster: pool nodes get fake capacity through the guard (restored at the end).
            pool = self.profile.gpu.pool_label
            count = max((g.gpus for g in self.profile.cluster.nodes.gpu_workers), default=1)
            for node in nodes:
                labels = node["metadata"].get("labels") or {}
                alloc = ((node.get("status") or {}).get("allocatable") or {}).get(self.profile.gpu.resource_name)
                if labels.get(pool.key) == pool.value and alloc in (None, "0"):
                    guard.set_extended_capacity(node["metadata"]["name"], self.profile.gpu.resource_name, count)
        return problems

    def install_gpu_stack(self, kube: Kube) -> None:
        if self.profile.gpu.device_plugin.install:
            common.install_device_plugin(self._helm(), self.profile, self.workdir, create_only=True)
            self.installed.append(f"{self.profile.gpu.device_plugin.namespace}/{common.DEVICE_PLUGIN_RELEASE}")

    def _helm(self) -> HelmRunner:
        return HelmRunner(self.runner, self.kubeconfig, self.context)

    def install_seldon(self, kube: Kube) -> None:
        if not self.profile.seldon.install:
            return
        common.install_seldon(self._helm(), self.profile, self.workdir, create_only=True, installed=self.installed)

    def mesh_endpoint(self, kube: Kube) -> MeshEndpoint | None:
        if self.profile.load.generators.where == "cluster":
            return common.mesh_endpoint_if_any(kube, self.profile)
        return common.mesh_endpoint(kube, self.profile)

    def cluster_facts(self, kube: Kube) -> ClusterFacts:
        return common.cluster_facts(kube, self.profile, simulated=False)

    def teardown(self) -> None:
        """Uninstall only the Helm releases this run installed (newest first); never the cluster."""
        if self.options.keep_cluster:
            return
        helm = self._helm()
        for entry in reversed(self.installed):
            namespace, release = entry.split("/", 1)
            helm.uninstall(release, namespace, self.profile.timeouts.delete_s)
        self.installed.clear()
