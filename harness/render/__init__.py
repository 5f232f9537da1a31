"""Every manifest a run applies, rendered from the profile (pure: profile in, plain dicts out).

`render_all` is what `python -m harness render` writes; the single-object builders are what the run
lifecycle and the suites call at run time (with `run_id=` so the objects carry the run's labels).
"""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.layout import static as static_layout
from harness.render.gpu import (
    PROBE_CONFIGMAP,
    PROBE_IMAGE,
    device_plugin_values,
    probe_configmap,
    probe_pod,
    runtime_class,
)
from harness.render.kind import host_gpu_assignment, kind_config
from harness.render.labels import MANAGED_BY, MANAGED_BY_KEY, RUN_ID_KEY, labels_for_run
from harness.render.placement import installs_device_plugin
from harness.render.pods import INTRUDER_IMAGE, intruder_pod
from harness.render.seldon import (
    MESH_NODEPORT_SERVICE,
    mesh_nodeport_service,
    model,
    runtime_values,
    server,
    server_config,
    setup_values,
)
from harness.render.yamlio import dump_documents, write_rendered

# Namespace of the example probe and intruder pods in a plain render (at run time: one per test).
EXAMPLE_NAMESPACE = "harness-example"


def render_all(profile: Profile, *, run_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Relative file name -> documents, in a fixed order (files sorted, documents in profile order).

    Helm values files hold one values mapping each; everything else is Kubernetes objects (or the kind
    config). Files exist only for what this profile's run would apply.
    """
    # `gpu_workers: auto` without a host: the documented static layout (a run lays out from its host first).
    profile = static_layout(profile)
    ns = profile.seldon.namespace
    files: dict[str, list[dict[str, Any]]] = {}
    if profile.cluster.provider == "kind":
        files["kind/cluster.yaml"] = [kind_config(profile)]
        files["seldon/mesh-nodeport.yaml"] = [mesh_nodeport_service(profile, run_id=run_id)]
    if installs_device_plugin(profile):
        files["gpu/runtimeclass.yaml"] = [runtime_class()]
        files["gpu/device-plugin-values.yaml"] = [device_plugin_values(profile)]
    files["seldon/setup-values.yaml"] = [setup_values(profile)]
    files["seldon/runtime-values.yaml"] = [runtime_values(profile)]
    files["seldon/servers.yaml"] = [server(profile, s, ns, run_id=run_id) for s in profile.servers]
    files["seldon/models.yaml"] = [model(profile, m, ns, run_id=run_id) for m in profile.models]
    example_gpus = min((g.gpus for g in profile.cluster.nodes.gpu_workers), default=1)
    files["gpu/probe.yaml"] = [
        probe_configmap(EXAMPLE_NAMESPACE, run_id=run_id),
        probe_pod(profile, "nvml-probe", EXAMPLE_NAMESPACE, example_gpus, run_id=run_id),
    ]
    files["placement/intruder.yaml"] = [intruder_pod(profile, "intruder", EXAMPLE_NAMESPACE, run_id=run_id)]
    return {name: files[name] for name in sorted(files)}


HELM_VALUES_FILES = {
    "gpu/device-plugin-values.yaml": "nvidia-device-plugin",
    "seldon/setup-values.yaml": "seldon-core-v2-setup",
    "seldon/runtime-values.yaml": "seldon-core-v2-runtime",
}

__all__ = [
    "EXAMPLE_NAMESPACE",
    "HELM_VALUES_FILES",
    "INTRUDER_IMAGE",
    "MANAGED_BY",
    "MANAGED_BY_KEY",
    "MESH_NODEPORT_SERVICE",
    "PROBE_CONFIGMAP",
    "PROBE_IMAGE",
    "RUN_ID_KEY",
    "device_plugin_values",
    "dump_documents",
    "host_gpu_assignment",
    "intruder_pod",
    "kind_config",
    "labels_for_run",
    "mesh_nodeport_service",
    "model",
    "probe_configmap",
    "probe_pod",
    "render_all",
    "runtime_class",
    "runtime_values",
    "server",
    "server_config",
    "setup_values",
    "write_rendered",
]
