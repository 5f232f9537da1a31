"""The GPU stack (NVIDIA device plugin values, RuntimeClass) and the one-shot NVML probe pod.

Device plugin value names were checked against NVIDIA/k8s-device-plugin tag v0.17.1
(deployments/helm/nvidia-device-plugin/values.yaml): `runtimeClassName`, `deviceListStrategy`,
`tolerations`, `affinity`.
"""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.errors import UsageError
from harness.gpu import PROBE_PATH, PROBE_PYTHON_FLAGS, probe_files
from harness.k8s.gpu import DEVICE_PLUGIN_DEFAULT_TOLERATIONS as _CHART_DEFAULT_TOLERATIONS
from harness.render.labels import object_meta
from harness.render.placement import (
    NVIDIA_RUNTIME_CLASS,
    gpu_present_affinity,
    gpu_toleration,
    pool_affinity,
    runtime_class_name,
    uses_runtime_class,
)
from harness.render.pods import hostname_selector, restricted_container_security, restricted_pod_security
from harness.render.sharing import device_plugin_config_values

# The probe needs nothing but Python 3.8+'s standard library (its NVML bindings ship in its ConfigMap),
# so it runs in a small official Python image, pinned by digest. Debian-based on purpose: the driver's
# libnvidia-ml.so.1 that the NVIDIA runtime injects is linked against glibc, which Alpine lacks.
# Digest of the multi-arch index of docker.io/library/python:3.12-slim, taken from public Dockerfiles
# that pin it (one verified against the canonical index); not pulled from here (no registry access).
# Re-resolve with `docker buildx imagetools inspect python:3.12-slim` when bumping.
PROBE_IMAGE = (
    "docker.io/library/python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea"
)
# On kind the pinned image is pulled once on the host, tagged with this local name and pre-loaded into
# every node (`kind load docker-image` cannot load an image by digest: kubernetes-sigs/kind#2394); the
# pod names the local tag with imagePullPolicy Never, so its deadline never includes a pull.
KIND_PROBE_IMAGE = "harness.local/nvml-probe-python:3.12-slim-78387bc3881b"
PROBE_CONFIGMAP = "nvml-probe"
PROBE_MOUNT = "/probe"
PROBE_GRACE_S = 2  # seconds a deleted probe gets before SIGKILL (see probe_pod)
PROBE_SCRIPT = PROBE_PATH



def runtime_class() -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": object_meta(NVIDIA_RUNTIME_CLASS, None, None, "gpu-stack"),
        "handler": "nvidia",
    }


def device_plugin_values(profile: Profile) -> dict[str, Any]:
    """Helm values for nvidia-device-plugin: the upstream chart tolerates only `nvidia.com/gpu`, so on a
    node tainted with the profile's taint it would never run and no GPU would be advertised."""
    tolerations = [dict(t) for t in _CHART_DEFAULT_TOLERATIONS]
    own = gpu_toleration(profile)
    if own not in tolerations:
        tolerations.append(own)
    values: dict[str, Any] = {
        "deviceListStrategy": profile.gpu.device_plugin.device_list_strategy,
        "tolerations": tolerations,
        # GPU workers are labelled explicitly (kind config / node preparation); no NFD needed.
        "affinity": gpu_present_affinity(),
    }
    if uses_runtime_class(profile):
        values["runtimeClassName"] = runtime_class_name(profile)
    # Time-slicing and MIG strategies travel in the plugin's config file (harness/render/sharing.py).
    values.update(device_plugin_config_values(profile))
    return values


def probe_configmap_data() -> dict[str, str]:
    """probe.py, the nvidia-ml-py bindings it loads (checked against the pinned release's hash) and
    their version; UsageError naming what to reinstall when a file is unreadable or differs."""
    try:
        return probe_files()
    except OSError as exc:
        raise UsageError(
            f"{exc.filename}: cannot read a file of the NVML probe ({exc.__class__.__name__}); "
            "expected it in the installed harness package (harness/gpu)"
        ) from None


