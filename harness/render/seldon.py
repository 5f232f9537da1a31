"""Seldon Core 2 objects (Server, ServerConfig variant, Model) and the Helm values of its charts.

Chart value names were checked against SeldonIO/seldon-core tag v2.10.2
(k8s/helm-charts/seldon-core-v2-setup and seldon-core-v2-runtime, values.yaml and templates).
"""

from __future__ import annotations

import copy
from typing import Any

from harness.config import Model, Profile, Server
from harness.errors import UsageError
from harness.k8s.seldon_api import SELDON_API
from harness.render.labels import object_meta
from harness.render.placement import (
    gpu_toleration,
    off_pool_affinity,
    pool_affinity,
    pool_selector,
    runtime_class_name,
    uses_runtime_class,
)

# Seldon merges a Server's containers into the ServerConfig's by name; these are the names it uses.
AGENT_CONTAINER = "agent"
# The Triton image of Seldon 2.10.2's default `triton` ServerConfig (setup chart values.yaml
# serverConfig.triton.image and operator/config/serverconfigs/kustomization.yaml at tag v2.10.2),
# pinned on the Server so the GPU lane runs the image whose CUDA driver floor docs/real-clusters
# states (CUDA 12.1: driver >= 530, or a data-center forward-compatible branch).
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:23.03-py3"
RCLONE_CONTAINER = "rclone"
ENVOY_NAME_LABEL = ("app.kubernetes.io/name", "seldon-envoy")
MESH_NODEPORT_SERVICE = "seldon-mesh-nodeport"

# Runtime chart components that take a `podSpec` override (seldon-runtime.yaml template, v2.10.2).
_RUNTIME_COMPONENTS = ("hodometer", "scheduler", "envoy", "dataflow", "modelgateway", "pipelinegateway")
_KAFKA_COMPONENTS = ("dataflow", "modelgateway", "pipelinegateway")


def server_pod_spec(profile: Profile, server: Server) -> dict[str, Any]:
    """The `podSpec` fragment Seldon merges into the ServerConfig's pod template."""
    container = server.server_config  # "mlserver" or "triton": the container name Seldon merges on
    requests: dict[str, Any] = {"cpu": server.cpu, "memory": server.memory}
    # The default ServerConfigs set limits.memory (1Gi) and Seldon merges resource maps key by key, so
    # a larger memory request without a matching limit would make the StatefulSet invalid.
    limits: dict[str, Any] = {"memory": server.memory}
    spec: dict[str, Any] = {}
    if server.on_gpu:
        # Extended resources must have requests == limits, or the StatefulSet is rejected.
        # Whole GPUs, shared replicas or a MIG profile's resource (harness/k8s/sharing.py).
        resource = profile.gpu.shared().resource_for(server.mig_profile)
        requests[resource] = str(server.gpus)
        limits[resource] = str(server.gpus)
        spec["tolerations"] = [gpu_toleration(profile)]
        if server.placement == "nodeSelector":
            spec["nodeSelector"] = pool_selector(profile)
        else:
            spec["affinity"] = pool_affinity(profile)
        if uses_runtime_class(profile):
            spec["runtimeClassName"] = runtime_class_name(profile)
    else:
        spec["affinity"] = off_pool_affinity(profile)
    spec["containers"] = [{"name": container, "resources": {"requests": requests, "limits": limits}}]
    if container == "triton":
        spec["containers"][0]["image"] = TRITON_IMAGE
    from harness.render.images import server_container_images  # (images imports this module)

    for name, image in server_container_images(profile, container).items():  # existing clusters with mirrors
        named = [c for c in spec["containers"] if c["name"] == name]
        if named:
            named[0]["image"] = image
        else:
            spec["containers"].append({"name": name, "image": image})
    if server.pod_spec:
        spec = overlay_pod_spec(spec, server.pod_spec)
    return spec


