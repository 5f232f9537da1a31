"""What the providers share: reading the mesh address, cluster facts, Helm installs of Seldon and
the device plugin. Pure helpers take dicts; the I/O ones take a `Kube` or a `HelmRunner`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.config import Profile
from harness.errors import UsageError, WaitTimeout
from harness.k8s.gpu import is_gpu_node
from harness.kube.client import Kube
from harness.kube.retry import KubeApiError
from harness.kube.tools import HelmRunner
from harness.providers.base import ClusterFacts, MeshEndpoint

Obj = dict[str, Any]

SELDON_CHARTS = ("seldon-core-v2-crds", "seldon-core-v2-setup", "seldon-core-v2-runtime")
DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
DEVICE_PLUGIN_RELEASE = "nvidia-device-plugin"
CONTROLLER_DEPLOYMENT = "seldon-v2-controller-manager"


def rendered(profile: Profile) -> dict[str, list[Obj]]:
    """Every manifest the run applies (harness.load.job.render_run: render_all and the generator Job)."""
    from harness.load.job import render_run

    return render_run(profile)


def write_values(docs: list[Obj], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(docs[0] if docs else {}, sort_keys=True), encoding="utf-8")
    return path


def mesh_from_service(svc: Obj | None, namespace: str) -> MeshEndpoint:
    """The mesh address a cloud client would use: the LoadBalancer ingress of `seldon-mesh`."""
    where = f"Service {namespace}/seldon-mesh"
    if svc is None:
        raise UsageError(f"{where} not found: is Seldon Core 2 installed in namespace {namespace}?")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress:
        raise UsageError(
            f"{where} has no LoadBalancer ingress (status.loadBalancer.ingress is empty): the cluster has no "
            f"load balancer for it; install one (e.g. MetalLB) or expose the mesh another way")
    first = ingress[0]
    host = first.get("ip") or first.get("hostname")
    if not host:
        raise UsageError(f"{where}: status.loadBalancer.ingress[0] has neither ip nor hostname")
    port: int | None = None
    for p in first.get("ports") or []:
        if p.get("port"):
            port = int(p["port"])
            break
    if port is None:
        ports = (svc.get("spec") or {}).get("ports") or []
        if not ports:
            raise UsageError(f"{where} has no ports in spec.ports")
        port = int(ports[0]["port"])
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return MeshEndpoint(http_url=f"http://{shown}:{port}", grpc_target=f"{shown}:{port}")


def _has_ingress(svc: Obj | None) -> bool:
    return bool((((svc or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress"))


def mesh_endpoint(kube: Kube, profile: Profile) -> MeshEndpoint:
    """Load balancers publish their address some time after the Service exists: wait for it (bounded)."""
    ns = profile.seldon.namespace
    try:
        svc = kube.wait_for("v1", "Service", "seldon-mesh", ns, _has_ingress, profile.timeouts.load_balancer_s,
                            "the seldon-mesh Service to get a LoadBalancer address")
    except WaitTimeout:
        svc = kube.get("v1", "Service", "seldon-mesh", ns)
    return mesh_from_service(svc, ns)


def image_tag(image: str) -> str | None:
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    return tag


def seldon_version(kube: Kube, namespace: str) -> str | None:
    dep = kube.get("apps/v1", "Deployment", CONTROLLER_DEPLOYMENT, namespace)
    if dep is None:
        return None
    containers = ((((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    for c in containers:
        tag = image_tag(str(c.get("image", "")))
        if tag and "controller" in str(c.get("image", "")):
            return tag
    for c in containers:
        tag = image_tag(str(c.get("image", "")))
        if tag:
            return tag
    labels = (dep.get("metadata") or {}).get("labels") or {}
    version = labels.get("app.kubernetes.io/version")
    return str(version) if version else None


def admission_probe_pod(resource: str, namespace: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "harness-admission-probe-", "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "seldon-gpu-harness"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {resource: "1"}, "limits": {resource: "1"}},
        }]},
    }


def adds_gpu_toleration(pod: Obj, resource: str) -> bool:
    """Did admission add a toleration for the GPU resource (ExtendedResourceToleration-like)?"""
    return any(t.get("key") == resource for t in (pod.get("spec") or {}).get("tolerations") or [])


# The least-privilege identity may dry-run pods only in its own namespace (manifests/rbac).
HARNESS_NAMESPACE = "seldon-gpu-harness"


def detect_admission(kube: Kube, profile: Profile, namespace: str = "default") -> tuple[bool, str]:
    setting = profile.cluster.gpu_toleration_admission
    if setting != "detect":
        return setting == "yes", "profile"
    resource = profile.gpu.resource_name
    places = [HARNESS_NAMESPACE, namespace] if profile.cluster.provider == "existing" else [namespace]
    for place in places:
        try:
            answer = kube.create(admission_probe_pod(resource, place), dry_run=True)
        except KubeApiError as exc:
            if exc.status in (403, 404) and place != places[-1]:
                continue  # not our namespace here (no harness namespace, or not allowed): the next one
            return False, f"detection failed ({exc}); assuming no"
        return adds_gpu_toleration(answer, resource), "detected with a server-side dry-run pod"
    return False, "detection failed; assuming no"


def gpu_node_names(nodes: list[Obj], profile: Profile) -> list[str]:
    """Names of the GPU nodes (`harness.k8s.gpu.is_gpu_node` with the profile's pool label)."""
    pool = profile.gpu.pool_label
    return sorted(str(n["metadata"]["name"]) for n in nodes
                  if is_gpu_node(n, pool.key, pool.value, profile.gpu.resource_name))


def simulated_marker(version_info: Obj) -> str | None:
    """Why `/version` shows the harness's simulated API server, or None for any other cluster.

    The marker is the sim's own build metadata on gitVersion (`harness.sim.contracts.SIMULATED_BUILD`),
    so a report made through a kubeconfig that points at `sim up` is still marked simulated.
    """
    from harness.sim.contracts import SIMULATED_BUILD

    git_version = str(version_info.get("gitVersion") or "")
    _, plus, build = git_version.partition("+")
    if plus and SIMULATED_BUILD in build.split("."):
        return f"the API server reports gitVersion {git_version} (the harness's simulated cluster)"
    return None


def cluster_facts(kube: Kube, profile: Profile, simulated: bool) -> ClusterFacts:
    info = kube.version_info()
    marker = simulated_marker(info)
    admission, source = detect_admission(kube, profile)
    try:
        gpu_nodes = gpu_node_names(kube.list("v1", "Node"), profile)
    except KubeApiError:
        gpu_nodes = []
    try:
        version = seldon_version(kube, profile.seldon.namespace)
    except KubeApiError:
        version = None
    return ClusterFacts(
        kubernetes_version=str(info.get("gitVersion", "")), seldon_version=version,
        gpu_toleration_admission=admission, admission_source=source,
        simulated=simulated or marker is not None, gpu_nodes=tuple(gpu_nodes),
        simulated_reason=marker or ("the profile's provider is the simulated cluster" if simulated else None),
    )


def install_seldon(helm: HelmRunner, profile: Profile, workdir: Path, *, create_only: bool = False,
                   installed: list[str] | None = None) -> list[str]:
    """crds → setup → runtime, pinned to profile.seldon.version. Returns the releases installed.

    `installed` (when given) gets each release as soon as it is in, so a failure half-way still
    lets teardown remove what this run put there, and nothing else."""
    docs = rendered(profile)
    s = profile.seldon
    values = {
        "seldon-core-v2-crds": None,
        "seldon-core-v2-setup": write_values(docs.get("seldon/setup-values.yaml", [{}]),
                                             workdir / "helm" / "seldon-setup-values.yaml"),
        "seldon-core-v2-runtime": write_values(docs.get("seldon/runtime-values.yaml", [{}]),
                                               workdir / "helm" / "seldon-runtime-values.yaml"),
    }
    done = []
    for chart in SELDON_CHARTS:
        helm.upgrade_install(chart, chart, repo=s.helm_repo, version=s.version, namespace=s.namespace,
                             timeout_s=profile.timeouts.seldon_install_s, values=values[chart],
                             create_only=create_only)
        done.append(chart)
        if installed is not None:
            installed.append(f"{s.namespace}/{chart}")
    return done


def install_device_plugin(helm: HelmRunner, profile: Profile, workdir: Path, *, create_only: bool = False) -> None:
    dp = profile.gpu.device_plugin
    values = write_values(rendered(profile).get("gpu/device-plugin-values.yaml", [{}]),
                          workdir / "helm" / "device-plugin-values.yaml")
    helm.upgrade_install(DEVICE_PLUGIN_RELEASE, "nvidia-device-plugin", repo=DEVICE_PLUGIN_REPO,
                         version=dp.chart_version, namespace=dp.namespace, timeout_s=profile.timeouts.gpu_stack_s,
                         values=values, create_only=create_only)


def wait_gpu_allocatable(kube: Kube, profile: Profile, expected: dict[str, int]) -> list[Obj]:
    """Wait until every named node advertises at least its expected `nvidia.com/gpu` allocatable."""
    resource = profile.gpu.resource_name

    def ready(nodes: list[Obj]) -> bool:
        have = {n["metadata"]["name"]: n for n in nodes}
        for name, count in expected.items():
            alloc = ((have.get(name, {}).get("status") or {}).get("allocatable") or {}).get(resource)
            try:
                if alloc is None or int(alloc) < count:
                    return False
            except ValueError:
                return False
        return True

    want = ", ".join(f"{n}={c}" for n, c in sorted(expected.items()))
    return kube.wait_for_list("v1", "Node", None, ready, profile.timeouts.gpu_stack_s,
                              f"GPU nodes to advertise {resource} ({want})")
