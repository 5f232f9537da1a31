"""The `kind` provider: a multi-node kind cluster with GPU passthrough the nvkind way (kind-gpu), or
with fake GPU capacity on node status (kind-cpu, `cluster.fake_gpus`).

Every external command goes through one `ToolRunner` (argument lists, timeouts, captured output),
so the exact sequence is visible in `runner.history` and in tests with recording fake tools.
"""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import Profile
from harness.errors import UsageError
from harness.k8s.gpu import GPU_PRESENT_LABEL
from harness.k8s.sharing import COUNT_LABEL
from harness.kube.client import Kube
from harness.kube.nodeguard import NodeGuard
from harness.kube.tools import HelmRunner, ToolError, ToolPaths, ToolRunner
from harness.providers import common, images, mesh
from harness.providers.base import ClusterFacts, ClusterHandle, MeshEndpoint, PreflightCheck, ProviderOptions
from harness.providers.sharing import host_mig_check

Obj = dict[str, Any]

# Oldest tool versions known to work. kind: the pinned node image (kindest/node v1.32.2, containerd 2.0)
# is kind v0.27.0's default; kind 0.26 cannot `kind load docker-image` into containerd-2 nodes ("failed
# to detect containerd snapshotter"). helm 3.12 is the oldest with every flag used here; kubectl within
# Seldon's 1.27-1.33 window. README.md ("kind prerequisites") lists the same floors (tested).
MIN_VERSIONS: dict[str, tuple[int, int, int]] = {"kind": (0, 27, 0), "helm": (3, 12, 0), "kubectl": (1, 27, 0)}
# Node image digest -> the kind release that ships it as its default (kind's release notes): an older
# kind must not drive a node image built for a newer one.
NODE_IMAGE_KIND_RELEASE: dict[str, tuple[int, int, int]] = {
    "sha256:c48c62eac5da28cdadcf560d1d8616cfa6783b58f0d94cf63ad1bf49600cb027": (0, 26, 0),  # v1.32.0
    "sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f": (0, 27, 0),  # v1.32.2
}
VERSION_ARGS: dict[str, list[str]] = {
    "kind": ["version"],
    "helm": ["version", "--short"],
    "kubectl": ["version", "--client", "--output", "json"],
}
INOTIFY_MIN = {"max_user_watches": 524288, "max_user_instances": 8192}
DEVICES_DIR = "/var/run/nvidia-container-devices"

# nvkind's in-node recipe, followed from NVIDIA/nvkind pkg/nvkind/node.go at commit 9f70016 (main,
# 2026-06-09); tests/fixtures/upstream/nvkind-node.json holds the same facts and a test compares them.
# - containerd is configured from its config FILE: with kind's version-2 root config.toml the
#   `--config-source=command` default writes a drop-in of a higher version and containerd may refuse
#   to start (NVIDIA/aicr #1237);
# - the NVIDIA runtime is NOT made containerd's default (nvkind dropped --set-as-default in 089defd):
#   GPU pods name the `nvidia` RuntimeClass (handler `nvidia`).
NVKIND_COMMIT = "9f70016"
CONFIGURE_CONTAINERD = ["nvidia-ctk", "runtime", "configure", "--runtime=containerd", "--config-source=file"]
RESTART_CONTAINERD = ["systemctl", "restart", "containerd"]
# Installed together at one version: unpinned installs inside kind nodes have broken nvkind's
# /proc/driver/nvidia step before (kubeflow/trainer #3067).
TOOLKIT_PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
                    "libnvidia-container1")


def install_toolkit_script(version: str) -> str:
    """Inside a GPU worker: the NVIDIA container toolkit from NVIDIA's apt repository, pinned."""
    pinned = " ".join(f"{pkg}={version}" for pkg in TOOLKIT_PACKAGES)
    return f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y gpg curl
curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \\
  | gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \\
  | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \\
  > /etc/apt/sources.list.d/nvidia-container-toolkit.list
apt-get update
apt-get install -y --allow-downgrades {pinned}
"""


# Stop the driver from re-creating /dev/nvidiaN nodes on demand (ModifyDeviceFiles: 0), so hiding the
# device nodes of GPUs this worker must not see sticks. Newer toolkits already mask it: then skip.
MASK_DRIVER_PARAMS = """set -eu
if grep -q '^ModifyDeviceFiles: 1$' /proc/driver/nvidia/params; then
  umount -R /proc/driver/nvidia || true
  cp /proc/driver/nvidia/params /root/gpu-params
  sed -i 's/^ModifyDeviceFiles: 1$/ModifyDeviceFiles: 0/' /root/gpu-params
  mount --bind /root/gpu-params /proc/driver/nvidia/params
