"""422 Invalid for core and apps kinds, as kube-apiserver answers, through the real `kubernetes` client.

Sources (kubernetes/kubernetes, commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282):
pkg/apis/core/validation/validation.go (`validateNodeTaints`, `ValidateTolerations`,
`ValidateNodeSelectorRequirement`, `ValidateNodeUpdate` with `ValidateResourceQuantityValue`,
`ValidateConfigMapUpdate`) and pkg/apis/apps/validation/validation.go (`ValidateDeploymentSpec`,
`ValidateStatefulSetUpdate`). Each row sends one object and expects the field and the wording.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.kit.sim_fixtures import SimApi, add_node, node, pod

Obj = dict[str, Any]


def _status(exc: ApiException) -> Obj:
    return dict(json.loads(exc.body))


def tainted(*taints: Obj) -> Obj:
    return node("tainted", taints=list(taints))


def tolerating(*tolerations: Obj) -> Obj:
    body = pod("tol")
    body["spec"]["tolerations"] = list(tolerations)
    return body


def requiring(*expressions: Obj) -> Obj:
    body = pod("aff")
    body["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}
    return body


def deployment(selector: Obj, labels: dict[str, str]) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
            "spec": {"selector": selector, "template": {"metadata": {"labels": labels},
                                                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}


def _create(api: Any, obj: Obj) -> None:
    if obj["kind"] == "Node":
        k8s.CoreV1Api(api).create_node(obj)
    elif obj["kind"] == "Pod":
        k8s.CoreV1Api(api).create_namespaced_pod("default", obj)
    else:
        k8s.AppsV1Api(api).create_namespaced_deployment("default", obj)


CREATES: list[tuple[str, Obj, str]] = [
    ("taint-effect-unsupported", tainted({"key": "a", "effect": "NoRun"}),
     'spec.taints[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", "PreferNoSchedule", '
     '"NoExecute"'),
    ("taint-duplicate", tainted({"key": "a", "value": "1", "effect": "NoSchedule"},
                                {"key": "a", "value": "2", "effect": "NoSchedule"}),
     'spec.taints[1]: Duplicate value: core.Taint{Key:"a", Value:"2", Effect:"NoSchedule", TimeAdded:<nil>}: '
     "taints must be unique by key and effect pair"),
    ("toleration-operator", tolerating({"key": "a", "operator": "In", "value": "b"}),
     'spec.tolerations[0].operator: Unsupported value: "In": supported values: "Equal", "Exists"'),
    ("toleration-exists-with-value", tolerating({"key": "a", "operator": "Exists", "value": "b"}),
     "value must be empty when `operator` is 'Exists'"),
    ("toleration-effect", tolerating({"key": "a", "operator": "Exists", "effect": "NoRun"}),
     'spec.tolerations[0].effect: Unsupported value: "NoRun"'),
    ("toleration-seconds-without-noexecute",
     tolerating({"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}),
     "spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
     "`tolerationSeconds` is set"),
    ("toleration-empty-key-equal", tolerating({"operator": "Equal", "value": "b"}),
     "operator must be Exists when `key` is empty"),
    ("affinity-in-without-values", requiring({"key": "pool", "operator": "In"}),
     "matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    ("affinity-exists-with-values", requiring({"key": "pool", "operator": "Exists", "values": ["x"]}),
     "matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    ("affinity-gt-two-values", requiring({"key": "n", "operator": "Gt", "values": ["1", "2"]}),
     "must be specified single value when `operator` is 'Lt' or 'Gt'"),
    ("affinity-operator", requiring({"key": "n", "operator": "Equals", "values": ["1"]}),
     'matchExpressions[0].operator: Invalid value: "Equals": not a valid selector operator'),
    ("deployment-selector-mismatch", deployment({"matchLabels": {"app": "a"}}, {"app": "b"}),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"b"}: `selector` does not match '
     "template `labels`"),
]


@pytest.mark.parametrize(("case", "obj", "message"), CREATES, ids=[c[0] for c in CREATES])
def test_create_is_refused_with_the_apiservers_words(api_client: Any, case: str, obj: Obj, message: str) -> None:
    with pytest.raises(ApiException) as refused:
        _create(api_client, obj)
    assert refused.value.status == 422, refused.value.body
    assert message in _status(refused.value)["message"]


def _fractional_gpu(api: Any, sim_api: SimApi) -> None:
    add_node(sim_api.store, node("frac", gpus=1))
    k8s.CoreV1Api(api).patch_node_status("frac", {"status": {"capacity": {"nvidia.com/gpu": "1500m"}}})


def _immutable_configmap(api: Any, sim_api: SimApi) -> None:
    v1 = k8s.CoreV1Api(api)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "frozen"}, "data": {"a": "1"},
                                                "immutable": True})
    v1.patch_namespaced_config_map("frozen", "default", {"data": {"a": "2"}})


def _statefulset_volume_claims(api: Any, sim_api: SimApi) -> None:
    apps = k8s.AppsV1Api(api)
    labels = {"app": "s"}
    apps.create_namespaced_stateful_set("default", {
        "metadata": {"name": "s"}, "spec": {"selector": {"matchLabels": labels}, "serviceName": "s",
                                            "template": {"metadata": {"labels": labels},
                                                         "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})
    apps.patch_namespaced_stateful_set("s", "default", {"spec": {"serviceName": "other"}})


UPDATES: list[tuple[str, Callable[[Any, SimApi], None], str]] = [
    ("node-capacity-fractional-gpu", _fractional_gpu,
     'status.capacity.nvidia.com/gpu: Invalid value: "1500m": must be an integer'),
    ("immutable-configmap-data", _immutable_configmap, "data: Forbidden: field is immutable when `immutable` is set"),
    ("statefulset-forbidden-field", _statefulset_volume_claims,
     "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
     "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
     "are forbidden"),
]


@pytest.mark.parametrize(("case", "act", "message"), UPDATES, ids=[c[0] for c in UPDATES])
def test_update_is_refused_with_the_apiservers_words(api_client: Any, sim_api: SimApi, case: str,
                                                     act: Callable[[Any, SimApi], None], message: str) -> None:
    with pytest.raises(ApiException) as refused:
        act(api_client, sim_api)
    assert refused.value.status == 422, refused.value.body
    assert message in _status(refused.value)["message"]


def test_valid_objects_still_pass(api_client: Any) -> None:
    """The rules refuse only what upstream refuses: the harness's own shapes are accepted."""
    v1 = k8s.CoreV1Api(api_client)
    v1.create_node(node("ok", taints=[{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoExecute"}]))
    body = tolerating({"operator": "Exists"}, {"key": "a", "operator": "Exists", "effect": "NoExecute",
                                               "tolerationSeconds": 3})
    body["spec"]["affinity"] = requiring({"key": "n", "operator": "Gt", "values": ["1"]},
                                         {"key": "p", "operator": "DoesNotExist"})["spec"]["affinity"]
    v1.create_namespaced_pod("default", body)
