"""Image pulls never count against readiness budgets: pure pull-state rules, the probe pod's deadline,
and the Server wait that waits for a pull on its own budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import render
from harness.checks.pulls import images_pending, past_pull, pull_failures, pulling_text
from harness.config import parse_profile
from harness.errors import WaitGaveUp, WaitTimeout
from harness.kube.stuck import StuckPods
from harness.lifecycle import ClusterSession, RunOptions

IMAGE = "seldonio/mlserver:1.7.1"


def pod(node: str | None = "gpu-1", phase: str = "Pending", waiting: str | None = "ContainerCreating",
        image_id: str = "", message: str = "", scheduled: str | None = None, running: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}} if running else {"waiting": {"reason": waiting, "message": message}}
    status: dict[str, Any] = {"phase": phase, "conditions": []}
    if scheduled is not None:
        status["conditions"].append({"type": "PodScheduled", "status": scheduled})
    if node is not None:
        status["containerStatuses"] = [{"name": "mlserver", "image": IMAGE, "imageID": image_id, "state": state}]
    spec: dict[str, Any] = {"containers": [{"name": "mlserver", "image": IMAGE}]}
    if node is not None:
        spec["nodeName"] = node
    return {"metadata": {"name": "srv-0", "namespace": "seldon-mesh"}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("obj", "pending", "past", "failed"),
    [
        (pod(), [IMAGE], False, []),                                                # pulling
        (pod(running=True, image_id="sha256:x"), [], True, []),                     # pulled and running
        (pod(waiting="CrashLoopBackOff", image_id="sha256:x"), [], True, []),        # ran: not a pull
        # Pull errors: the image is still not there; StuckPods ends the wait after image_pull_s.
        (pod(waiting="ImagePullBackOff", message="not found"), [IMAGE], False, ["ImagePullBackOff"]),
        (pod(waiting="ErrImageNeverPull"), [IMAGE], False, ["ErrImageNeverPull"]),  # kind: not pre-loaded
        (pod(node=None), [], False, []),                                            # not scheduled yet
        (pod(node=None, scheduled="False"), [], True, []),                          # unschedulable
        (pod(phase="Failed"), [IMAGE], True, []),                                   # finished
    ],
)
def test_pull_state_of_a_pod(obj: dict[str, Any], pending: list[str], past: bool, failed: list[str]) -> None:
    assert images_pending(obj) == pending
    assert past_pull(obj) is past
    assert [f.reason for f in pull_failures(obj)] == failed


def test_pulling_text_and_failure_name_the_image() -> None:
    assert pulling_text([pod(), pod(running=True)]) == f"pulling image {IMAGE} (seldon-mesh/srv-0)"
    (failure,) = pull_failures(pod(waiting="ErrImagePull", message="manifest unknown"))
    assert str(failure) == f"pulling image {IMAGE} for pod seldon-mesh/srv-0 failed (ErrImagePull: manifest unknown)"
    assert past_pull(None) is False


def test_probe_deadline_adds_the_pull_budget_unless_the_image_is_preloaded() -> None:
    gpu = {"nodes": {"gpu_workers": [{"count": 1, "gpus": 1}]}}
    existing = parse_profile({"cluster": {"provider": "existing", **gpu}, "timeouts": {"probe_s": 60,
                                                                                    "image_pull_s": 600}}, "p")
    assert render.probe_pod(existing, "p", "ns", 1)["spec"]["activeDeadlineSeconds"] == 660
    kind = parse_profile({"cluster": {"provider": "kind", **gpu}, "timeouts": {"probe_s": 60}}, "p")
    assert render.probe_pod(kind, "p", "ns", 1)["spec"]["activeDeadlineSeconds"] == 60


class PullingKube:
    """Server Ready times out once while its pod pulls; the pull then finishes; Ready follows."""

    def __init__(self, pods: list[dict[str, Any]], ready_after_pull: bool = True) -> None:
        self.pods = pods
        self.ready_after_pull = ready_after_pull
        self.calls: list[tuple[str, float, str]] = []
        self.pulled = False

    def wait_for(self, api_version: str, kind: str, name: str, namespace: str | None, predicate: Any,
                 timeout: float, what: str, give_up: Any = None) -> Any:
        assert give_up is not None, "the readiness wait keeps StuckPods' give-up"
        self.calls.append(("wait_for", timeout, what))
        if not (self.pulled and self.ready_after_pull):
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        return {}

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        assert label_selector == "seldon-server-name=srv"
        return self.pods

    def wait_for_list(self, api_version: str, kind: str, namespace: str | None, predicate: Any, timeout: float,
                      what: str, label_selector: str | None = None, field_selector: str | None = None,
                      give_up: Any = None) -> Any:
        assert give_up is not None, "the pull wait ends early on a pull error past image_pull_s"
        self.calls.append(("wait_for_list", timeout, what))
        if not self.ready_after_pull:
            raise WaitGaveUp(f"gave up waiting for {what}: pod seldon-mesh/srv-0 image-pull for 900s: denied")
        self.pulled = True
        return [pod(running=True, image_id="sha256:x")] if self.ready_after_pull else self.pods


def stuck(kube: PullingKube) -> StuckPods:
    return StuckPods(kube, 120, 900)  # type: ignore[arg-type]


def session(tmp_path: Path) -> ClusterSession:
    profile = parse_profile({"timeouts": {"server_ready_s": 30, "image_pull_s": 900}}, "p")
    return ClusterSession(profile, RunOptions(run_id="r1", workdir=tmp_path))


def test_server_readiness_budget_restarts_after_a_pull_on_its_own_budget(tmp_path: Path) -> None:
    kube = PullingKube([pod()])
    session(tmp_path)._wait_server_ready(kube, "srv", "seldon-mesh", stuck(kube))  # type: ignore[arg-type]
    assert kube.calls == [
        ("wait_for", 30, "Server srv Ready"),
        ("wait_for_list", 900, f"Server srv: pulling image {IMAGE} (seldon-mesh/srv-0)"),
        ("wait_for", 30, "Server srv Ready"),
    ]


def test_server_not_ready_without_a_pull_fails_on_its_budget(tmp_path: Path) -> None:
    kube = PullingKube([pod(running=True, image_id="sha256:x")])
    with pytest.raises(WaitTimeout, match="30s waiting for Server srv Ready"):
        session(tmp_path)._wait_server_ready(kube, "srv", "seldon-mesh", stuck(kube))  # type: ignore[arg-type]
    assert [c[0] for c in kube.calls] == ["wait_for"]


def test_server_pull_error_past_its_budget_ends_the_wait_naming_the_image(tmp_path: Path) -> None:
    kube = PullingKube([pod(waiting="ErrImagePull", message="denied")], ready_after_pull=False)
    with pytest.raises(WaitGaveUp, match=f"Server srv: pulling image {IMAGE}"):
        session(tmp_path)._wait_server_ready(kube, "srv", "seldon-mesh", stuck(kube))  # type: ignore[arg-type]