def overlay_pod_spec(spec: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Lay the profile's raw `servers[].pod_spec` over the rendered fragment.

    Top-level fields replace (so `tolerations: []` really removes the toleration); containers merge by
    name, their resource maps key by key, which is how Seldon itself merges a Server's podSpec.
    """
    out = copy.deepcopy(spec)
    for key, value in overlay.items():
        if key != "containers":
            out[key] = copy.deepcopy(value)
            continue
        by_name = {c.get("name"): c for c in out.get("containers") or []}
        for extra in value or []:
            current = by_name.get(extra.get("name"))
            if current is None:
                out.setdefault("containers", []).append(copy.deepcopy(extra))
                continue
            for field, field_value in extra.items():
                if field == "resources" and isinstance(field_value, dict):
                    resources = current.setdefault("resources", {})
                    for section, amounts in field_value.items():
                        resources[section] = {**(resources.get(section) or {}), **(amounts or {})}
                else:
                    current[field] = copy.deepcopy(field_value)
    return out


def server(profile: Profile, server: Server, namespace: str, *, run_id: str | None = None) -> dict[str, Any]:
    """A Seldon `Server` with a pinned replica count and the placement its GPU count calls for."""
    spec: dict[str, Any] = {
        "serverConfig": server.server_config,
        # replicas == minReplicas == maxReplicas: the autoscaler must not change the count under test.
        "replicas": server.replicas,
        "minReplicas": server.replicas,
        "maxReplicas": server.replicas,
    }
    extra = server.extra(profile.gpu.capability)
    if extra:
        spec["extraCapabilities"] = extra
    spec["podSpec"] = server_pod_spec(profile, server)
    return {
        "apiVersion": SELDON_API,
        "kind": "Server",
        "metadata": object_meta(server.name, namespace, run_id, "inference-server"),
        "spec": spec,
    }


def server_config(
    profile: Profile,
    server: Server,
    namespace: str,
    *,
    base: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any] | None:
    """A GPU ServerConfig variant for `server`, or None (CPU servers, or no base template given).

    A ServerConfig replaces the default pod template, it is not merged with it, so the variant must
    be COMPLETE. Its base is the ServerConfig of the same type read from the cluster (the installed
    chart's own template: version-matched, and no Seldon template text lives in this repository).
    The GPU placement and resources are applied to a deep copy; the Server can then reference it by
    name with `serverConfig: <server>-gpu`.
    """
    if not server.on_gpu or base is None:
        return None
    pod = copy.deepcopy((base.get("spec") or {}).get("podSpec"))
    names = [c.get("name") for c in (pod or {}).get("containers") or [] if isinstance(c, dict)]
    missing = [n for n in (RCLONE_CONTAINER, AGENT_CONTAINER, server.server_config) if n not in names]
    if not isinstance(pod, dict) or missing:
        base_name = (base.get("metadata") or {}).get("name", "<unnamed>")
        raise UsageError(
            f"ServerConfig {base_name}: spec.podSpec.containers: expected a complete pod template with "
            f"containers {RCLONE_CONTAINER}, {AGENT_CONTAINER} and {server.server_config}; missing {', '.join(missing)}"
        )
    fragment = server_pod_spec(profile, server)
    pod["tolerations"] = [*pod.get("tolerations", []), *fragment["tolerations"]]
    for key in ("nodeSelector", "affinity", "runtimeClassName"):
        if key in fragment:
            pod[key] = fragment[key]
    wanted = fragment["containers"][0]["resources"]
    for container in pod["containers"]:
        if container.get("name") == server.server_config:
            resources = container.setdefault("resources", {})
            for section in ("requests", "limits"):
                resources[section] = {**(resources.get(section) or {}), **wanted[section]}
    spec: dict[str, Any] = {"podSpec": pod}
    claims = (base.get("spec") or {}).get("volumeClaimTemplates")
    if claims:
        spec["volumeClaimTemplates"] = copy.deepcopy(claims)
    return {
        "apiVersion": SELDON_API,
        "kind": "ServerConfig",
        "metadata": object_meta(f"{server.name}-gpu", namespace, run_id, "server-config"),
        "spec": spec,
    }


def model(profile: Profile, model: Model, namespace: str, *, run_id: str | None = None) -> dict[str, Any]:
    """A Seldon `Model`: by requirement (matched against capabilities) or pinned with `server`."""
    spec: dict[str, Any] = {"storageUri": model.storage_uri}
    if model.requirements:
        spec["requirements"] = list(model.requirements)
    if model.server is not None:
        spec["server"] = model.server
    if model.memory is not None:
        spec["memory"] = model.memory
    spec["replicas"] = model.replicas
    return {
        "apiVersion": SELDON_API,
        "kind": "Model",
        "metadata": object_meta(model.name, namespace, run_id, "model"),
        "spec": spec,
    }


def setup_values(profile: Profile) -> dict[str, Any]:
    """Values for seldon-core-v2-setup.

    The setup chart (v2.10.2) has no nodeSelector/affinity/tolerations values for the controller
    manager, so none are set: the controller stays off the pool because it has no toleration for
    the GPU taint. Everything else keeps the chart's defaults unless the profile overrides it.
    """
    from harness.render.images import setup_image_values  # mirrors on existing clusters (images imports us)

    return deep_merge(setup_image_values(profile), profile.seldon.setup_values)


def runtime_values(profile: Profile) -> dict[str, Any]:
    """Values for seldon-core-v2-runtime: components off the GPU pool, Kafka parts off unless asked for.

    Each component's `podSpec` is merged by the controller into the SeldonConfig's pod template the
    same way as a Server's (affinity replaced), so a required `NotIn` on the pool label keeps them off
    GPU nodes even on clusters that add GPU tolerations automatically.
    """
    values: dict[str, Any] = {}
    for component in _RUNTIME_COMPONENTS:
        entry: dict[str, Any] = {}
        if component in _KAFKA_COMPONENTS:
            # Kafka is only for pipelines; without it dataflow crash-loops.
            entry["disable"] = not profile.seldon.kafka
        if component == "hodometer":
            entry["disable"] = True  # usage telemetry: nothing a test needs, and no calls home
        if component == "envoy" and profile.cluster.provider == "kind":
            # No load balancer on kind. The fixed port lives on our own Service (seldon/mesh-nodeport.yaml):
            # the controller owns `seldon-mesh` and its spec has no nodePort field.
            entry["serviceType"] = "NodePort"
        entry["podSpec"] = {"affinity": off_pool_affinity(profile)}
        values[component] = entry
    return deep_merge(values, profile.seldon.runtime_values)


def mesh_nodeport_service(profile: Profile, *, run_id: str | None = None) -> dict[str, Any]:
    """A NodePort Service on the envoy pods with the profile's fixed node port (kind maps it to the host)."""
    key, value = ENVOY_NAME_LABEL
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(MESH_NODEPORT_SERVICE, profile.seldon.namespace, run_id, "mesh"),
        "spec": {
            "type": "NodePort",
            "selector": {key: value},
            "ports": [
                {
                    "name": "data",
                    "port": 80,
                    "protocol": "TCP",
                    # The envoy container's named port, the same target the controller's seldon-mesh uses.
                    "targetPort": "http",
                    "nodePort": profile.cluster.mesh_node_port,
                }
            ],
        },
    }


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's rule: mappings merge key by key, anything else in `override` replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
