"""Deletion as a real API server, kubelet and garbage collector do it, through the real client.

Sources (kubernetes/kubernetes):
- grace periods: pkg/registry/core/pod/strategy.go `CheckGracefulDelete` (commit
  008b3652959ca58af8be3fb5b6ecfe9ae7638282) and staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go
  `BeforeDelete` (commit 02a7741ebbc83077c05a2c109a9dc8bbd0a0a1dd): an unbound pod goes at once; a bound
  one gets deletionTimestamp = now + grace and deletionGracePeriodSeconds; a later delete may only
  shorten it; grace 0 deletes at once; preconditions (uid, resourceVersion) answer 409;
- the kubelet's termination: pkg/kubelet/kuberuntime/kuberuntime_container.go `killContainer` (SIGTERM,
  SIGKILL when the grace is up) and pkg/kubelet/status/status_manager.go (final delete with grace 0),
  commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282; a Terminating pod keeps its devices until then;
- namespaces: pkg/controller/namespace/deletion/namespaced_resources_deleter.go (Terminating until
  emptied) and the generic registry's Create (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/
  store.go): 409 AlreadyExists "object is being deleted" while the old object is still there;
- propagation: the garbage collector's `orphan` and `foregroundDeletion` finalizers
  (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.kit.scheduler_sim import NS, Sim, gone, node, pod_body, reset, running, wait_pod
from tests.kit.sim_fixtures import run_kubectl

Obj = dict[str, Any]
# Each script says it is up (signal handling in place) by creating $UP; logs arrive only at exit.
IGNORES_SIGTERM = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "open(os.environ['UP'], 'w').close()\ntime.sleep(120)\n")
EXITS_ON_SIGTERM = "import os, time\nopen(os.environ['UP'], 'w').close()\ntime.sleep(120)\n"
UP_DIR = Path(tempfile.mkdtemp(prefix="sim-deletion-"))


def python_pod(name: str, script: str, grace: int, gpus: int = 0) -> Obj:
    body = pod_body(name, restartPolicy="Never", terminationGracePeriodSeconds=grace)
    container = body["spec"]["containers"][0]
    container.update({"image": "python:3.12-slim", "command": ["python3", "-c", script],
                      "env": [{"name": "UP", "value": str(UP_DIR / name)}]})
    (UP_DIR / name).unlink(missing_ok=True)
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return body


def started(sim: Sim, name: str, ns: str = NS) -> None:
    """Running, and its process has set up its signal handling (it created its $UP file)."""
    wait_pod(sim, name, running, ns=ns)
    deadline = time.monotonic() + 15
    while not (UP_DIR / name).exists():
        assert time.monotonic() < deadline, f"pod {name} never started its process"
        time.sleep(0.02)  # polling a file a local process creates; bounded by the deadline above


def _status(exc: ApiException) -> Obj:
    return dict(json.loads(exc.body))


# name, pod script (None: a pod no node takes), grace on the pod, delete options, seconds it stays
# Terminating at least, at most
GRACE_CASES = [
    ("unbound-pod-goes-at-once", None, 30, {}, None, 0.0),
    ("grace-zero-goes-at-once", IGNORES_SIGTERM, 30, {"grace_period_seconds": 0}, None, 0.0),
    ("ignores-sigterm-held-for-its-grace", IGNORES_SIGTERM, 1, {}, 0.8, 15.0),
    ("option-overrides-the-pods-grace", IGNORES_SIGTERM, 30, {"grace_period_seconds": 1}, 0.8, 15.0),
    ("exits-on-sigterm-goes-before-its-grace", EXITS_ON_SIGTERM, 30, {}, 0.0, 15.0),
]


@pytest.mark.parametrize(("case", "script", "grace", "options", "at_least", "at_most"), GRACE_CASES,
                         ids=[c[0] for c in GRACE_CASES])
def test_graceful_pod_deletion(sim: Sim, case: str, script: str | None, grace: int, options: Obj,
                               at_least: float | None, at_most: float) -> None:
    reset(sim)
    if script is None:
        sim.core.create_namespaced_pod(NS, pod_body("p", terminationGracePeriodSeconds=grace))  # no node: Pending
    else:
        sim.core.create_node(node("n1"))
        sim.core.create_namespaced_pod(NS, python_pod("p", script, grace))
        started(sim, "p")
    start = time.monotonic()
    answer = sim.to_dict(sim.core.delete_namespaced_pod("p", NS, **options))
    if at_least is None:
        with pytest.raises(ApiException) as missing:
            sim.core.read_namespaced_pod("p", NS)
        assert missing.value.status == 404
        return
    expected_grace = options.get("grace_period_seconds", grace)
    assert answer["metadata"]["deletionGracePeriodSeconds"] == expected_grace
    assert answer["metadata"]["deletionTimestamp"]
    if at_least > 0:  # still there, Terminating on its node (a pod that exits on SIGTERM may be gone already)
        terminating = sim.to_dict(sim.core.read_namespaced_pod("p", NS))
        assert terminating["metadata"]["deletionTimestamp"] and terminating["spec"]["nodeName"] == "n1"
    wait_pod(sim, "p", gone, timeout=at_most)
    assert time.monotonic() - start >= at_least


def test_a_later_delete_may_only_shorten_the_grace(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, python_pod("p", IGNORES_SIGTERM, 60))
    started(sim, "p")
    first = sim.to_dict(sim.core.delete_namespaced_pod("p", NS))
    longer = sim.to_dict(sim.core.delete_namespaced_pod("p", NS, grace_period_seconds=90))
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 60
    assert longer["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # pending: no write
    start = time.monotonic()
    shorter = sim.to_dict(sim.core.delete_namespaced_pod("p", NS, grace_period_seconds=1))
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 1
    wait_pod(sim, "p", gone, timeout=15)
    assert time.monotonic() - start < 15


def test_a_terminating_gpu_pod_keeps_its_gpu_until_it_is_gone(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("g1", gpus=1))
    sim.core.create_namespaced_pod(NS, python_pod("old", IGNORES_SIGTERM, 2, gpus=1))
    started(sim, "old")
    sim.core.delete_namespaced_pod("old", NS)
    sim.core.create_namespaced_pod(NS, {**pod_body("new", limits={"nvidia.com/gpu": "1"})})
    pending = wait_pod(sim, "new", lambda p: any(
        c.get("reason") == "Unschedulable" for c in ((p or {}).get("status") or {}).get("conditions") or []))
    assert pending is not None and not pending["spec"].get("nodeName")
    assert sim.to_dict(sim.core.read_namespaced_pod("old", NS))["metadata"]["deletionTimestamp"]
    wait_pod(sim, "old", gone, timeout=15)
    placed = wait_pod(sim, "new", running, timeout=15)
    assert placed is not None and placed["spec"]["nodeName"] == "g1"


PRECONDITIONS = [
    ("stale-resource-version", lambda cm: client.V1Preconditions(resource_version="1"),
     "the ResourceVersion in the precondition (1) does not match the ResourceVersion in record"),
    ("other-uid", lambda cm: client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000"),
     "the UID in the precondition (00000000-0000-0000-0000-000000000000) does not match the UID in record"),
]


@pytest.mark.parametrize(("case", "pre", "message"), PRECONDITIONS, ids=[c[0] for c in PRECONDITIONS])
def test_delete_preconditions(sim: Sim, case: str, pre: Any, message: str) -> None:
    cm = sim.core.create_namespaced_config_map(NS, {"metadata": {"name": f"pre-{case}"}})
    with pytest.raises(ApiException) as refused:
        sim.core.delete_namespaced_config_map(cm.metadata.name, NS, body=client.V1DeleteOptions(
            preconditions=pre(cm)))
    assert refused.value.status == 409 and message in _status(refused.value)["message"]
    sim.core.read_namespaced_config_map(cm.metadata.name, NS)  # still there
    ok = client.V1Preconditions(resource_version=cm.metadata.resource_version, uid=cm.metadata.uid)
    sim.core.delete_namespaced_config_map(cm.metadata.name, NS, body=client.V1DeleteOptions(preconditions=ok))


def test_a_deleted_namespace_is_terminating_and_cannot_be_recreated_until_gone(sim: Sim) -> None:
    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespace({"metadata": {"name": "plain"}})
    sim.core.create_namespaced_config_map("plain", {"metadata": {"name": "cm"}})
    answer = sim.to_dict(sim.core.delete_namespace("plain"))  # nothing holds it: still Terminating first
    assert answer["status"]["phase"] == "Terminating" and answer["metadata"]["deletionTimestamp"]
    # A namespace whose pod is still terminating (2 s grace, SIGTERM ignored) is there for certain.
    sim.core.create_namespace({"metadata": {"name": "ending"}})
    body = python_pod("held", IGNORES_SIGTERM, 2)
    body["metadata"]["namespace"] = "ending"
    sim.core.create_namespaced_pod("ending", body)
    started(sim, "held", ns="ending")
    sim.core.delete_namespace("ending")
    with pytest.raises(ApiException) as again:
        sim.core.create_namespace({"metadata": {"name": "ending"}})
    assert again.value.status == 409
    assert _status(again.value)["message"] == 'object is being deleted: namespaces "ending" already exists'
    for name in ("plain", "ending"):
        _wait_namespace_gone(sim, name)
    sim.core.create_namespace({"metadata": {"name": "ending"}})
    sim.core.delete_namespace("ending")


def _wait_namespace_gone(sim: Sim, name: str, timeout: int = 15) -> None:
    listed = sim.core.list_namespace(field_selector=f"metadata.name={name}")
    if not listed.items:
        return
    for event in watch.Watch().stream(sim.core.list_namespace, field_selector=f"metadata.name={name}",
                                      resource_version=listed.metadata.resource_version, timeout_seconds=timeout):
        if event["type"] == "DELETED":
            return
    raise AssertionError(f"namespace {name} still there after {timeout}s")


FINALIZER_CASES = [("Orphan", "orphan"), ("Foreground", "foregroundDeletion")]


@pytest.mark.parametrize(("policy", "finalizer"), FINALIZER_CASES, ids=[c[0] for c in FINALIZER_CASES])
def test_propagation_puts_its_finalizer_on_the_owner(sim: Sim, policy: str, finalizer: str) -> None:
    owner = sim.core.create_namespaced_config_map(NS, {"metadata": {"name": f"owner-{finalizer.lower()}"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
           "blockOwnerDeletion": True}
    sim.core.create_namespaced_config_map(NS, {"metadata": {"name": f"dep-{finalizer.lower()}",
                                                            "ownerReferences": [ref]}})
    rv = sim.core.list_namespaced_config_map(NS).metadata.resource_version
    answer = sim.to_dict(sim.core.delete_namespaced_config_map(owner.metadata.name, NS,
                                                               propagation_policy=policy))
    assert answer["metadata"]["finalizers"] == [finalizer] and answer["metadata"]["deletionTimestamp"]
    events = [(e["type"], e["raw_object"]["metadata"]["name"], e["raw_object"]["metadata"].get("finalizers"))
              for e in watch.Watch().stream(sim.core.list_namespaced_config_map, NS, resource_version=rv,
                                            timeout_seconds=1)]
    assert ("MODIFIED", owner.metadata.name, [finalizer]) in events
    assert events[-1][:2] == ("DELETED", owner.metadata.name) or ("DELETED", owner.metadata.name, None) in [
        (t, n, None) for t, n, _ in events]
    dependent_left = f"dep-{finalizer.lower()}" in {c.metadata.name for c in sim.core.list_namespaced_config_map(
        NS).items}
    assert dependent_left == (policy == "Orphan")


def test_kubectl_delete_waits_for_a_terminating_pod(sim: Sim, tmp_path: Path) -> None:
    """kubectl delete (default --wait) returns once the pod is really gone, after its grace period."""
    import yaml

    from harness.sim.cluster import kubeconfig_document

    reset(sim)
    sim.core.create_node(node("n1"))
    sim.core.create_namespaced_pod(NS, python_pod("k", IGNORES_SIGTERM, 1))
    started(sim, "k")
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig_document(sim.core.api_client.configuration.host)))
    start = time.monotonic()
    done = run_kubectl(config, "-n", NS, "delete", "pod", "k", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start >= 0.8
    with pytest.raises(ApiException):
        sim.core.read_namespaced_pod("k", NS)
