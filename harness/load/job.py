"""In-cluster load generators: the ConfigMap (script + plan) and the indexed Job that runs them.

The Job never tolerates the GPU taint and requires `pool NotIn [value]`, so generators stay off the
GPU pool even where an admission plugin adds GPU tolerations; CPU and memory requests equal limits
(Guaranteed QoS: a generator is not throttled below what it asked for). `backoffLimit: 0`: a failed
generator is not rerun, since a rerun pod would miss the shared start and measure another schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import Profile
from harness.errors import UsageError
from harness.load.merge import generator_plan, plan_json
from harness.load.spec import LoadSpec
from harness.render import EXAMPLE_NAMESPACE, render_all
from harness.render.gpu import probe_image
from harness.render.labels import object_meta
from harness.render.placement import off_pool_affinity
from harness.render.pods import restricted_container_security, restricted_pod_security

GENERATOR_SCRIPT = Path(__file__).resolve().parent / "generator.py"
GENERATOR_MOUNT = "/generator"
GENERATOR_COMPONENT = "load-generator"
# The same isolation as the NVML probe: only the standard library and the ConfigMap's files.
GENERATOR_PYTHON_FLAGS = ("-I", "-S")


def generator_script_text() -> str:
    try:
        return GENERATOR_SCRIPT.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{GENERATOR_SCRIPT}: cannot read the load generator ({exc.__class__.__name__}); "
                         "expected it in the installed harness package (harness/load)") from None


def generator_configmap(name: str, namespace: str, plan_json: str, *, run_id: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(name, namespace, run_id, GENERATOR_COMPONENT),
        "data": {"generator.py": generator_script_text(), "plan.json": plan_json},
    }


def generator_image(profile: Profile) -> str:
    return profile.load.generators.image or probe_image(profile)


def generator_job(profile: Profile, name: str, namespace: str, configmap: str, target: str, deadline_s: float,
                  *, pods: int | None = None, image: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """N pods of one indexed Job; pod k reads its index from JOB_COMPLETION_INDEX (set by the Job
    controller) and `target` is the mesh's in-cluster address (its ClusterIP Service name)."""
    gens = profile.load.generators
    count = pods if pods is not None else gens.pods
    if count < 1:
        raise UsageError(f"load.generators.pods: expected 1 or more, got {count}")
    resources = {"cpu": gens.cpu, "memory": gens.memory}
    meta = object_meta(name, namespace, run_id, GENERATOR_COMPONENT)
    container: dict[str, Any] = {
        "name": "generator",
        "image": image or generator_image(profile),
        "command": ["python3", *GENERATOR_PYTHON_FLAGS, f"{GENERATOR_MOUNT}/generator.py",
                    "--plan", f"{GENERATOR_MOUNT}/plan.json", "--target", target],
        "env": [
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "generator", "mountPath": GENERATOR_MOUNT, "readOnly": True}],
    }
    if image is None and not gens.image and profile.cluster.provider == "kind" and not profile.gpu.probe_image:
        container["imagePullPolicy"] = "Never"  # pre-loaded into every kind node with the probe image
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(deadline_s + 0.999)),
            "template": {
                "metadata": {"labels": dict(meta["labels"])},  # type: ignore[call-overload]
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "affinity": off_pool_affinity(profile),
                    "containers": [container],
                    "volumes": [{"name": "generator", "configMap": {"name": configmap, "defaultMode": 0o444}}],
                },
            },
        },
    }


# Seldon Core 2's envoy Service (design B1: port 80 -> 9000, REST and gRPC on one port).
MESH_SERVICE = "seldon-mesh"
# After the last window: the drain (request timeout) and writing the result.
FINISH_SLACK_S = 30.0


def mesh_service_url(profile: Profile) -> str:
    """The mesh as pods in the cluster reach it: its ClusterIP Service name."""
    return f"http://{MESH_SERVICE}.{profile.seldon.namespace}.svc.cluster.local:80"


def generator_deadline(profile: Profile, spec: LoadSpec) -> float:
    """Seconds from creating the Job to the end of every pod's run (the Job's activeDeadlineSeconds)."""
    run_s = spec.warmup_s + spec.window * spec.windows_per_trial + spec.timeout_s
    return profile.load.generators.start_margin_s + run_s + FINISH_SLACK_S


def example_generators(profile: Profile, namespace: str, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """What `render` shows of a cluster-generator run: the ConfigMap and Job for the profile's first
    model, with the start time left at 0 (a run sets it when it creates them)."""
    if not profile.models:
        return []
    target = mesh_service_url(profile)
    spec = LoadSpec.from_profile(profile, profile.models[0], target)
    name = "load-example"
    plan = plan_json(generator_plan(spec, profile.load.generators.pods, 0.0))
    return [generator_configmap(name, namespace, plan, run_id=run_id),
            generator_job(profile, name, namespace, name, target, generator_deadline(profile, spec), run_id=run_id)]


def render_run(profile: Profile, *, run_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every manifest a run of this profile applies: `render_all`, plus the generator ConfigMap and Job
    when the load comes from the cluster (they live here, above render: they are built from the load spec)."""
    files = render_all(profile, run_id=run_id)
    if profile.load.generators.where == "cluster":
        files["load/generators.yaml"] = example_generators(profile, EXAMPLE_NAMESPACE, run_id=run_id)
    return {name: files[name] for name in sorted(files)}
