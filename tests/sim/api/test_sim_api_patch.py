"""Pure parts of the simulated API: strategic merge directives, JSON patch, selectors, quantities."""

from __future__ import annotations

from typing import Any

import pytest

from harness.k8s.quantity import parse_quantity
from harness.sim.api.patch import json_patch, merge_patch, strategic_merge_patch
from harness.sim.api.selectors import parse_field_selector, parse_label_selector
from harness.sim.api.validation import is_extended_resource
from harness.sim.contracts import ApiError

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "name": "http"}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "side", "image": "side:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "t1", "operator": "Exists"}],
    },
}


def test_containers_merge_by_name_and_ports_by_container_port() -> None:
    out = strategic_merge_patch(POD, {"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9000}]},
        {"name": "new", "image": "new:1"}]}})
    names = [c["name"] for c in out["spec"]["containers"]]
    assert names == ["app", "side", "new"]
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "web"}, {"containerPort": 9000}]
    assert POD["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http"}]  # input untouched


def test_tolerations_are_replaced_not_merged() -> None:
    out = strategic_merge_patch(POD, {"spec": {"tolerations": [{"key": "t2", "operator": "Exists"}]}})
    assert out["spec"]["tolerations"] == [{"key": "t2", "operator": "Exists"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9000}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9000}, {"port": 443}]


def test_directives() -> None:
    out = strategic_merge_patch(POD, {
        "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]},
        "spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                 "containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}],
                 "volumes": [{"name": "cache", "emptyDir": {}}, {"$patch": "replace"}]}})
    assert out["metadata"]["finalizers"] == ["y"]
    assert [e["name"] for e in out["spec"]["containers"][0]["env"]] == ["B"]
    assert out["spec"]["volumes"] == [{"name": "cache", "emptyDir": {}}]
    replaced = strategic_merge_patch(POD, {"spec": {"$patch": "replace", "containers": []}})
    assert replaced["spec"] == {"containers": []}
    retained = strategic_merge_patch({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"x": 1}}}},
                                     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert retained["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(ApiError) as exc:
        strategic_merge_patch(POD, {"spec": {"containers": [{"image": "no-name"}]}})
    assert exc.value.code == 400


def test_merge_patch_nulls_delete_and_lists_replace() -> None:
    out = merge_patch(POD, {"metadata": {"labels": {"a": None, "b": "2"}}, "spec": {"volumes": []}})
    assert out["metadata"]["labels"] == {"b": "2"} and out["spec"]["volumes"] == []


# RFC 7386 Appendix A, "Example Test Cases": (original, patch, result).
RFC7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC7386_CASES)
def test_merge_patch_follows_the_rfc_examples_and_changes_neither_input(original: Any, patch: Any,
                                                                          result: Any) -> None:
    before = (repr(original), repr(patch))
    out = merge_patch(original, patch)
    assert out == result
    assert (repr(original), repr(patch)) == before
    if isinstance(out, dict) and isinstance(original, dict):
        for key, value in out.items():  # nothing in the result is shared with the inputs
            assert value is not original.get(key) or not isinstance(value, (dict, list))


def test_json_patch_ops_and_failures() -> None:
    doc = {"a": {"b": [1, 2]}, "x": 1}
    out = json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "move", "from": "/x", "path": "/y"},
                           {"op": "copy", "from": "/y", "path": "/z"}, {"op": "test", "path": "/z", "value": 1}])
    assert out == {"a": {"b": [1, 2, 3]}, "y": 1, "z": 1}
    for bad in ([{"op": "remove", "path": "/nope"}], [{"op": "frobnicate", "path": "/a"}], {"op": "add"}):
        with pytest.raises(ApiError):
            json_patch(doc, bad)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=1", {"a": "1"}, True), ("a==1", {"a": "2"}, False), ("a!=1", {}, True), ("a in (1, 2)", {"a": "2"}, True),
    ("a notin (1)", {}, True), ("a notin (1)", {"a": "1"}, False), ("a", {"a": ""}, True), ("!a", {"a": ""}, False),
    ("a=1,b in (x,y),!c", {"a": "1", "b": "y"}, True), ("a=1,b in (x,y),!c", {"a": "1", "b": "y", "c": ""}, False),
    ("", {"whatever": "1"}, True), ("pool=infer-srv", {"pool": "infer-srv"}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labels) is expected


def test_bad_selectors_are_400() -> None:
    for bad in ("a in 1", "=x"):
        with pytest.raises(ApiError) as exc:
            parse_label_selector(bad)
        assert exc.value.code == 400
    with pytest.raises(ApiError):
        parse_field_selector("spec.bogus=1")
    assert parse_field_selector("spec.unschedulable=true")({"spec": {"unschedulable": True}})


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("500m", 0.5), ("1Gi", 2**30), ("2k", 2000), ("1e3", 1000)])
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


def test_extended_resource_names() -> None:
    assert is_extended_resource("nvidia.com/gpu") and not is_extended_resource("cpu")
    assert not is_extended_resource("kubernetes.io/something") and not is_extended_resource("hugepages-2Mi")
