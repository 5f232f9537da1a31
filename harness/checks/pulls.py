"""Image pulls, read from pod snapshots: readiness budgets must not include them.

Kubernetes counts a pod's `activeDeadlineSeconds` from `status.startTime`, before the image pull, and
MLServer's images are several GB: a budget that includes the pull fails the first run on a cold
node for a reason that has nothing to do with the check. So waits run in two steps: first the pull,
with its own budget (`timeouts.image_pull_s`) and the words "pulling image X" in progress and in
failures; then readiness, with its budget counted from the moment the image is there. Pull errors
are judged by `harness.kube.stuck.StuckPods` (the give-up of both waits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.k8s.pods import PULL_FAILURES  # one list of pull failure reasons

Obj = dict[str, Any]

# Waiting reasons while the kubelet may still be pulling (the Pulling event tells which image).
_CREATING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class PullFailure:
    pod: str
    image: str
    reason: str
    message: str

    def __str__(self) -> str:
        detail = f": {self.message}" if self.message else ""
        return f"pulling image {self.image} for pod {self.pod} failed ({self.reason}{detail})"


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _images(pod: Obj) -> dict[str, str]:
    spec = pod.get("spec") or {}
    return {str(c.get("name")): str(c.get("image", "")) for c in
            [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}


def _name(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")


def pull_failures(pod: Obj) -> list[PullFailure]:
    images = _images(pod)
    out = []
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            image = str(cs.get("image") or images.get(str(cs.get("name")), "?"))
            out.append(PullFailure(_name(pod), image, str(waiting["reason"]), str(waiting.get("message") or "")))
    return out


def images_pending(pod: Obj) -> list[str]:
    """Images of `pod` not yet on its node (as far as the pod's status tells): containers still being
    created that never ran. Empty for an unscheduled pod (nothing is pulled before scheduling)."""
    if not (pod.get("spec") or {}).get("nodeName"):
        return []
    images = _images(pod)
    statuses = {str(cs.get("name")): cs for cs in _statuses(pod)}
    pending = []
    for name, image in images.items():
        cs = statuses.get(name)
        if cs is None:
            pending.append(image)  # no status yet: the kubelet has not got to it
            continue
        state = cs.get("state") or {}
        waiting = state.get("waiting")
        ran = bool(cs.get("imageID")) or "running" in state or "terminated" in state or cs.get("lastState")
        # A pull error is still an image not there: the wait goes on; `StuckPods` (harness.kube.stuck)
        # ends it once the error has lasted `image_pull_s` (registries recover from rate limits).
        if waiting is not None and waiting.get("reason") in (_CREATING | PULL_FAILURES) and not ran:
            pending.append(image)
    return sorted(set(pending))


def past_pull(pod: Obj | None) -> bool:
    """True once every image of the pod is there, the pod finished, or it is unschedulable (nothing
    will be pulled; the readiness wait reports why)."""
    if pod is None:
        return False
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    if not (pod.get("spec") or {}).get("nodeName"):
        # Not scheduled yet: keep waiting; unschedulable: nothing will be pulled, let readiness report it.
        return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                   for c in status.get("conditions") or [])
    return not images_pending(pod)


def pulling_text(pods: list[Obj]) -> str:
    """"pulling image X (pod a, pod b)" for everything still pulling, or ""."""
    by_image: dict[str, list[str]] = {}
    for pod in pods:
        for image in images_pending(pod):
            by_image.setdefault(image, []).append(_name(pod))
    return "; ".join(f"pulling image {image} ({', '.join(sorted(names))})" for image, names in sorted(by_image.items()))
