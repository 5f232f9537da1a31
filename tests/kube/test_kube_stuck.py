"""Stuck pods: which states end a wait, after which budget, and how the cause is named."""

from __future__ import annotations

from typing import Any

import pytest

from harness.k8s.pods import CRASH_LOOP_RESTARTS, pod_blockers
from harness.kube.retry import KubeApiError
from harness.kube.stuck import StuckPods

Obj = dict[str, Any]


def pod(name: str = "p", conditions: list[Obj] | None = None, containers: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": "ns"},
            "status": {"conditions": conditions or [], "containerStatuses": containers or []}}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 1 node(s) had untolerated taint {seldon-gpu-srv: true}."}


def waiting(reason: str, restarts: int = 0, name: str = "mlserver", image: str = "seldonio/mlserver:1.7.1") -> Obj:
    return {"name": name, "image": image, "restartCount": restarts,
            "state": {"waiting": {"reason": reason, "message": f"{reason} message"}}}


@pytest.mark.parametrize(("status", "kinds", "terminal"), [
    (pod(conditions=[UNSCHEDULABLE]), ["unschedulable"], [False]),
    (pod(conditions=[{**UNSCHEDULABLE, "reason": "SchedulingGated"}]), [], []),
    (pod(conditions=[{**UNSCHEDULABLE, "status": "True"}]), [], []),
    (pod(containers=[waiting("ErrImagePull")]), ["image-pull"], [False]),
    (pod(containers=[waiting("ImagePullBackOff")]), ["image-pull"], [False]),
    (pod(containers=[waiting("InvalidImageName")]), ["bad-image"], [True]),
    (pod(containers=[waiting("ErrImageNeverPull")]), ["bad-image"], [True]),
    (pod(containers=[waiting("RegistryUnavailable")]), ["image-pull"], [False]),
    (pod(containers=[waiting("CrashLoopBackOff", 1)]), ["crash-loop"], [False]),
    (pod(containers=[waiting("CrashLoopBackOff", CRASH_LOOP_RESTARTS)]), ["crash-loop"], [True]),
    (pod(containers=[waiting("ContainerCreating")]), [], []),  # a slow pull of a big image is not stuck
])
def test_pod_blockers(status: Obj, kinds: list[str], terminal: list[bool]) -> None:
    found = pod_blockers(status)
    assert [b.kind for b in found] == kinds
    assert [b.terminal for b in found] == terminal


class FakeKube:
    def __init__(self, log: str = "", fail: bool = False) -> None:
        self.log, self.fail = log, fail
        self.calls: list[tuple[Any, ...]] = []

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[Obj]:
        return []

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False,
             tail: int | None = None) -> str:
        self.calls.append((namespace, pod, container, previous, tail))
        if self.fail:
            raise KubeApiError("GET log", 500, "boom")
        return self.log


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budgets_count_from_first_sight_and_reset_when_the_state_clears() -> None:
    clock = Clock()
    stuck = StuckPods(FakeKube(), schedule_s=120, pull_s=300, clock=clock)
    blocked = [pod(conditions=[UNSCHEDULABLE])]
    assert stuck.reason(blocked) is None
    clock.now += 119
    assert stuck.reason(blocked) is None
    clock.now += 1
    text = stuck.reason(blocked)
    assert text == ("pod ns/p unschedulable for 120s: 0/3 nodes are available: "
                    "1 node(s) had untolerated taint {seldon-gpu-srv: true}.")
    assert stuck.reason([pod()]) is None  # scheduled now: the budget starts over next time
    assert stuck.reason(blocked) is None


def test_pull_errors_alternate_without_resetting_and_name_the_image() -> None:
    clock = Clock()
    stuck = StuckPods(FakeKube(), schedule_s=1, pull_s=300, clock=clock)
    assert stuck.reason([pod(containers=[waiting("ErrImagePull")])]) is None
    clock.now += 200
    assert stuck.reason([pod(containers=[waiting("ImagePullBackOff")])]) is None
    clock.now += 100
    text = stuck.reason([pod(containers=[waiting("ErrImagePull")])]) or ""
    assert text.startswith("pod ns/p container mlserver image-pull for 300s: cannot pull image seldonio/mlserver:1.7.1")


def test_crash_loop_ends_at_once_with_the_last_log_lines() -> None:
    kube = FakeKube(log="starting\n\nTraceback (most recent call last)\nImportError: no module named pynvml\n")
    stuck = StuckPods(kube, schedule_s=120, pull_s=300, clock=Clock())
    text = stuck.reason([pod(containers=[waiting("CrashLoopBackOff", CRASH_LOOP_RESTARTS)])]) or ""
    assert "crash-loop for 0s: CrashLoopBackOff after 3 restarts" in text
    assert text.endswith("last log lines: starting | Traceback (most recent call last) | "
                         "ImportError: no module named pynvml")
    assert kube.calls == [("ns", "p", "mlserver", True, 10)]  # the crashed run's log, bounded


def test_crash_loop_logs_unavailable_still_names_the_cause() -> None:
    stuck = StuckPods(FakeKube(fail=True), schedule_s=120, pull_s=300, clock=Clock())
    text = stuck.reason([pod(containers=[waiting("CrashLoopBackOff", 5)])]) or ""
    assert "CrashLoopBackOff after 5 restarts; last log lines: (logs unavailable:" in text
