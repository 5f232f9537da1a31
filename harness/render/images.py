"""Every container image a profile's run needs, listed once, and registry-mirror rewrites (pure).

Sources, each pinned where the image name comes from:
- Seldon Core 2 components: SeldonIO/seldon-core tag v2.10.2 (commit 8ca3c3c),
  k8s/helm-charts/seldon-core-v2-setup/values.yaml: `<component>.image` = registry docker.io,
  repository seldonio/<name>, tag = the Seldon version; serverConfig.rclone/agent the same;
  serverConfig.mlserver.image docker.io/seldonio/mlserver:1.7.1. Hodometer is disabled by the rendered
  runtime values; dataflow, modelgateway and pipelinegateway run only with `seldon.kafka`.
- Triton: the image pinned on Triton Servers (`harness.render.seldon.TRITON_IMAGE`).
- NVIDIA device plugin: NVIDIA/k8s-device-plugin tag v0.17.1, deployments/helm/nvidia-device-plugin:
  values.yaml `image.repository: nvcr.io/nvidia/k8s-device-plugin`, tag defaults to `v<appVersion>`
  (_helpers.tpl `nvidia-device-plugin.fullimage`).
- The NVML probe image (`harness.render.gpu.PROBE_IMAGE`).
The intruder pod's `registry.k8s.io/pause:3.10` is kind's own sandbox image (kind v0.27.0
images/base/files/etc/containerd/config.toml `sandbox_image`), already in every kind node: not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from harness.config import Profile
from harness.render.gpu import PROBE_IMAGE
from harness.render.seldon import TRITON_IMAGE

DOCKER_HUB = "docker.io"
MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"
DEVICE_PLUGIN_REPOSITORY = "nvcr.io/nvidia/k8s-device-plugin"
# Seldon components by the chart key that names them -> repository (setup chart values, v2.10.2).
SELDON_COMPONENTS: dict[str, str] = {
    "controller": "seldonio/seldonv2-controller",
    "scheduler": "seldonio/seldon-scheduler",
    "envoy": "seldonio/seldon-envoy",
    "agent": "seldonio/seldon-agent",
    "rclone": "seldonio/seldon-rclone",
}
KAFKA_COMPONENTS: dict[str, str] = {
    "dataflow": "seldonio/seldon-dataflow-engine",
    "modelgateway": "seldonio/seldon-modelgateway",
    "pipelinegateway": "seldonio/seldon-pipelinegateway",
}
# Where an image runs: every worker, or only the GPU workers (no CPU node ever starts it).
Where = Literal["all", "gpu"]


@dataclass(frozen=True)
class RunImage:
    ref: str        # fully qualified: registry/repository:tag[@digest]
    source: str     # what needs it (shown in the preflight)
    where: Where


def split_registry(ref: str) -> tuple[str, str]:
    """(registry, rest) the way Docker reads a reference: the first path part is a registry only when
    it has a '.' or ':' or is `localhost`; otherwise Docker Hub (`library/` for one-part names)."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, ref if sep else f"library/{ref}"


def qualified(ref: str) -> str:
    registry, rest = split_registry(ref)
    return f"{registry}/{rest}"


def has_digest(ref: str) -> bool:
    return "@sha256:" in ref


def run_images(profile: Profile) -> list[RunImage]:
    """The images this profile's run starts in the cluster, each once, in a fixed order."""
    out: list[RunImage] = []
    seen: set[str] = set()

    def add(ref: str, source: str, where: Where) -> None:
        full = qualified(ref)
        if full not in seen:
            seen.add(full)
            out.append(RunImage(full, source, where))
            return
        # Needed on GPU workers by one user and everywhere by another: everywhere.
        i = next(i for i, x in enumerate(out) if x.ref == full)
        if out[i].where != where:
            out[i] = RunImage(full, out[i].source, "all")

    version = profile.seldon.version
    if profile.seldon.install:
        for key, repo in SELDON_COMPONENTS.items():
            add(f"{DOCKER_HUB}/{repo}:{version}", f"Seldon {version} {key}", "all")
        if profile.seldon.kafka:
            for key, repo in KAFKA_COMPONENTS.items():
                add(f"{DOCKER_HUB}/{repo}:{version}", f"Seldon {version} {key}", "all")
    else:
        # An installed Seldon still starts agent and rclone in every Server pod this run creates.
        for key in ("agent", "rclone"):
            add(f"{DOCKER_HUB}/{SELDON_COMPONENTS[key]}:{version}", f"Seldon {version} {key}", "all")
    for server in profile.servers:
        if server.server_config == "triton":
            add(TRITON_IMAGE, f"Server {server.name} (triton)", "gpu" if server.on_gpu else "all")
        else:
            add(MLSERVER_IMAGE, f"Server {server.name} (mlserver)", "all")
    dp = profile.gpu.device_plugin
    if dp.install and not profile.cluster.fake_gpus:
        add(f"{DEVICE_PLUGIN_REPOSITORY}:v{dp.chart_version}", f"NVIDIA device plugin {dp.chart_version}", "gpu")
    if not profile.cluster.fake_gpus:
        add(profile.gpu.probe_image or PROBE_IMAGE, "NVML probe", "all")
    return out


