"""The simulated API server driven over HTTP by the real `kubernetes` client (typed and dynamic)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from tests.kit.sim_fixtures import SimApi, add_node, client_for, node, pod, serve_api

Obj = dict[str, Any]


@pytest.fixture
def sim_api(tmp_path: Path) -> Iterator[SimApi]:
    yield from serve_api(tmp_path)


@pytest.fixture
def api_client(sim_api: SimApi) -> Iterator[Any]:
    yield from client_for(sim_api)


def raw(sim: SimApi, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, dict(resp.headers), json.loads(text) if "json" in ctype else text
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read().decode())


def body_of(exc: ApiException) -> Obj:
    parsed: Obj = json.loads(exc.body)
    return parsed


# ---------------------------------------------------------------- discovery
def test_discovery_documents(sim_api: SimApi) -> None:
    code, _, version = raw(sim_api, "GET", "/version")
    assert code == 200 and version["major"] == "1"
    _, _, api = raw(sim_api, "GET", "/api")
    assert api["versions"] == ["v1"]
    _, _, core = raw(sim_api, "GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["nodes"]["shortNames"] == ["no"] and by_name["nodes"]["namespaced"] is False
    assert by_name["pods"]["shortNames"] == ["po"] and "watch" in by_name["pods"]["verbs"]
    assert "pods/log" in by_name and "pods/status" in by_name
    _, _, apps = raw(sim_api, "GET", "/apis/apps/v1")
    shorts = {r["name"]: r.get("shortNames") for r in apps["resources"] if "/" not in r["name"]}
    assert shorts["statefulsets"] == ["sts"] and shorts["deployments"] == ["deploy"] and shorts["daemonsets"] == ["ds"]
    _, _, seldon = raw(sim_api, "GET", "/apis/mlops.seldon.io/v1alpha1")
    assert {"servers", "serverconfigs", "models", "models/status"} <= {r["name"] for r in seldon["resources"]}


def test_aggregated_discovery_request_gets_the_plain_form(sim_api: SimApi) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    code, headers, body = raw(sim_api, "GET", "/apis", headers={"Accept": accept})
    assert code == 200 and body["kind"] == "APIGroupList"
    assert headers["Content-Type"] == "application/json"
    assert "mlops.seldon.io" in {g["name"] for g in body["groups"]}


def test_unknown_path_is_a_not_found_status(sim_api: SimApi) -> None:
    code, _, body = raw(sim_api, "GET", "/apis/example.com/v1/widgets")
    assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"


# ---------------------------------------------------------------- CRUD and errors
def test_typed_crud_and_status_errors(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="team-a")))
    cm = v1.create_namespaced_config_map("team-a", {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    assert cm.metadata.uid and cm.metadata.resource_version
    got = v1.read_namespaced_config_map("cfg", "team-a")
    assert got.data == {"k": "v"}

    with pytest.raises(ApiException) as exists:
        v1.create_namespaced_config_map("team-a", {"metadata": {"name": "cfg"}})
    assert exists.value.status == 409 and body_of(exists.value)["reason"] == "AlreadyExists"
    assert body_of(exists.value)["message"] == 'configmaps "cfg" already exists'

    got.data = {"k": "v2"}
    updated = v1.replace_namespaced_config_map("cfg", "team-a", got)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    got.data = {"k": "stale"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as conflict:
        v1.replace_namespaced_config_map("cfg", "team-a", got)
    assert conflict.value.status == 409 and body_of(conflict.value)["reason"] == "Conflict"

    deleted = v1.delete_namespaced_config_map("cfg", "team-a")
    assert deleted is not None
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_config_map("cfg", "team-a")
    status = body_of(missing.value)
    assert missing.value.status == 404 and status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'configmaps "cfg" not found' and status["details"]["name"] == "cfg"


def test_create_in_a_missing_namespace_and_bad_names(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    with pytest.raises(ApiException) as no_ns:
        v1.create_namespaced_config_map("nope", {"metadata": {"name": "x"}})
    assert no_ns.value.status == 404 and body_of(no_ns.value)["message"] == 'namespaces "nope" not found'
    with pytest.raises(ApiException) as bad:
        v1.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    assert bad.value.status == 422 and body_of(bad.value)["reason"] == "Invalid"
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in body_of(bad.value)["message"]


def test_generate_name_and_generation(api_client: Any) -> None:
    apps = k8s.AppsV1Api(api_client)
    dep = {"metadata": {"generateName": "web-"},
           "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}
    created = apps.create_namespaced_deployment("default", dep)
    assert created.metadata.name.startswith("web-") and created.metadata.generation == 1
    assert created.spec.replicas == 1  # defaulted
    patched = apps.patch_namespaced_deployment(created.metadata.name, "default", {"spec": {"replicas": 3}})
    assert patched.metadata.generation == 2
    relabelled = apps.patch_namespaced_deployment(created.metadata.name, "default",
                                                  {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.metadata.generation == 2  # metadata changes do not bump generation


# ---------------------------------------------------------------- selectors
def test_label_and_field_selectors(sim_api: SimApi, api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    sim_api.store.create(pod("a", labels={"app": "web", "tier": "front"}, node_name="n1"))
    sim_api.store.create(pod("b", labels={"app": "web", "tier": "back"}, node_name="n2"))
    sim_api.store.create(pod("c", labels={"app": "db"}))

    def names(**kw: Any) -> list[str]:
        return sorted(p.metadata.name for p in v1.list_namespaced_pod("default", **kw).items)

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,tier!=front") == ["b"]
    assert names(label_selector="tier in (front, back)") == ["a", "b"]
    assert names(label_selector="tier notin (front)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="spec.nodeName=n1") == ["a"]
    assert names(field_selector="spec.nodeName=") == ["c"]
    assert names(field_selector="metadata.name!=a,status.phase=Pending") == ["b", "c"]
    everywhere = v1.list_pod_for_all_namespaces(field_selector="metadata.name=c").items
    assert [p.metadata.name for p in everywhere] == ["c"]
    with pytest.raises(ApiException) as bad:
        v1.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert bad.value.status == 400 and body_of(bad.value)["reason"] == "BadRequest"


def test_event_field_selectors_and_dedup(sim_api: SimApi, api_client: Any) -> None:
    p = sim_api.store.create(pod("evt"))
    sim_api.store.record_event(p, "FailedScheduling", "0/1 nodes are available", "Warning", "default-scheduler")
    sim_api.store.record_event(p, "FailedScheduling", "0/1 nodes are available", "Warning", "default-scheduler")
    sim_api.store.record_event(p, "Scheduled", "assigned", "Normal", "default-scheduler")
    v1 = k8s.CoreV1Api(api_client)
    events = v1.list_namespaced_event("default", field_selector="involvedObject.name=evt,involvedObject.kind=Pod").items
    by_reason = {e.reason: e for e in events}
    assert set(by_reason) == {"FailedScheduling", "Scheduled"}
    assert by_reason["FailedScheduling"].count == 2 and by_reason["FailedScheduling"].type == "Warning"
    assert by_reason["Scheduled"].involved_object.uid == p["metadata"]["uid"]


# ---------------------------------------------------------------- watch
def test_watch_from_resource_version_in_order(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w1", "labels": {"watch": "me"}}})
    v1.patch_namespaced_config_map("w1", "default", {"data": {"a": "1"}})
    v1.delete_namespaced_config_map("w1", "default")
    seen = []
    for event in k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv,
                                          timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_without_resource_version_starts_with_current_state_and_honours_selectors(
        api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "keep", "labels": {"w": "1"}}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    stream = k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", label_selector="w=1",
                                      timeout_seconds=3)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "keep")
    # leaving the selector is seen as DELETED by a selective watcher
    threading.Thread(target=lambda: v1.patch_namespaced_config_map(
        "keep", "default", {"metadata": {"labels": {"w": None}}})).start()
    second = next(stream)
    assert (second["type"], second["object"].metadata.name) == ("DELETED", "keep")


def test_watch_from_a_compacted_resource_version_is_410_gone(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    old_rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "later"}})
    sim_api.faults.compact_history()
    with pytest.raises(ApiException) as gone:
        for _ in k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=old_rv,
                                          timeout_seconds=2):
            pass
    assert gone.value.status == 410 and "Expired" in str(gone.value.reason)


def test_watch_timeout_seconds_ends_the_stream(sim_api: SimApi) -> None:
    start = time.monotonic()
    with urllib.request.urlopen(sim_api.url + "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1",
                                timeout=10) as resp:
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert resp.read() == b""
    assert 0.9 <= time.monotonic() - start < 5


def test_watch_list_initial_events_end_with_a_bookmark(sim_api: SimApi) -> None:
    sim_api.store.create(pod("wl"))
    url = (sim_api.url + "/api/v1/namespaces/default/pods?watch=1&sendInitialEvents=true"
           "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1")
    with urllib.request.urlopen(url, timeout=10) as resp:
        events = [json.loads(line) for line in resp.read().decode().splitlines()]
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "wl"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


# ---------------------------------------------------------------- patches
def _deployment(name: str, containers: list[Obj]) -> Obj:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default",
                                                                          "labels": {"a": "1"}},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}}


def test_merge_strategic_and_json_patches(api_client: Any, sim_api: SimApi) -> None:
    # A Deployment's pod template: unlike a pod's own spec (immutable), it takes any change.
    apps = k8s.AppsV1Api(api_client)
    base = "/apis/apps/v1/namespaces/default/deployments/pt"
    sim_api.store.create(_deployment("pt", [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "side:1"}]))
    # strategic (the typed client's default for dict bodies): containers merge by name, env by name
    patched = apps.patch_namespaced_deployment("pt", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}})
    app = next(c for c in patched.spec.template.spec.containers if c.name == "app")
    assert [e.name for e in app.env] == ["A", "B"] and len(patched.spec.template.spec.containers) == 2
    # strategic $patch: delete on a list element
    patched = apps.patch_namespaced_deployment("pt", "default", {"metadata": {"labels": {"b": "2"}}, "spec": {
        "template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}}}})
    assert [e.name for e in next(c for c in patched.spec.template.spec.containers if c.name == "app").env] == ["B"]
    assert patched.metadata.labels == {"a": "1", "b": "2"}

    code, _, merged = raw(sim_api, "PATCH", base, {"metadata": {"labels": {"a": None}}},
                          headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200 and merged["metadata"]["labels"] == {"b": "2"}
    code, _, jp = raw(sim_api, "PATCH", base,
                      [{"op": "add", "path": "/metadata/labels/c", "value": "3"},
                       {"op": "replace", "path": "/metadata/labels/b", "value": "20"},
                       {"op": "remove", "path": "/spec/template/spec/containers/1"}],
                      headers={"Content-Type": "application/json-patch+json"})
    assert code == 200 and jp["metadata"]["labels"] == {"b": "20", "c": "3"}
    assert [c["name"] for c in jp["spec"]["template"]["spec"]["containers"]] == ["app"]
    code, _, failed = raw(sim_api, "PATCH", base,
                          [{"op": "test", "path": "/metadata/labels/c", "value": "nope"}],
                          headers={"Content-Type": "application/json-patch+json"})
    assert code == 422 and failed["reason"] == "Invalid"
    code, _, unsupported = raw(sim_api, "PATCH", base, {}, headers={"Content-Type": "application/xml"})
    assert code == 415 and unsupported["reason"] == "UnsupportedMediaType"


def test_strategic_patch_on_node_taints_replaces_the_list(api_client: Any, sim_api: SimApi) -> None:
    add_node(sim_api.store, node("n1", taints=[{"key": "a", "value": "1", "effect": "NoSchedule"}]))
    v1 = k8s.CoreV1Api(api_client)
    patched = v1.patch_node("n1", {"spec": {"taints": [{"key": "b", "value": "2", "effect": "NoExecute"}]}})
    assert [(t.key, t.effect) for t in patched.spec.taints] == [("b", "NoExecute")]
    # node status through the status subresource: a JSON patch of fake GPU capacity (design B2)
    code, _, n = raw(sim_api, "PATCH", "/api/v1/nodes/n1/status",
                     [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "4"}],
                     headers={"Content-Type": "application/json-patch+json"})
    assert code == 200 and n["status"]["capacity"]["nvidia.com/gpu"] == "4"
    # the main resource ignores status changes
    v1.patch_node("n1", {"status": {"capacity": {"nvidia.com/gpu": "9"}}})
    assert v1.read_node("n1").status.capacity["nvidia.com/gpu"] == "4"


def test_strategic_patch_on_a_custom_resource_is_415(sim_api: SimApi) -> None:
    sim_api.store.create({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
                          "metadata": {"name": "m", "namespace": "default"}, "spec": {"storageUri": "gs://x"}})
    code, _, body = raw(sim_api, "PATCH", "/apis/mlops.seldon.io/v1alpha1/namespaces/default/models/m",
                        {"spec": {"replicas": 2}}, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


# ---------------------------------------------------------------- dynamic client and custom resources
def test_dynamic_client_custom_resources_with_status(api_client: Any) -> None:
    dyn = DynamicClient(api_client)
    servers = dyn.resources.get(api_version="mlops.seldon.io/v1alpha1", kind="Server")
    created = servers.create(body={"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server",
                                   "metadata": {"name": "gpu-srv"},
                                   "spec": {"serverConfig": "mlserver", "replicas": 1}}, namespace="default")
    assert created.metadata.uid
    servers.status.patch(name="gpu-srv", namespace="default", content_type="application/merge-patch+json",
                         body={"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    got = servers.get(name="gpu-srv", namespace="default")
    assert got.status.conditions[0].type == "Ready"
    # a spec update keeps the status (status subresource semantics) and bumps generation
    servers.patch(name="gpu-srv", namespace="default", content_type="application/merge-patch+json",
                  body={"spec": {"replicas": 2}, "status": {"conditions": []}})
    got = servers.get(name="gpu-srv", namespace="default")
    assert got.spec.replicas == 2 and got.metadata.generation == 2 and len(got.status.conditions) == 1
    assert [s.metadata.name for s in servers.get(namespace="default").items] == ["gpu-srv"]
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    assert crds.get().items == []  # the API layer alone: SimCluster publishes the Seldon CRDs
    nodes = dyn.resources.get(api_version="v1", kind="Node")
    assert nodes.get().items == []


# ---------------------------------------------------------------- cascade, dryRun, validation
def test_owner_reference_cascade_and_orphan(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    owner = v1.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    v1.create_namespaced_config_map("default", {"metadata": {"name": "child", "ownerReferences": [ref]}})
    grandchild_ref = {**ref, "name": "child", "uid": v1.read_namespaced_config_map("child", "default").metadata.uid}
    sim_api.store.create(pod("gc", containers=None) | {"metadata": {"name": "gc", "namespace": "default",
                                                                  "ownerReferences": [grandchild_ref]}})
    v1.delete_namespaced_config_map("owner", "default", propagation_policy="Background")
    assert [c.metadata.name for c in v1.list_namespaced_config_map("default").items] == []
    assert v1.list_namespaced_pod("default").items == []

    owner = v1.create_namespaced_config_map("default", {"metadata": {"name": "owner2"}})
    ref = {**ref, "name": "owner2", "uid": owner.metadata.uid}
    v1.create_namespaced_config_map("default", {"metadata": {"name": "kept", "ownerReferences": [ref]}})
    v1.delete_namespaced_config_map("owner2", "default", propagation_policy="Orphan")
    assert [c.metadata.name for c in v1.list_namespaced_config_map("default").items] == ["kept"]


def test_namespace_delete_removes_its_objects(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespace({"metadata": {"name": "gone"}})
    v1.create_namespaced_config_map("gone", {"metadata": {"name": "x"}})
    v1.delete_namespace("gone")
    assert v1.list_config_map_for_all_namespaces(field_selector="metadata.namespace=gone").items == []


def test_dry_run_validates_and_defaults_but_stores_nothing(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    before = sim_api.store.resource_version
    result = v1.create_namespaced_pod("default", pod("dry", containers=[
        {"name": "c", "image": "x:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]), dry_run="All")
    assert result.spec.containers[0].resources.requests == {"nvidia.com/gpu": "1"}  # defaulted from the limit
    assert result.status.phase == "Pending"
    assert sim_api.store.resource_version == before
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_pod("dry", "default")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as invalid:
        v1.create_namespaced_pod("default", pod("dry", containers=[
            {"name": "c", "image": "x:1", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]), dry_run="All")
    assert invalid.value.status == 422


STS_MESSAGE = ('StatefulSet.apps "x" is invalid: spec.template.spec.containers[0].resources.requests[nvidia.com/gpu]: '
               'Invalid value: "1": must be equal to nvidia.com/gpu limit of 2')


def _sts(resources: Obj) -> Obj:
    return {"metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x",
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i:1", "resources": resources}]}}}}


@pytest.mark.parametrize(("resources", "message"), [
    ({"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}, STS_MESSAGE),
    ({"requests": {"nvidia.com/gpu": "1"}},
     'StatefulSet.apps "x" is invalid: spec.template.spec.containers[0].resources.limits: Required value: '
     "Limit must be set for non overcommitable resources"),
    ({"requests": {"nvidia.com/gpu": "500m"}, "limits": {"nvidia.com/gpu": "500m"}},
     'StatefulSet.apps "x" is invalid: [spec.template.spec.containers[0].resources.requests[nvidia.com/gpu]: '
     'Invalid value: "500m": must be an integer, spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]: '
     'Invalid value: "500m": must be an integer]'),
])
def test_extended_resource_validation_message(api_client: Any, resources: Obj, message: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_stateful_set("default", _sts(resources))
    status = body_of(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"] == message
    assert status["details"]["kind"] == "StatefulSet" and status["details"]["group"] == "apps"
    assert status["details"]["causes"]


def test_extended_resource_limit_only_and_cpu_over_commit_are_accepted(api_client: Any) -> None:
    apps = k8s.AppsV1Api(api_client)
    sts = apps.create_namespaced_stateful_set("default", _sts(
        {"limits": {"nvidia.com/gpu": "2", "cpu": "2"}, "requests": {"cpu": "100m"}}))
    assert sts.spec.template.spec.containers[0].resources.requests == {"nvidia.com/gpu": "2", "cpu": "100m"}


# ---------------------------------------------------------------- pod subresources
def test_pod_log_current_previous_and_tail(sim_api: SimApi, api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    sim_api.store.create(pod("lg", containers=[{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]))
    sim_api.store.append_log("default", "lg", "a", "one\ntwo\nthree\n")
    assert v1.read_namespaced_pod_log("lg", "default", container="a") == "one\ntwo\nthree\n"
    assert v1.read_namespaced_pod_log("lg", "default", container="a", tail_lines=1) == "three\n"
    with pytest.raises(ApiException) as which:
        v1.read_namespaced_pod_log("lg", "default")
    assert which.value.status == 400 and "choose one of: [a b]" in body_of(which.value)["message"]
    with pytest.raises(ApiException) as prev:
        v1.read_namespaced_pod_log("lg", "default", container="a", previous=True)
    assert prev.value.status == 400
    sim_api.store.rotate_log("default", "lg", "a")
    sim_api.store.append_log("default", "lg", "a", "after restart\n")
    assert v1.read_namespaced_pod_log("lg", "default", container="a", previous=True) == "one\ntwo\nthree\n"
    assert v1.read_namespaced_pod_log("lg", "default", container="a") == "after restart\n"


def test_binding_sets_node_name_once(sim_api: SimApi, api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    sim_api.store.create(pod("bd"))
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bd"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    code, _, _ = raw(sim_api, "POST", "/api/v1/namespaces/default/pods/bd/binding", body)
    assert code == 201 and v1.read_namespaced_pod("bd", "default").spec.node_name == "n1"
    code, _, again = raw(sim_api, "POST", "/api/v1/namespaces/default/pods/bd/binding", body)
    assert code == 409 and again["reason"] == "Conflict"
    with pytest.raises(ApiException) as immutable:
        v1.patch_namespaced_pod("bd", "default", {"spec": {"nodeName": "n2"}})
    assert immutable.value.status == 422


def test_pod_status_subresource(sim_api: SimApi, api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    sim_api.store.create(pod("st"))
    v1.patch_namespaced_pod_status("st", "default", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}})
    got = v1.read_namespaced_pod_status("st", "default")
    assert got.status.phase == "Running" and got.status.conditions[0].status == "True"


# ---------------------------------------------------------------- tables
def test_table_output_for_pods_and_nodes(sim_api: SimApi) -> None:
    add_node(sim_api.store, node("gpu-1", gpus=2, labels={"node-role.kubernetes.io/worker": ""}))
    sim_api.store.create(pod("tb", node_name="gpu-1"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, _, table = raw(sim_api, "GET", "/api/v1/namespaces/default/pods", headers={"Accept": accept})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:3] == ["tb", "0/1", "Pending"] and table["rows"][0]["cells"][6] == "gpu-1"
    _, _, nodes = raw(sim_api, "GET", "/api/v1/nodes", headers={"Accept": accept})
    assert nodes["rows"][0]["cells"][:3] == ["gpu-1", "Ready", "worker"]


# ---------------------------------------------------------------- fault injection
def test_fault_500_then_recovers(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    sim_api.faults.fail_next("list", "pods", count=2, code=500)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            v1.list_namespaced_pod("default")
        assert exc.value.status == 500 and body_of(exc.value)["reason"] == "InternalError"
    assert v1.list_namespaced_pod("default").items == []
    assert sim_api.faults.injected == 2


def test_fault_429_with_retry_after_only_for_the_named_object(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "hot"}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "cold"}})
    sim_api.faults.fail_next("get", "configmaps", "hot", code=429, retry_after=7)
    assert v1.read_namespaced_config_map("cold", "default").metadata.name == "cold"
    code, headers, status = raw(sim_api, "GET", "/api/v1/namespaces/default/configmaps/hot")
    assert code == 429 and headers["Retry-After"] == "7"
    assert status["reason"] == "TooManyRequests" and status["details"]["retryAfterSeconds"] == 7
    assert v1.read_namespaced_config_map("hot", "default").metadata.name == "hot"


def test_the_real_client_honours_retry_after(api_client: Any, sim_api: SimApi) -> None:
    # urllib3 (under the kubernetes client) retries a 429 after the Retry-After it was given
    v1 = k8s.CoreV1Api(api_client)
    sim_api.faults.fail_next("list", "configmaps", code=429, retry_after=1)
    start = time.monotonic()
    assert v1.list_namespaced_config_map("default").items == []
    assert time.monotonic() - start >= 0.9 and sim_api.faults.injected == 1


def test_dropped_watch_ends_the_stream(api_client: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api_client)
    w = k8s_watch.Watch()
    events: list[str] = []
    done = threading.Event()

    def consume() -> None:
        for event in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=30):
            events.append(event["type"])
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not sim_api.store._watches:  # bounded: until the watch is open
        done.wait(0.02)
    assert sim_api.faults.drop_watches("configmaps") == 1
    assert done.wait(5), "the watch stream did not end after the drop"
    assert sim_api.faults.drop_watches("configmaps") == 0


def test_read_only_resources_refuse_writes(sim_api: SimApi) -> None:
    code, _, body = raw(sim_api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                        {"metadata": {"name": "x.example.com"}})
    assert code == 405 and body["reason"] == "MethodNotAllowed"


def test_keep_alive_survives_an_error_before_the_body_was_read(sim_api: SimApi) -> None:
    import http.client

    sim_api.faults.fail_next("create", "configmaps", code=500)
    conn = http.client.HTTPConnection("127.0.0.1", sim_api.server.port, timeout=10)
    try:
        body = json.dumps({"metadata": {"name": "k1"}})
        for expected in (500, 201):  # the same connection: the first body must not leak into the second request
            conn.request("POST", "/api/v1/namespaces/default/configmaps", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
        conn.request("POST", "/api/v1/namespaces/default/nosuchthings", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.request("GET", "/api/v1/namespaces/default/configmaps/k1")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["metadata"]["name"] == "k1"
    finally:
        conn.close()


def test_protobuf_bodies_are_refused_with_415(sim_api: SimApi) -> None:
    req = urllib.request.Request(sim_api.url + "/api/v1/namespaces", data=b"k8s\x00\n\x0b", method="POST",
                                 headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 415 and json.loads(exc.value.read())["reason"] == "UnsupportedMediaType"


TYPO_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo", "labelz": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i:1", "imagePullPolcy": "Always"}]}}


def test_strict_field_validation_rejects_unknown_fields(sim_api: SimApi) -> None:
    code, _, status = raw(sim_api, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict", TYPO_POD)
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                                 'unknown field "metadata.labelz", unknown field "spec.containers[0].imagePullPolcy"')
    assert sim_api.store.get("v1", "Pod", "typo", "default") is None


def test_unknown_fields_are_dropped_with_a_warning_by_default(sim_api: SimApi) -> None:
    code, _, created = raw(sim_api, "POST", "/api/v1/namespaces/default/pods", TYPO_POD)
    assert code == 201
    assert "labelz" not in created["metadata"] and "imagePullPolcy" not in created["spec"]["containers"][0]
    req = urllib.request.Request(sim_api.url + "/api/v1/namespaces/default/configmaps", method="POST",
                                 data=json.dumps({"metadata": {"name": "w"}, "datta": {"a": "1"}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers.get_all("Warning") == ['299 - "unknown field \\"datta\\""']
    # patches are checked too; custom resources by their CRD schema where the CRD files are present
    code, _, status = raw(sim_api, "PATCH", "/api/v1/namespaces/default/pods/typo?fieldValidation=Strict",
                          {"spec": {"nodeSelectr": {"a": "b"}}},
                          headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 400 and 'unknown field "spec.nodeSelectr"' in status["message"]
    code, _, model = raw(sim_api, "POST", "/apis/mlops.seldon.io/v1alpha1/namespaces/default/models"
                         "?fieldValidation=Strict",
                         {"metadata": {"name": "m"}, "spec": {"storageUri": "x", "extra": 1}})
    from harness.sim.api import crdschema

    if crdschema.crd_dir() is None:
        assert code == 201 and model["spec"]["extra"] == 1  # no schema to prune by
    else:
        assert code == 400 and 'unknown field "spec.extra"' in model["message"]


def test_table_output_for_seldon_models(sim_api: SimApi) -> None:
    sim_api.store.create({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
                          "metadata": {"name": "iris", "namespace": "default"}, "spec": {"storageUri": "gs://x"}})
    sim_api.store.patch("mlops.seldon.io/v1alpha1", "Model", "iris", "default", {"status": {
        "availableReplicas": 1, "conditions": [{"type": "Ready", "status": "True"}]}}, "merge", "status")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, _, table = raw(sim_api, "GET", "/apis/mlops.seldon.io/v1alpha1/namespaces/default/models",
                      headers={"Accept": accept})
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Ready", "Desired Replicas", "Available Replicas", "Age"]
    assert table["rows"][0]["cells"][:4] == ["iris", "True", 1, 1]


def test_concurrent_writers_and_watchers_see_every_change(api_client: Any, sim_api: SimApi) -> None:
    from concurrent.futures import ThreadPoolExecutor

    v1 = k8s.CoreV1Api(api_client)
    start_rv = v1.list_namespaced_config_map("default").metadata.resource_version
    n_writers, per_writer = 8, 10

    def write(i: int) -> None:
        for j in range(per_writer):
            v1.create_namespaced_config_map("default", {"metadata": {"name": f"c-{i}-{j}", "labels": {"w": str(i)}}})
            v1.patch_namespaced_config_map(f"c-{i}-{j}", "default", {"data": {"j": str(j)}})

    def watch_all() -> int:
        seen = 0
        for _ in k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=start_rv,
                                          timeout_seconds=20):
            seen += 1
            if seen == 2 * n_writers * per_writer:
                break
        return seen

    with ThreadPoolExecutor(max_workers=n_writers + 3) as pool:
        watchers = [pool.submit(watch_all) for _ in range(3)]
        list(pool.map(write, range(n_writers)))
        assert [w.result(timeout=30) for w in watchers] == [2 * n_writers * per_writer] * 3
    assert len(v1.list_namespaced_config_map("default", label_selector="w in (0,7)").items) == 2 * per_writer
