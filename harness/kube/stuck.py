"""Give-up callables for waits on pods: stop as soon as a pod is stuck past its budget, naming why.

The budgets are the profile's `timeouts.pod_schedule_s` (Unschedulable) and `timeouts.image_pull_s`
(ErrImagePull/ImagePullBackOff); a crash loop or an invalid image name ends the wait at once (see
`harness.k8s.pods`). Time in a state is counted on this process's monotonic clock from the first
time a wait saw it, so a skewed cluster clock cannot shorten or stretch a budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from harness.k8s.pods import Blocker, pod_blockers
from harness.kube.retry import KubeApiError

Obj = dict[str, Any]
LOG_LINES = 10


class PodReader(Protocol):
    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[Obj]: ...

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False,
             tail: int | None = None) -> str: ...


class StuckPods:
    """Remembers since when each pod has been blocked and says when one has been blocked too long."""

    def __init__(self, kube: PodReader, schedule_s: float, pull_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.budget = {"unschedulable": schedule_s, "image-pull": pull_s}
        self.clock = clock
        self.first_seen: dict[tuple[str, str, str | None], float] = {}
        self.refused_since: float | None = None

    def reason(self, pods: list[Obj]) -> str | None:
        """The first blocker past its budget, described for a human; None while every pod may still come."""
        now = self.clock()
        seen: dict[tuple[str, str, str | None], float] = {}
        found: Blocker | None = None
        for pod in pods:
            for blocker in pod_blockers(pod):
                key = (blocker.pod, blocker.kind, blocker.container)
                seen[key] = self.first_seen.get(key, now)
                budget = 0.0 if blocker.terminal else self.budget.get(blocker.kind)
                if found is None and budget is not None and now - seen[key] >= budget:
                    found = blocker
        self.first_seen = seen  # a state that cleared starts its budget afresh if it comes back
        return None if found is None else self.describe(found, now - seen[(found.pod, found.kind, found.container)])

    def describe(self, blocker: Blocker, for_s: float) -> str:
        where = f"pod {blocker.pod}" + (f" container {blocker.container}" if blocker.container else "")
        text = f"{where} {blocker.kind} for {for_s:.0f}s: {blocker.detail}"
        if blocker.kind == "crash-loop" and blocker.container:
            text += f"; last log lines: {self._last_lines(blocker)}"
        return text

    def _last_lines(self, blocker: Blocker) -> str:
        namespace, name = blocker.pod.split("/", 1)
        try:
            log = self.kube.logs(namespace, name, blocker.container, previous=True, tail=LOG_LINES)
        except KubeApiError as exc:
            return f"(logs unavailable: {exc})"
        lines = [line for line in log.splitlines() if line.strip()][-LOG_LINES:]
        return " | ".join(lines) if lines else "(empty)"

    def for_selector(self, namespace: str, label_selector: str, workload: tuple[str, str] | None = None,
                     refused: Callable[[Any], str | None] | None = None) -> Callable[[Any], str | None]:
        """A give-up callable for a wait on another object (a Server): it reads the pods itself.

        With no pod at all there is no pod state to go by, so two refusals count as well once they
        have lasted `pod_schedule_s`: `refused(obj)` over the waited-for object (a Server whose
        StatefulSet the operator could not make), and `workload` (kind, name) saying FailedCreate
        (the API server refused its pod: a missing RuntimeClass, a quota). The reason names it."""
        def give_up(obj: Any) -> str | None:
            try:
                pods = self.kube.list("v1", "Pod", namespace, label_selector=label_selector)
                refusal = None
                if not pods:
                    refusal = (refused(obj) if refused is not None else None) or (
                        self._refusal(namespace, workload) if workload is not None else None)
            except KubeApiError:
                return None  # cannot tell now; the wait's own deadline still holds
            return self.reason(pods) or self._refused_too_long(refusal)
        return give_up

    def _refusal(self, namespace: str, workload: tuple[str, str]) -> str | None:
        kind, name = workload
        events = self.kube.list("v1", "Event", namespace,
                                field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
        refused = [e for e in events if e.get("reason") == "FailedCreate"]
        return f"{kind} {namespace}/{name} cannot create its pods: {refused[-1].get('message')}" if refused else None

    def _refused_too_long(self, refusal: str | None) -> str | None:
        now = self.clock()
        if refusal is None:
            self.refused_since = None
            return None
        if self.refused_since is None:
            self.refused_since = now
        waited = now - self.refused_since
        return f"{refusal} (for {waited:.0f}s)" if waited >= self.budget["unschedulable"] else None

    def for_pod(self) -> Callable[[Obj | None], str | None]:
        """A give-up callable for a wait on one pod."""
        def give_up(pod: Obj | None) -> str | None:
            return self.reason([pod] if pod is not None else [])
        return give_up
