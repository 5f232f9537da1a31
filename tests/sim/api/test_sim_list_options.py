"""List and watch options as kube-apiserver answers them, through the real `kubernetes` client.

Sources (kubernetes/kubernetes, commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282):
- staging/src/k8s.io/apimachinery/pkg/apis/meta/internalversion/validation/validation.go
  `ValidateListOptions`: resourceVersionMatch needs a resourceVersion (422); Exact serves that version
  (etcd3 store: 410 once compacted);
- field selectors per kind: pkg/registry/core/*/strategy.go `ToSelectableFields` (custom resources:
  metadata.name and metadata.namespace only, apiextensions-apiserver);
- staging/src/k8s.io/apiserver/pkg/storage/names/generate.go: generateName is cut to 58 characters + 5;
- staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go: the watch cache starts at the server's
  start and keeps a bounded window per resource, so a watch from resourceVersion 1 is 410 Expired;
- scale subresource of StatefulSets (pkg/registry/apps/statefulset/storage/storage.go `ScaleREST`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

Obj = dict[str, Any]


def _message(exc: ApiException) -> str:
    return str(json.loads(exc.body)["message"])


LIST_REFUSALS = [
    ("match-without-version", {"resource_version_match": "Exact"}, 422,
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden '
     "unless resourceVersion is provided"),
    ("exact-at-zero", {"resource_version_match": "Exact", "resource_version": "0"}, 422,
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("unsupported-match", {"resource_version_match": "Newest", "resource_version": "5"}, 422,
     'resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""'),
    ("pod-field-unknown", {"field_selector": "spec.foo=x"}, 400, "field label not supported: spec.foo"),
    ("configmap-has-no-node-name", {"field_selector": "spec.nodeName=n1"}, 400,
     "field label not supported: spec.nodeName"),
]


@pytest.mark.parametrize(("case", "params", "code", "message"), LIST_REFUSALS, ids=[c[0] for c in LIST_REFUSALS])
def test_list_options_are_validated(api_client: Any, case: str, params: Obj, code: int, message: str) -> None:
    v1 = k8s.CoreV1Api(api_client)
    lister = v1.list_namespaced_config_map if case == "configmap-has-no-node-name" else v1.list_namespaced_pod
    with pytest.raises(ApiException) as refused:
        lister("default", **params)
    assert refused.value.status == code and message in _message(refused.value)


def test_seldon_kinds_select_only_by_name_and_namespace(api_client: Any) -> None:
    crs = k8s.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as refused:
        crs.list_namespaced_custom_object("mlops.seldon.io", "v1alpha1", "default", "models",
                                          field_selector="spec.server=x")
    assert refused.value.status == 400
    assert _message(refused.value) == ('"spec.server" is not a known field selector: only "metadata.name", '
                                       '"metadata.namespace"')
    crs.list_namespaced_custom_object("mlops.seldon.io", "v1alpha1", "default", "models",
                                      field_selector="metadata.name=x")


def test_exact_lists_the_state_at_that_version(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "ex-a"}, "data": {"v": "1"}})
    at = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.patch_namespaced_config_map("ex-a", "default", {"data": {"v": "2"}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "ex-b"}})
    then = v1.list_namespaced_config_map("default", resource_version=at, resource_version_match="Exact")
    names = {c.metadata.name: c for c in then.items}
    assert then.metadata.resource_version == at
    assert "ex-b" not in names and names["ex-a"].data == {"v": "1"}
    now = v1.list_namespaced_config_map("default", resource_version=at, resource_version_match="NotOlderThan")
    assert "ex-b" in {c.metadata.name for c in now.items}


def test_a_watch_from_resource_version_one_is_expired(api_client: Any) -> None:
    v1 = k8s.CoreV1Api(api_client)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    with pytest.raises(ApiException) as expired:
        for _ in k8s_watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version="1",
                                          timeout_seconds=2):
            pass
    assert expired.value.status == 410


def test_generate_name_is_cut_to_its_limit(api_client: Any) -> None:
    created = k8s.CoreV1Api(api_client).create_namespaced_config_map(
        "default", {"metadata": {"generateName": "g" * 70}})
    name = created.metadata.name
    assert len(name) == 63 and name.startswith("g" * 58)
    assert all(ch in "bcdfghjklmnpqrstvwxz2456789" for ch in name[58:])


def test_statefulset_scale_subresource(api_client: Any) -> None:
    apps = k8s.AppsV1Api(api_client)
    labels = {"app": "sc"}
    apps.create_namespaced_stateful_set("default", {
        "metadata": {"name": "sc"}, "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "serviceName": "sc",
                                             "template": {"metadata": {"labels": labels},
                                                          "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})
    scale = apps.read_namespaced_stateful_set_scale("sc", "default")
    assert (scale.spec.replicas, scale.status.selector) == (1, "app=sc")
    apps.patch_namespaced_stateful_set_scale("sc", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_stateful_set("sc", "default").spec.replicas == 3
