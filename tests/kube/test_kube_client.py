"""The kube layer over HTTP against the simulated cluster: verbs, retries at their bound, the wait primitive
(dropped watches, 410 Gone, timeouts that report the last state and events)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import Timeouts
from harness.errors import UsageError, WaitGaveUp, WaitTimeout
from harness.kube import Kube, KubeApiError, RetryPolicy
from harness.kube.stuck import StuckPods
from harness.kube.wait import summarize
from tests.kit.sim_fixtures import kube_against

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=4, base_s=0.01, max_delay_s=0.05, max_retry_after_s=2.0)


@pytest.fixture
def kube(sim: Any) -> Iterator[Kube]:
    yield from kube_against(sim, FAST)


@pytest.fixture
def ns(kube: Kube, request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().replace("_", "-"))[:40].strip("-")
    name = f"t-{slug}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def cm(ns: str, name: str = "c", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def in_background(fn: Any) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def until(cond: Any, timeout: float = 10.0) -> bool:
    """Poll a condition on an Event (bounded), for test helpers that must wait for the watch to open."""
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while time.monotonic() < deadline:
        if cond():
            return True
        ev.wait(0.01)
    return False


# --- verbs ------------------------------------------------------------------------------------------------


def test_apply_is_idempotent_and_patches(kube: Kube, ns: str) -> None:
    first = kube.apply(cm(ns, a="1"))
    again = kube.apply(cm(ns, a="1"))
    assert first["metadata"]["uid"] == again["metadata"]["uid"]
    changed = kube.apply(cm(ns, a="2", b="3"))
    assert changed["data"] == {"a": "2", "b": "3"}
    assert kube.get("v1", "ConfigMap", "c", ns)["data"]["a"] == "2"  # type: ignore[index]
    assert kube.get("v1", "ConfigMap", "absent", ns) is None


def test_apply_dry_run_creates_nothing(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "dry", a="1"), dry_run=True)
    assert kube.get("v1", "ConfigMap", "dry", ns) is None


def test_list_with_selectors_and_kinds_filled_in(kube: Kube, ns: str) -> None:
    for i, team in enumerate(("a", "b", "a")):
        obj = cm(ns, f"c{i}")
        obj["metadata"]["labels"] = {"team": team}
        kube.apply(obj)
    got = kube.list("v1", "ConfigMap", ns, label_selector="team=a")
    assert sorted(o["metadata"]["name"] for o in got) == ["c0", "c2"]
    assert {(o["apiVersion"], o["kind"]) for o in got} == {("v1", "ConfigMap")}
    got = kube.list("v1", "ConfigMap", ns, field_selector="metadata.name=c1")
    assert [o["metadata"]["name"] for o in got] == ["c1"]


def test_delete_waits_until_gone_and_tolerates_absent(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "gone"))
    kube.delete("v1", "ConfigMap", "gone", ns, timeout=10)
    assert kube.get("v1", "ConfigMap", "gone", ns) is None
    kube.delete("v1", "ConfigMap", "gone", ns, timeout=10)  # 404 counts as done


def test_patch_types(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "p", a="1"))
    assert kube.patch("v1", "ConfigMap", "p", ns, {"data": {"b": "2"}})["data"] == {"a": "1", "b": "2"}
    out = kube.patch("v1", "ConfigMap", "p", ns, [{"op": "remove", "path": "/data/a"}], "json")
    assert out["data"] == {"b": "2"}
    with pytest.raises(UsageError, match="patch_type"):
        kube.patch("v1", "ConfigMap", "p", ns, {}, "apply")  # type: ignore[arg-type]


def test_server_version_and_unknown_kind(kube: Kube) -> None:
    assert kube.server_version().startswith("v1.")
    with pytest.raises(KubeApiError, match="no kind Gizmo"):
        kube.list("v1", "Gizmo")


def test_events_sorted_and_filtered(kube: Kube, ns: str) -> None:
    for name, when, obj in (("e2", "2026-01-01T00:00:02Z", "x"), ("e1", "2026-01-01T00:00:01Z", "x"),
                            ("e3", "2026-01-01T00:00:03Z", "y")):
        kube.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
                     "involvedObject": {"kind": "Pod", "name": obj, "namespace": ns}, "reason": "R", "message": name,
                     "type": "Normal", "firstTimestamp": when, "lastTimestamp": when})
    assert [e["message"] for e in kube.events(ns)] == ["e1", "e2", "e3"]
    assert [e["message"] for e in kube.events(ns, involved_name="x", involved_kind="Pod")] == ["e1", "e2"]


def test_logs(kube: Kube, sim: Any, ns: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "l", "namespace": ns},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
    sim.store.append_log(ns, "l", "main", "line one\nline two\n")
    assert "line two" in kube.logs(ns, "l", "main")


# --- retries ------------------------------------------------------------------------------------------------


def test_transient_errors_on_get_are_retried(kube: Kube, sim: Any, ns: str) -> None:
    kube.apply(cm(ns, "r"))
    before = sim.faults.injected
    sim.faults.fail_next("get", "configmaps", "r", count=2, code=503)
    assert kube.get("v1", "ConfigMap", "r", ns) is not None
    assert sim.faults.injected - before == 2


def test_retries_stop_at_their_bound(kube: Kube, sim: Any, ns: str) -> None:
    kube.apply(cm(ns, "r"))
    before = sim.faults.injected
    sim.faults.fail_next("get", "configmaps", "r", count=50, code=500)
    with pytest.raises(KubeApiError) as err:
        kube.get("v1", "ConfigMap", "r", ns)
    assert err.value.attempts == 4 and err.value.status == 500
    assert "gave up after 4 attempts" in str(err.value)
    assert sim.faults.injected - before == 4  # exactly the bound, no hidden retries underneath


def test_retry_after_is_honoured(kube: Kube, sim: Any, ns: str) -> None:
    sim.faults.fail_next("list", "configmaps", count=1, code=429, retry_after=1)
    start = time.monotonic()
    kube.list("v1", "ConfigMap", ns)
    assert time.monotonic() - start >= 0.95
    assert kube.retrier.waits[-1] == 1.0


def close_connections(kube: Kube) -> None:
    # The sim answers an injected fault without reading the request body, which then poisons a kept-alive
    # connection; requests with bodies under fault injection therefore use one connection each.
    kube._api.set_default_header("Connection", "close")


def test_bare_create_is_not_retried(kube: Kube, sim: Any, ns: str) -> None:
    close_connections(kube)
    before = sim.faults.injected
    sim.faults.fail_next("create", "configmaps", count=5, code=500)
    with pytest.raises(KubeApiError, match="not retried because the call is not idempotent"):
        kube.create(cm(ns, "once"))
    assert sim.faults.injected - before == 1
    sim.faults.clear()


def test_apply_retries_its_create(kube: Kube, sim: Any, ns: str) -> None:
    close_connections(kube)
    sim.faults.fail_next("create", "configmaps", count=2, code=503)
    assert kube.apply(cm(ns, "applied"))["metadata"]["name"] == "applied"


def test_non_transient_errors_are_not_retried(kube: Kube, sim: Any, ns: str) -> None:
    before = sim.faults.injected
    sim.faults.fail_next("get", "configmaps", "f", count=5, code=403)
    with pytest.raises(KubeApiError) as err:
        kube.get("v1", "ConfigMap", "f", ns)
    assert err.value.status == 403 and sim.faults.injected - before == 1


# --- the wait primitive -------------------------------------------------------------------------------------


def test_wait_for_returns_at_once_when_already_true(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "w", a="1"))
    got = kube.wait_for("v1", "ConfigMap", "w", ns, lambda o: o is not None, 5, "configmap w")
    assert got is not None and got["data"] == {"a": "1"}


def test_wait_for_sees_a_change_through_the_watch(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "w", a="1"))
    seen: list[str] = []

    def predicate(o: dict[str, Any] | None) -> bool:
        seen.append(o["data"]["a"] if o else "-")
        if len(seen) == 1:  # the first look (the list): now change it, after the wait took its version
            in_background(lambda: kube.apply(cm(ns, "w", a="2")))
        return bool(o and o["data"]["a"] == "2")

    got = kube.wait_for("v1", "ConfigMap", "w", ns, predicate, 10, "a=2")
    assert got is not None and got["data"]["a"] == "2"
    assert seen == ["1", "2"]


@pytest.mark.parametrize("compact", [False, True], ids=["dropped", "dropped-and-compacted-410"])
def test_wait_resumes_after_dropped_watch(kube: Kube, sim: Any, ns: str, compact: bool) -> None:
    kube.apply(cm(ns, "w", a="1"))
    dropped: list[int] = []

    def chaos() -> None:
        # Drop the wait's watch once it is open; then (optionally) forget history so resuming gets 410 Gone;
        # only then make the change the wait is for: it must be seen through the resumed (or relisted) watch.
        until(lambda: bool(dropped.append(sim.faults.drop_watches("configmaps")) or dropped[-1] > 0))
        if compact:
            sim.faults.compact_history()
        kube.apply(cm(ns, "w", a="2"))

    t = in_background(chaos)
    got = kube.wait_for("v1", "ConfigMap", "w", ns, lambda o: bool(o and o["data"]["a"] == "2"), 15, "a=2")
    t.join(5)
    assert got is not None and got["data"]["a"] == "2"
    assert max(dropped) >= 1


def test_wait_for_list(kube: Kube, ns: str) -> None:
    started: list[bool] = []

    def predicate(xs: list[dict[str, Any]]) -> bool:
        if not started:
            started.append(True)
            in_background(lambda: [kube.apply(cm(ns, f"l{i}", a="x")) for i in range(3)])
        return len(xs) == 3

    items = kube.wait_for_list("v1", "ConfigMap", ns, predicate, 10, "three configmaps")
    assert [o["metadata"]["name"] for o in items] == ["l0", "l1", "l2"]


def test_wait_timeout_reports_last_state_and_events(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "stuck", a="1"))
    kube.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev", "namespace": ns},
                 "involvedObject": {"kind": "ConfigMap", "name": "stuck", "namespace": ns}, "reason": "Stuck",
                 "message": "waiting for godot", "type": "Warning", "lastTimestamp": "2026-01-01T00:00:00Z"})
    start = time.monotonic()
    with pytest.raises(WaitTimeout) as err:
        kube.wait_for("v1", "ConfigMap", "stuck", ns, lambda o: False, 1.0, "the configmap to move")
    elapsed = time.monotonic() - start
    text = str(err.value)
    assert 0.9 <= elapsed < 3.0
    assert "timed out after 1s waiting for the configmap to move" in text
    assert f"ConfigMap {ns}/stuck" in text
    assert "Warning Stuck: waiting for godot" in text


def test_wait_timeout_for_absent_object(kube: Kube, ns: str) -> None:
    with pytest.raises(WaitTimeout, match="last state: not found"):
        kube.wait_for("v1", "ConfigMap", "never", ns, lambda o: o is not None, 0.5, "never")


def test_summarize_pod_and_node() -> None:
    pod = {"kind": "Pod", "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 1 Insufficient nvidia.com/gpu."}]}}
    assert summarize(pod) == ("phase=Pending; PodScheduled=False (Unschedulable: 0/3 nodes are available: "
                              "1 Insufficient nvidia.com/gpu.)")
    node = {"kind": "Node", "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"nvidia.com/gpu": "1"}}}
    assert summarize(node) == "allocatable=nvidia.com/gpu=1; taints=k=v:NoSchedule"


def test_kubeconfig_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="kubeconfig not found"):
        Kube.from_kubeconfig(tmp_path / "nope", None, Timeouts())
    bad = tmp_path / "kc"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(UsageError, match="unusable kubeconfig"):
        Kube.from_kubeconfig(bad, "missing", Timeouts())


# --- give-up: waits that stop early, naming the cause ---------------------------------------------------
def _gpu_pod(ns: str, name: str, tolerations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"tolerations": tolerations or [], "containers": [{
                "name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def test_unschedulable_pod_gives_up_after_its_budget_naming_the_taint(kube: Kube, ns: str) -> None:
    kube.apply(_gpu_pod(ns, "no-toleration"))
    stuck = StuckPods(kube, schedule_s=1.0, pull_s=60)
    start = time.monotonic()
    with pytest.raises(WaitGaveUp) as err:
        kube.wait_for("v1", "Pod", "no-toleration", ns, lambda p: False, timeout=60, what="the pod to run",
                      give_up=stuck.for_pod())
    elapsed = time.monotonic() - start
    text = str(err.value)
    assert 1.0 <= elapsed < 15, elapsed  # the 60 s timeout was not waited out
    assert text.startswith("gave up after")
    assert f"pod {ns}/no-toleration unschedulable for" in text
    assert "untolerated taint {seldon-gpu-srv: true}" in text


def test_give_up_through_a_selector_on_another_object(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "owner", a="1"))
    pod = _gpu_pod(ns, "member")
    pod["metadata"]["labels"] = {"group": "g"}
    kube.apply(pod)
    stuck = StuckPods(kube, schedule_s=0.5, pull_s=60)
    with pytest.raises(WaitGaveUp, match="untolerated taint"):
        kube.wait_for("v1", "ConfigMap", "owner", ns, lambda o: False, timeout=60, what="never",
                      give_up=stuck.for_selector(ns, "group=g"))


def test_a_workload_whose_pods_the_api_refuses_gives_up_naming_the_refusal(kube: Kube, ns: str) -> None:
    """No pod to be stuck: the StatefulSet's FailedCreate (here: a RuntimeClass that does not exist, which
    admission refuses) past the budget ends the wait, instead of the Server's whole readiness budget."""
    template = _gpu_pod(ns, "unused")["spec"]
    template["runtimeClassName"] = "no-such-runtime"
    kube.apply({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "refused", "namespace": ns},
                "spec": {"replicas": 1, "serviceName": "refused", "selector": {"matchLabels": {"app": "refused"}},
                         "template": {"metadata": {"labels": {"app": "refused"}}, "spec": template}}})
    kube.apply(cm(ns, "owner", a="1"))
    stuck = StuckPods(kube, schedule_s=0.5, pull_s=60)
    start = time.monotonic()
    with pytest.raises(WaitGaveUp) as err:
        kube.wait_for("v1", "ConfigMap", "owner", ns, lambda o: False, timeout=60, what="never",
                      give_up=stuck.for_selector(ns, "app=refused", workload=("StatefulSet", "refused")))
    assert time.monotonic() - start < 15
    assert f"StatefulSet {ns}/refused cannot create its pods" in str(err.value)
    assert "no-such-runtime" in str(err.value)
    # Without the workload named, only pods count: none exist, so nothing gives up (the deadline would).
    assert StuckPods(kube, schedule_s=0, pull_s=60).for_selector(ns, "app=refused")(None) is None


