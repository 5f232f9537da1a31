"""Workload controllers through the Kubernetes API: StatefulSet, Deployment and DaemonSet pods, names,
labels, owners, status counts, scaling and template changes."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import watch

from tests.kit.scheduler_sim import CP_TAINT, GPU_TAINT, GPU_TOL, NS, Sim, node, reset, start_sim

Obj = dict[str, Any]
# A deadline, not a pause (a wait returns as soon as the state is there): a rollout also waits for the old
# pods' graceful termination, which took over 10 s beside two CPU-bound processes.
WAIT_S = 30.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s, stop = start_sim(tmp_path_factory.mktemp("sim"))
    try:
        s.core.create_namespace({"metadata": {"name": NS}})
        yield s
    finally:
        stop()


def clean(sim: Sim) -> None:
    for sts in sim.apps.list_namespaced_stateful_set(NS).items:
        sim.apps.delete_namespaced_stateful_set(sts.metadata.name, NS)
    for d in sim.apps.list_namespaced_deployment(NS).items:
        sim.apps.delete_namespaced_deployment(d.metadata.name, NS)
    for ds in sim.apps.list_namespaced_daemon_set(NS).items:
        sim.apps.delete_namespaced_daemon_set(ds.metadata.name, NS)
    reset(sim)


def watch_until(sim: Sim, list_fn: Callable[..., Any], done: Callable[[list[Obj]], bool], timeout: float,
                **selector: str) -> tuple[bool, list[Obj]]:
    """Watch the namespaced objects a selector names until `done(objects)` (sorted by name): (whether it
    held, the objects seen last). Each event re-checks the whole set, so a condition on several objects
    is seen the moment the last of them changes."""
    deadline = time.monotonic() + timeout
    listed = list_fn(NS, **selector)
    seen = {o.metadata.name: sim.to_dict(o) for o in listed.items}

    def current() -> list[Obj]:
        return [seen[n] for n in sorted(seen)]

    if done(current()):
        return True, current()
    rv = listed.metadata.resource_version
    while (remaining := deadline - time.monotonic()) > 0:
        w = watch.Watch()
        for event in w.stream(list_fn, NS, resource_version=rv, timeout_seconds=max(1, int(remaining)), **selector):
            obj = event["raw_object"]
            rv = obj["metadata"].get("resourceVersion", rv)
            if event["type"] == "DELETED":
                seen.pop(obj["metadata"]["name"], None)
            else:
                seen[obj["metadata"]["name"]] = obj
            if done(current()):
                w.stop()
                return True, current()
            if time.monotonic() > deadline:
                w.stop()
                break
    return False, current()


def wait_for(sim: Sim, list_fn: Callable[..., Any], name: str, done: Callable[[Obj], bool],
             timeout: float = WAIT_S) -> Obj:
    """Watch one namespaced object until `done(obj)`; the timeout names the last status seen."""
    held, last = watch_until(sim, list_fn, lambda objs: bool(objs) and done(objs[0]), timeout,
                             field_selector=f"metadata.name={name}")
    if not held:
        status = last[0].get("status") if last else None
        raise AssertionError(f"{name} did not reach the expected state in {timeout}s; last status: {status}")
    return last[0]


def pods(sim: Sim, selector: str) -> list[Obj]:
    return sorted((sim.to_dict(p) for p in sim.core.list_namespaced_pod(NS, label_selector=selector).items),
                  key=lambda p: p["metadata"]["name"])


def wait_for_pods(sim: Sim, selector: str, done: Callable[[list[Obj]], bool], timeout: float = WAIT_S) -> list[Obj]:
    """Watch the pods a label selector names until `done(pods)`, sorted by name as `pods` returns them.

    An owner's status can be final while its old pods are still terminating (the owner counts active
    pods only), so a check on pods waits on pod events, not on the owner's."""
    held, last = watch_until(sim, sim.core.list_namespaced_pod, done, timeout, label_selector=selector)
    if not held:
        names = [(p["metadata"]["name"], p.get("status", {}).get("phase")) for p in last]
        raise AssertionError(f"pods {selector} did not reach the expected state in {timeout}s; last seen: {names}")
    return last