def probe_script_text() -> str:
    return probe_configmap_data()["probe.py"]


def probe_configmap(namespace: str, *, run_id: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(PROBE_CONFIGMAP, namespace, run_id, "nvml-probe"),
        "data": probe_configmap_data(),
    }


def preloads_probe_image(profile: Profile) -> bool:
    """kind loads the probe image into its nodes before any probe runs; other clusters pull it."""
    return profile.cluster.provider == "kind" and not getattr(profile.gpu, "probe_image", None)


def probe_image(profile: Profile) -> str:
    override = getattr(profile.gpu, "probe_image", None)
    if isinstance(override, str) and override:
        return override
    if preloads_probe_image(profile):
        return KIND_PROBE_IMAGE
    from harness.render.images import rewritten  # existing clusters with a mirror (images imports this module)

    return rewritten(profile, PROBE_IMAGE)


def probe_resource(profile: Profile) -> str:
    """The GPU resource probe pods request (harness.k8s.sharing: the sharing's default resource)."""
    return profile.gpu.shared().resource_for()


def probe_pod(
    profile: Profile,
    name: str,
    namespace: str,
    gpus: int,
    node_name: str | None = None,
    image: str | None = None,
    *,
    run_id: str | None = None,
) -> dict[str, Any]:
    """One-shot pod that prints what NVML sees. It tolerates the taint and targets the pool like a GPU
    Server, also with `gpus == 0`, so it can show that a pod without GPUs on a GPU node sees none."""
    if gpus < 0:
        raise UsageError(f"probe pod {name}: gpus: expected 0 or more, got {gpus}")
    container: dict[str, Any] = {
        "name": "probe",
        "image": image or probe_image(profile),
        # Only the standard library and the ConfigMap's files: nothing of the image's Python environment.
        "command": ["python3", *PROBE_PYTHON_FLAGS, f"{PROBE_MOUNT}/probe.py"],
        "env": [
            # Nothing may be written: the root filesystem is read-only.
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "probe", "mountPath": PROBE_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if image is None and preloads_probe_image(profile):
        # Pre-loaded: a missing image is an immediate ErrImageNeverPull, never a pull inside the deadline.
        container["imagePullPolicy"] = "Never"
    if gpus > 0:
        # Extended resources: requests must equal limits.
        # The resource GPU Servers use: whole GPUs, shared replicas or (mixed MIG) the first MIG profile.
        resource = probe_resource(profile)
        container["resources"] = {
            "requests": {resource: str(gpus)},
            "limits": {resource: str(gpus)},
        }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Kubernetes counts this from the pod's start, pull included: add the pull budget unless the
        # image is pre-loaded (kind), so a slow pull is reported as one, not as a probe deadline.
        "activeDeadlineSeconds": int(profile.timeouts.probe_s + (
            0 if image is None and preloads_probe_image(profile) else profile.timeouts.image_pull_s)),
        # python3 is PID 1 in the probe container, and PID 1 gets no default SIGTERM action: a probe
        # deleted while it holds its GPU would keep it for the whole grace (30 s by default). It has
        # nothing to flush, so a short grace frees the GPU (and the test's namespace) sooner.
        "terminationGracePeriodSeconds": PROBE_GRACE_S,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(),
        "tolerations": [gpu_toleration(profile)],
        "affinity": pool_affinity(profile),
    }
    if node_name is not None:
        spec["nodeSelector"] = hostname_selector(node_name)
    if uses_runtime_class(profile):
        spec["runtimeClassName"] = runtime_class_name(profile)
    spec["containers"] = [container]
    spec["volumes"] = [
        {"name": "probe", "configMap": {"name": PROBE_CONFIGMAP, "defaultMode": 0o444}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": object_meta(name, namespace, run_id, "nvml-probe"),
        "spec": spec,
    }