def test_a_server_whose_statefulset_the_operator_cannot_make_gives_up_after_the_budget() -> None:
    from harness.k8s.conditions import STATEFULSET_NOT_READY, server_refusal

    def server(reason: str) -> dict[str, Any]:
        # As the operator writes it: the text is the reason, the message is empty (knative MarkFalse).
        return {"status": {"conditions": [{"type": "StatefulSetOrDeploymentReady", "status": "False",
                                           "reason": reason}]}}

    refused = server('StatefulSet.apps "s" is invalid: ...: must be equal to nvidia.com/gpu limit of 2')
    assert server_refusal(server(STATEFULSET_NOT_READY)) is None  # still coming: pods are on their way
    not_ready_with_message = server(STATEFULSET_NOT_READY)
    not_ready_with_message["status"]["conditions"][0]["message"] = "1 of 2 replicas ready"
    assert server_refusal(not_ready_with_message) is None  # the reason decides, not the message
    assert server_refusal(None) is None
    assert "must be equal to nvidia.com/gpu limit" in (server_refusal(refused) or "")

    class NoPods:
        def list(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

        def logs(self, *args: Any, **kwargs: Any) -> str:
            return ""

    clock = [0.0]
    give_up = StuckPods(NoPods(), schedule_s=5, pull_s=60, clock=lambda: clock[0]).for_selector(
        "ns", "x=y", refused=server_refusal)
    assert give_up(refused) is None  # the budget starts now
    clock[0] = 4.9
    assert give_up(refused) is None
    assert give_up(server(STATEFULSET_NOT_READY)) is None  # cleared: the budget starts afresh next time
    clock[0] = 9.0
    assert give_up(refused) is None
    clock[0] = 14.0
    assert "cannot make the Server's StatefulSet" in (give_up(refused) or "")


def test_a_give_up_that_never_fires_still_times_out(kube: Kube, ns: str) -> None:
    kube.apply(cm(ns, "calm", a="1"))
    with pytest.raises(WaitTimeout) as err:
        kube.wait_for("v1", "ConfigMap", "calm", ns, lambda o: False, 1.0, "calm", give_up=lambda o: None)
    assert not isinstance(err.value, WaitGaveUp)
    assert "timed out after 1s" in str(err.value)