fi
"""


# Per node, before a failed run's cluster is deleted: how containerd and the NVIDIA runtime were set up.
# `sh -c` with headers, so a missing file is a line in the evidence, not a failed collection.
NODE_EVIDENCE: dict[str, str] = {
    "containerd-config.toml": "cat /etc/containerd/config.toml",
    "containerd-drop-ins.txt": ("for f in /etc/containerd/conf.d/* /etc/containerd/config.d/*; do "
                                "[ -f \"$f\" ] && { echo \"### $f\"; cat \"$f\"; }; done; true"),
    "nvidia-container-runtime-config.toml": "cat /etc/nvidia-container-runtime/config.toml 2>&1 || true",
}
# The chart's pods carry app.kubernetes.io/name=nvidia-device-plugin (chart v0.17.1 _helpers.tpl).
DEVICE_PLUGIN_SELECTOR = "app.kubernetes.io/name=nvidia-device-plugin"


def hide_device_script(index: int) -> str:
    # Bounded: a device node can be bind-mounted a few times over; never loop forever.
    return (f"for _ in 1 2 3 4 5 6 7 8; do umount /dev/nvidia{index} 2>/dev/null || break; done; "
            f"rm -f /dev/nvidia{index}")


@dataclass(frozen=True)
class KindWorker:
    node: str  # kind node name == docker container name
    labels: dict[str, str]
    devices: tuple[str, ...]  # what the extraMounts request: indices, UUIDs or "all"
    gpu: bool
    gpus: int


def worker_nodes(cluster_name: str, config: Obj, profile: Profile) -> list[KindWorker]:
    """kind names workers `<cluster>-worker`, `<cluster>-worker2`, ... in config order."""
    pool = profile.gpu.pool_label
    out: list[KindWorker] = []
    workers = [n for n in config.get("nodes") or [] if n.get("role") == "worker"]
    for i, node in enumerate(workers):
        name = f"{cluster_name}-worker" + ("" if i == 0 else str(i + 1))
        labels = {str(k): str(v) for k, v in (node.get("labels") or {}).items()}
        devices = tuple(
            Path(m["containerPath"]).name for m in node.get("extraMounts") or []
            if m.get("hostPath") == "/dev/null" and str(Path(m.get("containerPath", "")).parent) == DEVICES_DIR
        )
        gpu = bool(devices) or labels.get(pool.key) == pool.value or labels.get(GPU_PRESENT_LABEL) == "true"
        count = labels.get(COUNT_LABEL)
        gpus = int(count) if count and count.isdigit() else max(1, len([d for d in devices if d != "all"]))
        out.append(KindWorker(name, labels, devices, gpu, gpus if gpu else 0))
    return out


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def node_image_kind_floor(image: str) -> tuple[int, int, int] | None:
    """The kind release whose default node image `image` is (by digest); None when not in the table."""
    _, _, digest = image.partition("@")
    return NODE_IMAGE_KIND_RELEASE.get(digest)


def needed_host_gpus(profile: Profile) -> int:
    total = 0
    explicit: set[str] = set()
    for group in profile.cluster.nodes.gpu_workers:
        if group.host_gpus:
            for entry in group.host_gpus:
                explicit.update(x for x in entry if x != "all")
                if "all" in entry:
                    total = max(total, 1)
        else:
            total += group.count * group.gpus
    return total + len(explicit)


def hidden_indices(devices: tuple[str, ...], inventory: list[str]) -> list[int]:
    """Host GPU indices a worker must not see: every one not named (by index or UUID) in its mounts."""
    if "all" in devices:
        return []
    keep: set[int] = set()
    for d in devices:
        if d.isdigit():
            keep.add(int(d))
        elif d in inventory:
            keep.add(inventory.index(d))
    return [i for i in range(len(inventory)) if i not in keep]


class KindProvider:
    name = "kind"

    def __init__(self, profile: Profile, options: ProviderOptions, runner: ToolRunner | None = None) -> None:
        self.profile = profile
        self.options = options
        self.runner = runner or ToolRunner(profile.timeouts.subprocess_s, options.tools or ToolPaths())
        self.cluster_name = f"{profile.cluster.name}-{options.run_id}"
        self.workdir = Path(options.workdir)
        self.kubeconfig = Path(options.kubeconfig) if options.kubeconfig else self.workdir / "kubeconfig"
        self.context = f"kind-{self.cluster_name}"
        self.created = False
        self.fake_gpus = profile.cluster.fake_gpus
        self._config: Obj | None = None
        self._docker: images.DockerFacts | None = None

    # --- helpers ------------------------------------------------------------------------
    @property
    def helm(self) -> HelmRunner:
        return HelmRunner(self.runner, self.kubeconfig, self.context)

    def config(self) -> Obj:
        if self._config is None:
            docs = common.rendered(self.profile).get("kind/cluster.yaml") or []
            if not docs:
                raise UsageError(f"{self.profile.source}: render produced no kind/cluster.yaml for this profile")
            self._config = docs[0]
        return self._config

    def workers(self) -> list[KindWorker]:
        return worker_nodes(self.cluster_name, self.config(), self.profile)

    # --- preflight ----------------------------------------------------------------------
    def preflight(self) -> list[PreflightCheck]:
        findings: list[PreflightCheck] = []
        present: dict[str, bool] = {}
        for tool in ("docker", "kind", "helm", "kubectl"):
            present[tool] = self.runner.which(tool) is not None
            if not present[tool]:
                findings.append(PreflightCheck(
                    f"tool.{tool}", False,
                    f"{tool} not found on PATH: install it (see README, 'Prerequisites per provider')"))
            elif tool in MIN_VERSIONS:
                findings.append(self._version_finding(tool))
        if present["docker"]:
            findings.extend(self._docker_findings())
        if not self.fake_gpus:
            findings.extend(self._gpu_findings())
        findings.extend(self._inotify_findings())
        return findings

    def _version_finding(self, tool: str) -> PreflightCheck:
        want = ".".join(map(str, MIN_VERSIONS[tool]))
        try:
            proc = self.runner.run(tool, VERSION_ARGS[tool], timeout=self.profile.timeouts.preflight_s)
        except ToolError as exc:
            return PreflightCheck(f"tool.{tool}", False, f"{tool} does not run: {exc}")
        text = proc.stdout
        if tool == "kubectl":
            with contextlib.suppress(ValueError, KeyError, TypeError):
                text = json.loads(text)["clientVersion"]["gitVersion"]
        found = parse_version(text)
        if found is None:
            return PreflightCheck(f"tool.{tool}", False, f"cannot read the {tool} version from {text.strip()[:80]!r}")
        shown = ".".join(map(str, found))
        if found < MIN_VERSIONS[tool]:
            return PreflightCheck(f"tool.{tool}", False, f"{tool} {shown} is too old: install {tool} >= {want}")
        if tool == "kind":
            image = self.profile.cluster.node_image or ""
            needs = node_image_kind_floor(image)
            if needs is not None and found < needs:
                return PreflightCheck("tool.kind", False, f"kind {shown} is older than the node image {image} needs: "
                                                   f"install kind >= {'.'.join(map(str, needs))}")
        return PreflightCheck(f"tool.{tool}", True, f"{tool} {shown} (>= {want})")

    def _docker_findings(self) -> list[PreflightCheck]:
        try:
            proc = self.runner.run("docker", ["info", "--format", "{{json .}}"],
                                   timeout=self.profile.timeouts.preflight_s)
            info = json.loads(proc.stdout or "{}")
        except (ToolError, ValueError) as exc:
            return [PreflightCheck("docker.daemon", False,
                            f"the Docker daemon is not reachable ({exc}): start Docker and make sure this user may "
                            f"use it (docker group or rootless Docker)")]
        out = [PreflightCheck("docker.daemon", True, f"Docker {info.get('ServerVersion', '?')} reachable")]
        self._docker = images.docker_facts(info)
        out.extend(images.image_findings(self.runner, self.profile, self._docker, self.profile.timeouts.preflight_s))
        if not self.fake_gpus:
            runtime = info.get("DefaultRuntime")
            if runtime != "nvidia":
                out.append(PreflightCheck(
                    "docker.default-runtime", False,
                    f"Docker's default runtime is {runtime!r}, not 'nvidia': run `sudo nvidia-ctk runtime configure "
                    f"--runtime=docker --set-as-default --cdi.enabled` and restart Docker"))
            else:
                out.append(PreflightCheck("docker.default-runtime", True, "Docker's default runtime is nvidia"))
        return out

    def _gpu_findings(self) -> list[PreflightCheck]:
        out: list[PreflightCheck] = []
        host = self.options.host
        uuids, reason = host.gpu_inventory()
        need = needed_host_gpus(self.profile)
        if uuids is None:
            out.append(PreflightCheck("host.gpus", False,
                               f"cannot read host GPUs through NVML: {reason}; kind-gpu needs an NVIDIA driver "
                               f"(use profiles/kind-cpu.yaml on machines without GPUs)"))
        elif len(uuids) < need:
            out.append(PreflightCheck("host.gpus", False,
                               f"the profile's GPU workers need {need} host GPU(s) but NVML sees {len(uuids)}: lower "
                               f"cluster.nodes.gpu_workers counts/gpus or run on a bigger machine"))
        else:
            out.append(PreflightCheck("host.gpus", True, f"NVML sees {len(uuids)} GPU(s); the profile needs {need}"))
        mig = host_mig_check(self.profile, *host.nvml()) if self.profile.gpu.sharing.mig is not None else None
        if mig is not None:
            out.append(mig)
        if self.runner.which("nvidia-ctk") is None:
            out.append(PreflightCheck("host.nvidia-ctk", False,
                               "nvidia-ctk not found on PATH: install the NVIDIA container toolkit on the host "
                               "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/)"))
        else:
            try:
                proc = self.runner.run("nvidia-ctk", ["--version"], timeout=self.profile.timeouts.preflight_s)
                version = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "nvidia-ctk present"
                out.append(PreflightCheck("host.nvidia-ctk", True, version))
            except ToolError as exc:
                out.append(PreflightCheck("host.nvidia-ctk", False, f"nvidia-ctk does not run: {exc}"))
        path = host.nvidia_runtime_config
        fix = ("run `sudo nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place` "
               "and restart Docker")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            out.append(PreflightCheck("host.nvidia-toolkit", False,
                               f"{path} not found: install the NVIDIA container toolkit on the host, then {fix}"))
            return out
        try:
            value = tomllib.loads(text).get("accept-nvidia-visible-devices-as-volume-mounts")
        except tomllib.TOMLDecodeError:
            value = None
        if value is not True:
            out.append(PreflightCheck("host.nvidia-toolkit", False,
                               f"{path}: accept-nvidia-visible-devices-as-volume-mounts is not true (kind GPU workers "
                               f"request GPUs through volume mounts): {fix}"))
        else:
            out.append(PreflightCheck("host.nvidia-toolkit", True, f"{path} accepts volume-mount device requests"))
        return out

    def _inotify_findings(self) -> list[PreflightCheck]:
        out = []
        for name, minimum in INOTIFY_MIN.items():
            path = self.options.host.inotify_dir / name
            try:
                value = int(path.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                out.append(PreflightCheck(f"host.inotify.{name}", False, f"cannot read {path}; multi-node kind needs "
                                   f"fs.inotify.{name} >= {minimum}"))
                continue
            if value < minimum:
                out.append(PreflightCheck(f"host.inotify.{name}", False,
                                   f"fs.inotify.{name} is {value}; multi-node kind needs >= {minimum}: run "
                                   f"`sudo sysctl fs.inotify.{name}={minimum}`"))
            else:
                out.append(PreflightCheck(f"host.inotify.{name}", True, f"fs.inotify.{name} = {value}"))
        return out

    # --- provision ----------------------------------------------------------------------
    def existing_clusters(self) -> list[str]:
        proc = self.runner.run("kind", ["get", "clusters"])
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def provision(self) -> ClusterHandle:
        t = self.profile.timeouts
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if self.cluster_name in self.existing_clusters():
            if not self.options.keep_cluster:
                raise UsageError(
                    f"kind cluster {self.cluster_name} already exists: pass --keep-cluster to reuse it, or delete it "
                    f"with `kind delete cluster --name {self.cluster_name}`")
            self.runner.run("kind", ["export", "kubeconfig", "--name", self.cluster_name,
                                     "--kubeconfig", str(self.kubeconfig)])
        else:
            config_path = self.workdir / "kind-cluster.yaml"
            config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
            # Marked before the call: a create that fails halfway still leaves containers to delete.
            self.created = True
            self.runner.run("kind", ["create", "cluster", "--name", self.cluster_name, "--config", str(config_path),
                                     "--kubeconfig", str(self.kubeconfig), "--wait", f"{int(t.cluster_create_s)}s"],
                            timeout=t.cluster_create_s + 60)
        if self.profile.cluster.registry_mirrors:
            self.configure_mirrors()
        for image in self.profile.cluster.local_images:
            self.runner.run("kind", ["load", "docker-image", image, "--name", self.cluster_name],
                            timeout=t.cluster_create_s)
        self.preload_images()
        return ClusterHandle(provider=self.name, kubeconfig=self.kubeconfig, context=self.context, simulated=False,
                             cluster_name=self.cluster_name, created=self.created)

    def docker(self) -> images.DockerFacts:
        """Docker's image store and platform (read by the preflight; read here when it did not run)."""
        if self._docker is None:
            proc = self.runner.run("docker", ["info", "--format", "{{json .}}"],
                                   timeout=self.profile.timeouts.preflight_s)
            try:
                self._docker = images.docker_facts(json.loads(proc.stdout or "{}"))
            except ValueError as exc:
                raise UsageError(f"`docker info` answered no JSON ({exc})") from None
        return self._docker

    def configure_mirrors(self) -> None:
        """containerd hosts files for `cluster.registry_mirrors` in every node (the kind config set
        config_path), so whatever a node still pulls goes through the mirror."""
        proc = self.runner.run("kind", ["get", "nodes", "--name", self.cluster_name])
        for argv, text in images.mirror_commands(self.profile, proc.stdout.split()):
            self.runner.run(argv[0], argv[1:], stdin=text)

    def preload_images(self) -> None:
        """Every image the run starts, pulled once on the host for the node platform and loaded from a
        one-platform archive (harness/providers/images.py says why), so no pod waits on a pull and the
        nodes make no Docker Hub pulls. The probe image goes in under the local tag its pod names."""
        t = self.profile.timeouts
        facts = self.docker()
        folder = self.workdir / "images"
        folder.mkdir(parents=True, exist_ok=True)
        gpu_nodes = [w.node for w in self.workers() if w.gpu]
        plans = images.pull_plans(self.profile)
        groups = [("all", [p for p in plans if p.image.where == "all" or not gpu_nodes], None),
                  ("gpu", [p for p in plans if p.image.where == "gpu" and gpu_nodes], gpu_nodes)]
        for name, group, nodes in groups:
            if not group:
                continue
            archive = folder / f"{name}-workers.tar"
            for argv in images.commands(group, facts, archive, self.cluster_name, nodes):
                # Saving and importing several GB (Triton, MLServer) take the pull budget, not the 2-minute default.
                timeout = t.subprocess_s if argv[1] == "tag" else t.image_pull_s
                self.runner.run(argv[0], argv[1:], timeout=timeout)
            archive.unlink(missing_ok=True)  # tens of GB on the runner's disk once loaded

    # --- nodes --------------------------------------------------------------------------
    def prepare_nodes(self, kube: Kube, guard: NodeGuard) -> list[str]:
        problems: list[str] = []
        taint = self.profile.gpu.taint
        for w in self.workers():
            if not w.gpu:
                continue
            node = kube.get("v1", "Node", w.node)
            if node is None:
                problems.append(f"GPU worker {w.node} is not a node of the cluster")
                continue
            taints = (node.get("spec") or {}).get("taints") or []
            if not any(x.get("key") == taint.key and x.get("effect") == taint.effect
                       and x.get("value", "") == taint.value for x in taints):
                problems.append(f"GPU worker {w.node} lacks the taint {taint} (the kind config's kubeadm patch "
                                f"did not apply)")
            if self.fake_gpus:
                # What the device plugin would advertise for these GPUs under gpu.sharing (replicas, MIG).
                for resource, units in self.profile.gpu.shared().node_capacity(w.gpus).items():
                    guard.set_extended_capacity(w.node, resource, units)
        return problems

    # --- GPU stack ----------------------------------------------------------------------
    def install_gpu_stack(self, kube: Kube) -> None:
        if self.fake_gpus:
            return  # no passthrough, no device plugin: prepare_nodes advertised the capacity
        t = self.profile.timeouts
        gpu_workers = [w for w in self.workers() if w.gpu]
        inventory, _ = self.options.host.gpu_inventory()
        for w in gpu_workers:
            toolkit = install_toolkit_script(self.profile.gpu.container_toolkit_version)
            self._docker_exec(w.node, ["bash", "-c", toolkit], t.gpu_stack_s)
            self._docker_exec(w.node, CONFIGURE_CONTAINERD, t.subprocess_s)
            if self.profile.gpu.device_plugin.device_list_strategy == "volume-mounts":
                # The device plugin then hands GPUs to pods as volume mounts; the runtime inside the node must
                # accept those, exactly like the host runtime does for the node itself.
                self._docker_exec(w.node, ["nvidia-ctk", "config", "--set",
                                           "accept-nvidia-visible-devices-as-volume-mounts=true", "--in-place"],
                                  t.subprocess_s)
            self._docker_exec(w.node, RESTART_CONTAINERD, t.subprocess_s)
            self._docker_exec(w.node, ["bash", "-c", MASK_DRIVER_PARAMS], t.subprocess_s)
            for index in hidden_indices(w.devices, inventory or []):
                self._docker_exec(w.node, ["bash", "-c", hide_device_script(index)], t.subprocess_s)
        for doc in common.rendered(self.profile).get("gpu/runtimeclass.yaml") or []:
            kube.apply(doc)
        if self.profile.gpu.device_plugin.install:
            common.install_device_plugin(self.helm, self.profile, self.workdir)
        common.wait_gpu_allocatable(kube, self.profile, {w.node: w.gpus for w in gpu_workers})

    def _docker_exec(self, node: str, argv: list[str], timeout: float) -> None:
        self.runner.run("docker", ["exec", node, *argv], timeout=timeout)

    # --- Seldon -------------------------------------------------------------------------
    def install_seldon(self, kube: Kube) -> None:
        common.install_seldon(self.helm, self.profile, self.workdir)
        # kind has no load balancer: the mesh is published through a NodePort and extraPortMappings.
        for doc in common.rendered(self.profile).get("seldon/mesh-nodeport.yaml") or []:
            kube.apply(doc)

    def mesh_endpoint(self, kube: Kube) -> MeshEndpoint:
        if self.profile.seldon.mesh_endpoint:
            return mesh.from_profile(self.profile.seldon.mesh_endpoint)
        port = self.profile.cluster.mesh_host_port
        return MeshEndpoint(http_url=f"http://127.0.0.1:{port}", grpc_target=f"127.0.0.1:{port}", route="nodeport")

    def cluster_facts(self, kube: Kube) -> ClusterFacts:
        return common.cluster_facts(kube, self.profile, simulated=False)

    # --- evidence -----------------------------------------------------------------------
    @property
    def evidence_dir(self) -> Path:
        """In the report directory (the run's workdir is `<report dir>/work`), so the workflow's report
        upload carries it."""
        return self.workdir.parent / "evidence" / self.cluster_name

    def collect_evidence(self) -> list[str]:
        """What a failed first run needs, taken BEFORE the cluster is deleted: `kind export logs`, every
        node's containerd config and drop-ins and NVIDIA runtime config, the device plugin's logs.
        Never raises: returns what could not be collected (evidence must not hide the failure)."""
        if not self.created and not self.options.keep_cluster:
            return []
        t = self.profile.timeouts
        dest = self.evidence_dir
        dest.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []

        def run(tool: str, args: list[str], timeout: float) -> str | None:
            try:
                return self.runner.run(tool, args, timeout=timeout).stdout
            except ToolError as exc:
                problems.append(f"evidence: {exc}")
                return None

        run("kind", ["export", "logs", str(dest / "kind-logs"), "--name", self.cluster_name], t.delete_s)
        nodes = (run("kind", ["get", "nodes", "--name", self.cluster_name], t.subprocess_s) or "").split()
        for node in nodes:
            folder = dest / "nodes" / node
            folder.mkdir(parents=True, exist_ok=True)
            for name, script in NODE_EVIDENCE.items():
                text = run("docker", ["exec", node, "sh", "-c", script], t.subprocess_s)
                if text is not None:
                    (folder / name).write_text(text, encoding="utf-8")
        if not self.fake_gpus:
            ns = self.profile.gpu.device_plugin.namespace
            text = run("kubectl", ["--kubeconfig", str(self.kubeconfig), "--context", self.context, "logs",
                                   "--namespace", ns, "--selector", DEVICE_PLUGIN_SELECTOR, "--all-containers",
                                   "--prefix", "--tail=-1", "--ignore-errors"], t.subprocess_s)
            if text is not None:
                (dest / "device-plugin.log").write_text(text, encoding="utf-8")
        return problems

    # --- teardown -----------------------------------------------------------------------
    def teardown(self) -> None:
        if not self.created or self.options.keep_cluster:
            return
        self.runner.run("kind", ["delete", "cluster", "--name", self.cluster_name,
                                 "--kubeconfig", str(self.kubeconfig)], timeout=self.profile.timeouts.delete_s)
        self.created = False
