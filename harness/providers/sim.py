"""The `sim` provider: the built-in simulated cluster, in-process.

It boots with Seldon and the device-plugin capacity already present, so the install steps are
no-ops; the harness still talks to it over HTTP with the same client as to a real cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import Profile
from harness.errors import UsageError
from harness.kube.client import Kube
from harness.kube.nodeguard import NodeGuard
from harness.kube.tunnel import PortForwardTunnel
from harness.providers import common, mesh
from harness.providers.base import ClusterFacts, ClusterHandle, MeshEndpoint, PreflightCheck, ProviderOptions
from harness.render.placement import runtime_class_name


class SimProvider:
    name = "sim"

    def __init__(self, profile: Profile, options: ProviderOptions) -> None:
        self.profile = profile
        self.options = options
        self.cluster: Any = None
        self.tunnels: list[PortForwardTunnel] = []

    def preflight(self) -> list[PreflightCheck]:
        try:
            from harness.sim import cluster

            ok = hasattr(cluster, "SimCluster")
        except ImportError as exc:
            return [PreflightCheck("sim.available", False, f"the simulated cluster cannot be imported: {exc}")]
        if not ok:
            return [PreflightCheck("sim.available", False,
                                   "harness.sim.cluster has no SimCluster; reinstall the harness")]
        return [PreflightCheck("sim.available", True, "simulated cluster available (no Docker or GPU needed)")]

    def provision(self) -> ClusterHandle:
        from harness.sim.cluster import SimCluster

        workdir = Path(self.options.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = SimCluster(self.profile, workdir, mlserver=self.options.sim_mlserver)
        self.cluster.start()
        kubeconfig = Path(self.cluster.kubeconfig_path)
        if not kubeconfig.is_file():
            raise UsageError(f"the simulated cluster did not write its kubeconfig at {kubeconfig}")
        return ClusterHandle(provider=self.name, kubeconfig=kubeconfig, context=None, simulated=True,
                             cluster_name=f"sim-{self.options.run_id}", created=True)

    def prepare_nodes(self, kube: Kube, guard: NodeGuard) -> list[str]:
        return []  # the sim's nodes come from the profile with taints, labels and GPU capacity

    def install_gpu_stack(self, kube: Kube) -> None:
        # The simulated nodes run the NVIDIA runtime already; what a cluster builder still has to create
        # is the RuntimeClass GPU pods name (the sim's admission refuses a pod naming a missing one).
        name = runtime_class_name(self.profile)
        if name is not None:
            kube.apply({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "seldon-gpu-harness"}},
                        "handler": "nvidia"})

    def install_seldon(self, kube: Kube) -> None:
        return None

    def mesh_endpoint(self, kube: Kube) -> MeshEndpoint:
        return mesh.mesh_endpoint(kube, self.profile, self.tunnels)

    def cluster_facts(self, kube: Kube) -> ClusterFacts:
        return common.cluster_facts(kube, self.profile, simulated=True)

    def teardown(self) -> None:
        mesh.close_tunnels(self.tunnels)
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            cluster.stop()