def mirror_ref(ref: str, mirrors: dict[str, str]) -> str:
    """`ref` pulled through the profile's mirror for its registry (same path, tag and digest), or `ref`.

    `cluster.registry_mirrors: {docker.io: https://mirror.example:5000/hub}` turns
    `docker.io/seldonio/mlserver:1.7.1` into `mirror.example:5000/hub/seldonio/mlserver:1.7.1`."""
    registry, rest = split_registry(ref)
    mirror = mirrors.get(registry)
    if not mirror:
        return ref
    host = mirror.split("://", 1)[-1].rstrip("/")
    return f"{host}/{rest}"


def upstream_server(registry: str) -> str:
    """containerd's `server` for a registry host: Docker Hub's API host is registry-1.docker.io
    (containerd docs/hosts.md, "docker.io" example)."""
    return "https://registry-1.docker.io" if registry == DOCKER_HUB else f"https://{registry}"


def hosts_toml(registry: str, mirror: str) -> str:
    """containerd's per-registry hosts file (containerd docs/hosts.md): try the mirror for pulls and
    resolves, then fall back to the registry itself."""
    return (f'server = "{upstream_server(registry)}"\n\n'
            f'[host."{mirror.rstrip("/")}"]\n'
            f'  capabilities = ["pull", "resolve"]\n')


# kind v0.27.0 site/static/examples/kind-with-registry.sh: kind's containerd reads per-registry hosts
# files only once this config_path is set (kubernetes-sigs/kind#2875).
CERTS_DIR = "/etc/containerd/certs.d"
CONTAINERD_REGISTRY_PATCH = f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_DIR}"'


def rewrites_images(profile: Profile) -> bool:
    """Existing clusters: the harness cannot configure their nodes' containerd, so the images this run
    starts are named by their mirror copies instead (kind gets containerd hosts files)."""
    return profile.cluster.provider == "existing" and bool(profile.cluster.registry_mirrors)


def rewritten(profile: Profile, ref: str) -> str:
    """`ref` as an existing cluster's pods should name it: the mirror's copy when one serves its registry."""
    return mirror_ref(qualified(ref), profile.cluster.registry_mirrors) if rewrites_images(profile) else ref


def server_container_images(profile: Profile, server_config: str) -> dict[str, str]:
    """Container name -> image a Server's podSpec sets on an existing cluster with mirrors (Seldon merges
    containers by name); only containers whose registry a mirror serves. Agent and rclone only when this
    run installs Seldon (their version is then the profile's; an installed Seldon keeps its own)."""
    if not rewrites_images(profile):
        return {}
    version = profile.seldon.version
    wanted = {server_config: TRITON_IMAGE if server_config == "triton" else MLSERVER_IMAGE}
    if profile.seldon.install:
        wanted |= {"agent": f"{DOCKER_HUB}/{SELDON_COMPONENTS['agent']}:{version}",
                   "rclone": f"{DOCKER_HUB}/{SELDON_COMPONENTS['rclone']}:{version}"}
    return {name: rewritten(profile, ref) for name, ref in wanted.items() if rewritten(profile, ref) != qualified(ref)}


def setup_image_values(profile: Profile) -> dict[str, Any]:
    """seldon-core-v2-setup values naming the mirror as each component's `image.registry` (the chart
    composes `<registry>/<repository>:<tag>`: _components-deployments.tpl at v2.10.2)."""
    if not rewrites_images(profile):
        return {}
    mirrors = profile.cluster.registry_mirrors
    out: dict[str, Any] = {}

    def registry(registry: str) -> str | None:
        mirror = mirrors.get(registry)
        return mirror.split("://", 1)[-1].rstrip("/") if mirror else None

    hub = registry(DOCKER_HUB)
    if hub:
        for key in [*SELDON_COMPONENTS, *KAFKA_COMPONENTS]:
            target = out.setdefault("serverConfig", {}) if key in ("agent", "rclone") else out
            target[key] = {"image": {"registry": hub}}
        out.setdefault("serverConfig", {})["mlserver"] = {"image": {"registry": hub}}
    nvcr = registry("nvcr.io")
    if nvcr:
        out.setdefault("serverConfig", {})["triton"] = {"image": {"registry": nvcr}}
    return out
