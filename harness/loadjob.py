"""Latency load from inside the cluster: generator pods of one indexed Job, their results merged.

The plan, the pods' script and the merge are pure (harness/load/merge.py, harness/load/generator.py,
harness/load/job.py); this module does the I/O: it creates the ConfigMap and the Job
through `apply` (which registers their deletion: a test's `Scope.apply`, or `LocalScope` for the
command line), waits for the Job to finish, reads each pod's log and node from the API, and merges.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from harness.config import Profile
from harness.errors import HarnessError
from harness.kube import Kube, KubeApiError
from harness.kube.stuck import StuckPods
from harness.load.job import (
    generator_configmap,
    generator_deadline,
    generator_image,
    generator_job,
    mesh_service_url,
)
from harness.load.merge import (
    GeneratorOutputError,
    PodOutput,
    generator_plan,
    merge_pods,
    parse_output,
    plan_json,
    read_pod,
)
from harness.load.result import LoadResult, LoadSource
from harness.load.spec import LoadSpec

Obj = dict[str, Any]
JOB_NAME_KEY = "batch.kubernetes.io/job-name"
__all__ = ["LocalScope", "mesh_service_url", "run_in_cluster"]


def job_name(spec: LoadSpec, salt: str) -> str:
    digest = hashlib.sha256(f"{spec.model}/{salt}/{time.time_ns()}".encode()).hexdigest()[:8]
    return f"load-{digest}"


def _finished(job: Obj | None) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in ((job or {}).get("status") or {}).get("conditions") or [])


def run_in_cluster(kube: Kube, profile: Profile, spec: LoadSpec, namespace: str, apply: Callable[[Obj], Obj], *,
                   pods: int | None = None, run_id: str | None = None, target: str | None = None,
                   image: str | None = None, progress: Callable[[str], None] | None = None) -> LoadResult:
    """Run `spec` from `pods` generator pods in `namespace` and merge what they measured.

    Never raises for a generator's own failure: the result is then incomplete (`complete=False`)
    with the reason, as the runner's engine reports a dead server."""
    spec.validate()
    gens = profile.load.generators
    count = pods if pods is not None else gens.pods
    target = target or mesh_service_url(profile)
    image = image or generator_image(profile)
    name = job_name(spec, namespace)
    start_at = time.time() + gens.start_margin_s
    plan = generator_plan(spec, count, start_at)
    deadline = generator_deadline(profile, spec)
    if progress is not None:
        progress(f"load: {count} generator pod(s) of Job {namespace}/{name} ({image}), {spec.mode} loop to {target}, "
                 f"start in {gens.start_margin_s:g} s")
    apply(generator_configmap(name, namespace, plan_json(plan), run_id=run_id))
    apply(generator_job(profile, name, namespace, name, target, deadline, pods=count, image=image, run_id=run_id))
    timeouts = profile.timeouts
    stuck = StuckPods(kube, timeouts.pod_schedule_s, timeouts.image_pull_s)
    job = kube.wait_for("batch/v1", "Job", name, namespace, _finished, timeout=deadline + 10.0,
                        what=f"load generator Job {namespace}/{name} to finish",
                        give_up=stuck.for_selector(namespace, f"{JOB_NAME_KEY}={name}", workload=("Job", name)))
    outputs: list[PodOutput] = []
    problems: list[str] = []
    for pod in sorted(kube.list("v1", "Pod", namespace, label_selector=f"{JOB_NAME_KEY}={name}"),
                      key=lambda p: str(p["metadata"]["name"])):
        where = f"generator pod {namespace}/{pod['metadata']['name']}"
        phase = (pod.get("status") or {}).get("phase")
        try:
            doc = parse_output(kube.logs(namespace, pod["metadata"]["name"]), where)
            output = read_pod(doc, where, spec.windows_per_trial)
        except GeneratorOutputError as exc:
            problems.append(f"{str(exc)[:400]} (pod {phase})")
            continue
        except KubeApiError as exc:  # a pod that never started has no log to read
            problems.append(f"{where}: no log ({exc}) (pod {phase})")
            continue
        # The node as the API says, not as the pod reported it.
        output.node = str((pod.get("spec") or {}).get("nodeName") or output.node)
        output.pod = str(pod["metadata"]["name"])
        outputs.append(output)
    seen = [o.index for o in outputs]
    if len(seen) != len(set(seen)):
        raise HarnessError(f"Job {namespace}/{name}: two generator pods reported the same index: {sorted(seen)}")
    source = LoadSource(where="cluster", pods=count, namespace=namespace, job=name, image=image, target=target)
    result = merge_pods(spec, outputs, count, source)
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    failed = [c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"]
    extra = problems + [f"Job {name} failed: {c.get('reason')}: {c.get('message')}" for c in failed]
    if extra:
        failure = "; ".join(([result.failure] if result.failure else []) + extra)
        result = result.model_copy(update={"complete": False, "failure": failure})
    return result


class LocalScope:
    """A namespace of its own and LIFO cleanup for `harness load --in-cluster` (the suites use `Scope`)."""

    def __init__(self, kube: Kube, namespace: str, labels: dict[str, str], delete_s: float) -> None:
        self.kube = kube
        self.namespace = namespace
        self.labels = labels
        self.delete_s = delete_s
        self.created: list[tuple[str, str, str, str | None]] = []

    def apply(self, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(self.labels)
        self.created.append((obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")))
        created: Obj = self.kube.apply(obj)
        return created

    def open(self) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})

    def close(self) -> list[str]:
        errors = []
        while self.created:
            api, kind, name, ns = self.created.pop()
            try:
                self.kube.delete(api, kind, name, ns, wait=True, timeout=self.delete_s)
            except Exception as exc:
                errors.append(f"delete {kind}/{name}: {type(exc).__name__}: {exc}")
        return errors
