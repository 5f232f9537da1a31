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

    def for_selector(self, namespace: str, label_selector: str) -> Callable[[object], str | None]:
        """A give-up callable for a wait on another object (a Server): it reads the pods itself."""
        def give_up(_: object) -> str | None:
            try:
                pods = self.kube.list("v1", "Pod", namespace, label_selector=label_selector)
            except KubeApiError:
                return None  # cannot tell now; the wait's own deadline still holds
            return self.reason(pods)
        return give_up

    def for_pod(self) -> Callable[[Obj | None], str | None]:
        """A give-up callable for a wait on one pod."""
        def give_up(pod: Obj | None) -> str | None:
            return self.reason([pod] if pod is not None else [])
        return give_up
