"""Why a pod is stuck: the states in which waiting longer will not make it Ready.

Read off the pod's own status as the kubelet and scheduler write it (k8s.io/api core/v1 types.go:
`PodScheduled` condition with reason `Unschedulable`; container `state.waiting.reason` values
the image pull failures and `CrashLoopBackOff` from
pkg/kubelet/images and pkg/kubelet/kuberuntime). Pure: the caller decides how long each state may last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

BlockerKind = Literal["unschedulable", "image-pull", "bad-image", "crash-loop"]
# Waiting reasons that mean the image will not arrive without someone fixing something. The kubelet
# retries the first group (a registry can come back: they get a budget); the second never succeeds.
RETRIED_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"})
FINAL_PULL_FAILURES = frozenset({"InvalidImageName", "ErrImageNeverPull", "SignatureValidationFailed"})
PULL_FAILURES = RETRIED_PULL_FAILURES | FINAL_PULL_FAILURES
# A container may crash a few times while its dependencies come up (Seldon's agent before the
# scheduler answers); after this many restarts in CrashLoopBackOff it is not coming back by itself.
CRASH_LOOP_RESTARTS = 3


@dataclass(frozen=True)
class Blocker:
    """One reason a pod cannot become Ready; `terminal` ones need no budget to be believed."""

    pod: str  # namespace/name
    kind: BlockerKind
    container: str | None
    detail: str
    terminal: bool


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` (`/name` for a cluster-scoped object): how objects are told apart."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def pod_blockers(pod: Mapping[str, Any]) -> list[Blocker]:
    """Every blocking state the pod shows now, in a stable order (scheduling first, then containers)."""
    pid = object_key(pod)
    status = pod.get("status") or {}
    out: list[Blocker] = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            out.append(Blocker(pid, "unschedulable", None, str(cond.get("message") or "Unschedulable"), False))
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        name = str(cs.get("name") or "")
        message = str(waiting.get("message") or reason or "")
        image = str(cs.get("image") or "")
        if reason in RETRIED_PULL_FAILURES:
            out.append(Blocker(pid, "image-pull", name, f"cannot pull image {image}: {message}", False))
        elif reason in FINAL_PULL_FAILURES:
            out.append(Blocker(pid, "bad-image", name, f"image {image} will never start ({reason}): {message}", True))
        elif reason == "CrashLoopBackOff":
            restarts = int(cs.get("restartCount") or 0)
            out.append(Blocker(pid, "crash-loop", name, f"CrashLoopBackOff after {restarts} restarts",
                               restarts >= CRASH_LOOP_RESTARTS))
    return out
