"""Helpers the suites share: placement tables on failure, the NVML probe pod's run, cluster state.

The pod and condition predicates they wait on are Kubernetes rules and live in `harness.k8s.conditions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from harness.checks.placement import Snapshot, Violation, format_table, placement_table
from harness.config import Profile
from harness.k8s.conditions import finished
from harness.k8s.gpu import free_units
from harness.k8s.seldon_api import SELDON_API
from harness.kube.stuck import StuckPods

if TYPE_CHECKING:
    from harness.gpu.result import ProbeResult
    from harness.kube import Kube
    from harness.testkit.context import Scope

Obj = dict[str, Any]


def fail_on_findings(findings: list[Violation], snapshot: Snapshot, profile: Profile, what: str) -> None:
    """Fail the test listing every finding, followed by the placement table (pod → node → why)."""
    if not findings:
        return
    lines = [f"{what}: {len(findings)} problem(s)"] + [f"  - {f}" for f in findings]
    lines += ["", "placement table:", format_table(placement_table(snapshot, profile, findings))]
    pytest.fail("\n".join(lines), pytrace=False)


def failed_scheduling_messages(kube: Kube, namespace: str, pod: str) -> list[str]:
    return [
        str(e.get("message") or "") for e in kube.events(namespace=namespace, involved_name=pod, involved_kind="Pod")
        if e.get("reason") == "FailedScheduling"
    ]


def free_gpus(kube: Kube, node: Obj, resource: str) -> int:
    """Allocatable units of exactly `resource` on `node` (GPUs, replicas or one MIG profile's devices:
    `harness.render.gpu.probe_resource` names the one probes request) minus what its live pods request."""
    return free_units(node, kube.list("v1", "Pod", field_selector=f"spec.nodeName={node['metadata']['name']}"),
                      resource)


def start_probe(scope: Scope, name: str, node: str, gpus: int, hold_s: float = 0,
                env: dict[str, str] | None = None) -> None:
    """Create the NVML probe ConfigMap (once per namespace) and a one-shot probe pod on `node`."""
    from harness import render

    if not scope.probe_configmap_ready:
        scope.apply(render.probe_configmap(scope.namespace))
        scope.probe_configmap_ready = True
    pod = render.probe_pod(scope.profile, name, scope.namespace, gpus, node_name=node)
    if hold_s:
        # Keep the GPUs allocated for a while after printing, so that pods started together overlap.
        pod["spec"]["containers"][0]["command"] = [*pod["spec"]["containers"][0]["command"], "--hold-seconds",
                                                   f"{hold_s:g}"]
    if env:
        container = pod["spec"]["containers"][0]
        container["env"] = [*container.get("env", []), *({"name": k, "value": v} for k, v in env.items())]
    scope.apply(pod)


def finish_probe(scope: Scope, name: str) -> tuple[Obj, ProbeResult]:
    """Wait for the probe pod to finish and parse its log; fails with the pod's state and log otherwise."""
    from harness.checks.pulls import images_pending, past_pull
    from harness.gpu.result import parse_probe_output
    from harness.progress import progress

    timeouts = scope.profile.timeouts
    stuck = StuckPods(scope.kube, timeouts.pod_schedule_s, timeouts.image_pull_s)
    # The image first, on its own budget: the probe's budget starts once the image is on the node.
    current = scope.kube.get("v1", "Pod", name, scope.namespace)
    images = ", ".join(images_pending(current) if current else []) or "of the probe"
    with progress(f"pulling image {images} for probe pod {name}"):
        scope.kube.wait_for("v1", "Pod", name, scope.namespace, past_pull, timeout=timeouts.image_pull_s,
                            what=f"NVML probe pod {name}: pulling image {images}", give_up=stuck.for_pod())
    pod = scope.kube.wait_for("v1", "Pod", name, scope.namespace, finished, timeout=timeouts.probe_s,
                              what=f"NVML probe pod {name} to finish", give_up=stuck.for_pod())
    assert pod is not None  # `finished` holds only for a pod that exists
    log = scope.kube.logs(scope.namespace, name)
    if (pod.get("status") or {}).get("phase") != "Succeeded":
        pytest.fail(f"probe pod {name} on {pod['spec'].get('nodeName')} ended "
                    f"{pod['status'].get('phase')}; log:\n{log[-2000:]}", pytrace=False)
    return pod, parse_probe_output(log, f"pod {scope.namespace}/{name}")


def capture_cluster_state(kube: Kube, seldon_namespace: str) -> dict[str, Any]:
    """Everything a run may touch, for a before/after comparison (`harness.checks.leftovers`)."""
    from harness.checks import leftovers

    return leftovers.capture(
        nodes=kube.list("v1", "Node"), namespaces=kube.list("v1", "Namespace"), pods=kube.list("v1", "Pod"),
        servers=kube.list(SELDON_API, "Server", seldon_namespace),
        models=kube.list(SELDON_API, "Model", seldon_namespace),
    )
