"""The Job controller (batch/v1), NonIndexed and Indexed completion modes.

Follows kubernetes/kubernetes pkg/controller/job (job_controller.go, indexed_job_utils.go) at the
behaviour the harness relies on:
- pods `<job>-<5 chars>` (Indexed: `<job>-<index>-<5 chars>`, hostname `<job>-<index>`), owned by the
  Job, labelled `batch.kubernetes.io/job-name`, `job-name`, `batch.kubernetes.io/controller-uid`,
  `controller-uid` (Indexed: the `batch.kubernetes.io/job-completion-index` label and annotation),
  and, Indexed, every container gets `JOB_COMPLETION_INDEX` from that annotation (addCompletionIndexEnvVariables);
- up to `parallelism` pods run at once, until `completions` succeeded (Indexed: each index once);
- finished pods stay (the harness reads their logs); a failed pod counts in `status.failed`; more
  failures than `backoffLimit` fail the Job (BackoffLimitExceeded) and delete its running pods;
  `activeDeadlineSeconds` past `status.startTime` fails it (DeadlineExceeded) the same way;
- status `active`, `ready`, `succeeded`, `failed`, `completedIndexes` (as "0-2,4"), `startTime`,
  `completionTime` and the `Complete` / `Failed` conditions with the upstream reasons.
Not simulated: `suspend` beyond creating no pods, pod failure and success policies,
`backoffLimitPerIndex`, `ttlSecondsAfterFinished`, pod replacement policies.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from harness.sim.contracts import Obj, Store
from harness.sim.scheduler import is_terminated, now_rfc3339
from harness.sim.workloads import _create, _delete, _write_status, owned_by, pod_ready, safe_encode

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
COMPONENT = "job-controller"


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _index(pod: Obj) -> int | None:
    value = (_meta(pod).get("annotations") or {}).get(INDEX_KEY)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def compress_indexes(indexes: set[int]) -> str:
    """`0-2,4`: how the Job controller writes status.completedIndexes."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def _finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _condition(ctype: str, reason: str, message: str) -> Obj:
    stamp = now_rfc3339()
    return {"type": ctype, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": stamp, "lastTransitionTime": stamp}


class JobController:
    name = COMPONENT

    def __init__(self) -> None:
        self._started: dict[str, float] = {}  # job uid -> monotonic start (activeDeadlineSeconds)

    def reconcile(self, store: Store, now: float) -> float | None:
        pods = store.list("v1", "Pod")
        wake: float | None = None
        for job in store.list("batch/v1", "Job"):
            due = self._sync(store, job, pods, now)
            if due is not None:
                wake = due if wake is None else min(wake, due)
        return wake

    def close(self) -> None:
        return None

    def _sync(self, store: Store, job: Obj, all_pods: list[Obj], now: float) -> float | None:
        if _finished(job):
            return None
        spec = job.get("spec") or {}
        status = dict(job.get("status") or {})
        uid = str(_meta(job).get("uid"))
        pods = owned_by(all_pods, job)
        start = self._started.setdefault(uid, now)
        if not status.get("startTime"):
            status["startTime"] = now_rfc3339()
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        active = [p for p in pods if not is_terminated(p)]
        failed = [p for p in pods if _phase(p) == "Failed"]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        done_indexes = {i for i in (_index(p) for p in succeeded) if i is not None}
        done = len(done_indexes) if indexed else len(succeeded)
        status.update(active=len(active), ready=sum(1 for p in active if pod_ready(p)), succeeded=len(succeeded),
                      failed=len(failed))
        if indexed:
            status["completedIndexes"] = compress_indexes(done_indexes)
        deadline = spec.get("activeDeadlineSeconds")
        ending: Obj | None = None
        if len(failed) > int(spec.get("backoffLimit", 6)):
            ending = _condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and now - start >= float(deadline):
            ending = _condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        elif completions is not None and done >= int(completions):
            ending = _condition("Complete", "", "")
            ending.pop("reason")
            ending.pop("message")
        if ending is not None:
            for pod in active:
                _delete(store, pod, job)
            status["active"] = 0
            status["ready"] = 0
            status["conditions"] = [*(status.get("conditions") or []), ending]
            if ending["type"] == "Complete":
                status["completionTime"] = now_rfc3339()
                store.record_event(job, "Completed", "Job completed", "Normal", component=COMPONENT)
            else:
                store.record_event(job, str(ending["reason"]), str(ending["message"]), "Warning",
                                   component=COMPONENT)
            self._started.pop(uid, None)
            _write_status(store, job, status)
            return None
        if not spec.get("suspend"):
            self._create_missing(store, job, active, pods, done_indexes, done, parallelism, completions, indexed)
        if status != (job.get("status") or {}):
            _write_status(store, job, status)
        return start + float(deadline) if deadline is not None else None

    def _create_missing(self, store: Store, job: Obj, active: list[Obj], pods: list[Obj], done_indexes: set[int],
                        done: int, parallelism: int, completions: Any, indexed: bool) -> None:
        room = parallelism - len(active)
        if indexed:
            busy = {_index(p) for p in active}
            for index in range(int(completions)):
                if room <= 0:
                    return
                if index in done_indexes or index in busy:
                    continue
                self._create_pod(store, job, index, len(pods))
                room -= 1
        else:
            wanted = parallelism if completions is None else min(parallelism, int(completions) - done)
            for n in range(wanted - len(active)):
                self._create_pod(store, job, None, len(pods) + n)

    @staticmethod
    def _create_pod(store: Store, job: Obj, index: int | None, attempt: int) -> None:
        meta = _meta(job)
        name, uid = str(meta["name"]), str(meta.get("uid"))
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        tmeta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        labels = {**(tmeta.get("labels") or {}), "batch.kubernetes.io/controller-uid": uid,
                  "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name}
        annotations = dict(tmeta.get("annotations") or {})
        suffix = safe_encode(f"{uid}/{index}/{attempt}/{time.monotonic_ns()}", 5)
        pod_name = f"{name}-{suffix}"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            pod_name = f"{name}-{index}-{suffix}"
            spec.setdefault("hostname", f"{name}-{index}")
            ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}
            for key in ("initContainers", "containers"):
                for c in spec.get(key) or []:
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                        env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": ref})
        pod: Obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": meta.get("namespace"), "labels": labels,
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": spec,
        }
        _create(store, pod, job)