def owner_events(sim: Sim, name: str, reason: str) -> list[str]:
    return [e.message for e in sim.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
            if e.reason == reason]


def template(app: str, image: str = "nginx:1.27", **spec: Any) -> Obj:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": image}], **spec}}


def sts_body(name: str, replicas: int, **kw: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": kw.pop("template", None) or template(name), **kw}}


def status_is(**want: Any) -> Callable[[Obj], bool]:
    def check(obj: Obj) -> bool:
        status = obj.get("status") or {}
        return all(status.get(k) == v for k, v in want.items()) and \
            status.get("observedGeneration") == obj["metadata"].get("generation")
    return check


def test_statefulset_pods_status_scale_and_update(sim: Sim) -> None:
    clean(sim)
    sim.core.create_node(node("n1"))
    vct = [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "1Gi"}}}}]
    sim.apps.create_namespaced_stateful_set(NS, sts_body("web", 3, volumeClaimTemplates=vct))
    sts = wait_for(sim, sim.apps.list_namespaced_stateful_set, "web",
                   status_is(replicas=3, readyReplicas=3, availableReplicas=3, currentReplicas=3, updatedReplicas=3))
    rev = sts["status"]["updateRevision"]
    assert rev.startswith("web-") and sts["status"]["currentRevision"] == rev
    got = pods(sim, "app=web")
    assert [p["metadata"]["name"] for p in got] == ["web-0", "web-1", "web-2"]
    for i, p in enumerate(got):
        labels = p["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
        assert labels["controller-revision-hash"] == rev and labels["apps.kubernetes.io/pod-index"] == str(i)
        (owner,) = p["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "StatefulSet", "web", sts["metadata"]["uid"], True)
        assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "web"
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-web-{i}"}} in p["spec"]["volumes"]
        assert p["status"]["phase"] == "Running"
    assert {"create Pod web-0 in StatefulSet web successful", "create Pod web-2 in StatefulSet web successful"} <= \
        set(owner_events(sim, "web", "SuccessfulCreate"))

    sim.apps.patch_namespaced_stateful_set("web", NS, {"spec": {"replicas": 1}})
    wait_for(sim, sim.apps.list_namespaced_stateful_set, "web", status_is(replicas=1, readyReplicas=1))
    wait_for_pods(sim, "app=web", lambda got: [p["metadata"]["name"] for p in got] == ["web-0"])
    assert "delete Pod web-2 in StatefulSet web successful" in owner_events(sim, "web", "SuccessfulDelete")

    sim.apps.patch_namespaced_stateful_set("web", NS, {"spec": {"template": template("web", image="nginx:1.28")}})
    sts = wait_for(sim, sim.apps.list_namespaced_stateful_set, "web",
                   lambda o: status_is(replicas=1, readyReplicas=1, updatedReplicas=1)(o)
                   and o["status"]["updateRevision"] != rev and o["status"]["currentRevision"] != rev)
    (pod,) = pods(sim, "app=web")
    assert pod["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert pod["metadata"]["labels"]["controller-revision-hash"] == sts["status"]["updateRevision"]


def test_statefulset_ordered_ready_waits_for_the_previous_pod(sim: Sim) -> None:
    clean(sim)
    sim.core.create_node(node("n1", cpu="4"))
    tpl = template("big")
    tpl["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}}
    sim.apps.create_namespaced_stateful_set(NS, sts_body("big", 3, template=tpl))
    wait_for(sim, sim.apps.list_namespaced_stateful_set, "big", status_is(replicas=2, readyReplicas=1))
    names = [p["metadata"]["name"] for p in pods(sim, "app=big")]
    assert names == ["big-0", "big-1"], "big-2 must wait until big-1 is Running and Ready"
    pending = next(p for p in pods(sim, "app=big") if p["metadata"]["name"] == "big-1")
    assert pending["status"]["phase"] == "Pending"


def test_deployment_pods_status_and_rollout(sim: Sim) -> None:
    clean(sim)
    sim.core.create_node(node("n1"))
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": template("api")}}
    sim.apps.create_namespaced_deployment(NS, body)
    dep = wait_for(sim, sim.apps.list_namespaced_deployment, "api",
                   status_is(replicas=2, readyReplicas=2, availableReplicas=2, updatedReplicas=2))
    available = next(c for c in dep["status"]["conditions"] if c["type"] == "Available")
    assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
    got = pods(sim, "app=api")
    assert len(got) == 2
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in got}
    assert len(hashes) == 1
    (pod_hash,) = hashes
    assert f"Scaled up replica set api-{pod_hash} to 2" in owner_events(sim, "api", "ScalingReplicaSet")
    progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["message"] == f'ReplicaSet "api-{pod_hash}" has successfully progressed.'
    for p in got:
        prefix, suffix = p["metadata"]["name"].rsplit("-", 1)
        assert prefix == f"api-{pod_hash}" and len(suffix) == 5
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    sim.apps.patch_namespaced_deployment("api", NS, {"spec": {"template": template("api", image="nginx:1.28")}})
    wait_for(sim, sim.apps.list_namespaced_deployment, "api", status_is(replicas=2, readyReplicas=2, updatedReplicas=2))
    # The Deployment is final once the new pods are ready; the old ones may still be terminating.
    rolled = wait_for_pods(sim, "app=api", lambda got: len(got) == 2 and all(
        p["metadata"]["labels"]["pod-template-hash"] != pod_hash for p in got))
    assert {p["spec"]["containers"][0]["image"] for p in rolled} == {"nginx:1.28"}

    sim.apps.patch_namespaced_deployment("api", NS, {"spec": {"replicas": 0}})
    wait_for(sim, sim.apps.list_namespaced_deployment, "api", status_is(replicas=0, updatedReplicas=0))
    wait_for_pods(sim, "app=api", lambda got: got == [])


def test_daemonset_respects_taints_selectors_and_new_nodes(sim: Sim) -> None:
    clean(sim)
    sim.core.create_node(node("cp", taints=[CP_TAINT]))
    sim.core.create_node(node("w1"))
    sim.core.create_node(node("g1", labels={"pool": "infer-srv"}, taints=[GPU_TAINT]))
    plain = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
             "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}}
    gpu = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "gpu-plugin"},
           "spec": {"selector": {"matchLabels": {"app": "gpu-plugin"}},
                    "template": template("gpu-plugin", tolerations=[GPU_TOL], nodeSelector={"pool": "infer-srv"})}}
    sim.apps.create_namespaced_daemon_set(NS, plain)
    sim.apps.create_namespaced_daemon_set(NS, gpu)
    wait_for(sim, sim.apps.list_namespaced_daemon_set, "agent",
             status_is(desiredNumberScheduled=1, currentNumberScheduled=1, numberReady=1))
    wait_for(sim, sim.apps.list_namespaced_daemon_set, "gpu-plugin",
             status_is(desiredNumberScheduled=1, numberReady=1))
    assert [p["spec"]["nodeName"] for p in pods(sim, "app=agent")] == ["w1"]
    agent_pod = pods(sim, "app=agent")[0]["metadata"]["name"]
    assert owner_events(sim, "agent", "SuccessfulCreate") == [f"Created pod: {agent_pod}"]
    (plugin,) = pods(sim, "app=gpu-plugin")
    assert plugin["spec"]["nodeName"] == "g1"
    tolerated = {(t.get("key"), t.get("effect")) for t in plugin["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in tolerated and ("seldon-gpu-srv", "NoSchedule") in tolerated

    sim.core.create_node(node("w2"))  # a node joining later gets its daemon pod
    wait_for(sim, sim.apps.list_namespaced_daemon_set, "agent",
             status_is(desiredNumberScheduled=2, currentNumberScheduled=2, numberReady=2))
    assert sorted(p["spec"]["nodeName"] for p in pods(sim, "app=agent")) == ["w1", "w2"]

    # Daemon pods tolerate not-ready NoExecute: a NotReady node keeps its agent (not evicted), but it
    # no longer counts as desired (the not-ready NoSchedule taint is not tolerated).
    sim.faults.node_not_ready("w2")
    wait_for(sim, sim.apps.list_namespaced_daemon_set, "agent",
             status_is(desiredNumberScheduled=1, numberReady=1, numberMisscheduled=1))
    assert sorted(p["spec"]["nodeName"] for p in pods(sim, "app=agent")) == ["w1", "w2"]


# --- RuntimeClass admission (kubernetes/kubernetes plugin/pkg/admission/runtimeclass/admission.go,
# commit 04791b4906602ffda5ccf9bc4c84d3329f1d7080; the StatefulSet controller's FailedCreate event:
# pkg/controller/statefulset/stateful_pod_control.go, commit fd18d233ad4113d7f0782b62534ae405ecc5f027)

def test_a_pod_naming_a_missing_runtime_class_is_refused_until_the_class_exists(sim: Sim) -> None:
    from kubernetes.client.rest import ApiException

    clean(sim)
    sim.core.create_node(node("n1"))
    body = {"metadata": {"name": "gpu-pod"}, "spec": {"runtimeClassName": "nvidia-rc",
                                                        "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    with pytest.raises(ApiException) as refused:
        sim.core.create_namespaced_pod(NS, body)
    status = json.loads(refused.value.body)
    assert (refused.value.status, status["reason"], status["message"]) == (
        403, "Forbidden", 'pods "gpu-pod" is forbidden: pod rejected: RuntimeClass "nvidia-rc" not found')

    # A StatefulSet's pods are refused the same way: no pod, a Warning event on the StatefulSet, said once.
    rc_template = template("rc", runtimeClassName="nvidia-rc")
    sim.apps.create_namespaced_stateful_set(NS, sts_body("rc", 1, template=rc_template))
    wait_for(sim, sim.apps.list_namespaced_stateful_set, "rc", status_is(replicas=0))
    assert owner_events(sim, "rc", "FailedCreate") == [
        'create Pod rc-0 in StatefulSet rc failed error: pods "rc-0" is forbidden: '
        'pod rejected: RuntimeClass "nvidia-rc" not found']
    assert pods(sim, "app=rc") == []

    node_api = __import__("kubernetes").client.NodeV1Api(sim.core.api_client)
    node_api.create_runtime_class({"metadata": {"name": "nvidia-rc"}, "handler": "nvidia"})
    try:
        wait_for(sim, sim.apps.list_namespaced_stateful_set, "rc", status_is(replicas=1, readyReplicas=1))
        assert sim.core.create_namespaced_pod(NS, body).spec.runtime_class_name == "nvidia-rc"
        # A class that would change the pod (overhead, scheduling) is refused, not silently ignored.
        node_api.create_runtime_class({"metadata": {"name": "with-overhead"}, "handler": "nvidia",
                                       "overhead": {"podFixed": {"cpu": "10m"}}})
        body["metadata"]["name"] = "overhead-pod"
        body["spec"]["runtimeClassName"] = "with-overhead"
        with pytest.raises(ApiException) as unmodelled:
            sim.core.create_namespaced_pod(NS, body)
        assert unmodelled.value.status == 400 and "does not model" in json.loads(unmodelled.value.body)["message"]
    finally:
        for name in ("nvidia-rc", "with-overhead"):
            with contextlib.suppress(ApiException):
                node_api.delete_runtime_class(name)
        for name in ("gpu-pod", "overhead-pod"):
            with contextlib.suppress(ApiException):
                sim.core.delete_namespaced_pod(name, NS)
