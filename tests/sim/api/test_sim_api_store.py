"""The object store on its own (what controllers use in-process)."""

from __future__ import annotations

import pytest

from harness.sim.api.store import MemoryStore
from harness.sim.contracts import ApiError


def cm(name: str, **meta: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", **meta}}


def test_rolling_history_compaction_gives_410() -> None:
    s = MemoryStore(history_limit=5)
    rv0 = s.resource_version
    for i in range(10):
        s.create(cm(f"c{i}"))
    with pytest.raises(ApiError) as gone:
        s.watch("v1", "ConfigMap", "default", resource_version=str(rv0))
    assert gone.value.code == 410 and gone.value.reason == "Expired"
    w = s.watch("v1", "ConfigMap", "default", resource_version=str(s.resource_version - 3))
    names = []
    for _ in range(3):
        event = w.next(1.0)
        assert event is not None
        names.append(event[1]["metadata"]["name"])
    assert names == ["c7", "c8", "c9"]
    w.close()


def test_update_keeps_status_and_noop_keeps_resource_version() -> None:
    s = MemoryStore()
    pod = s.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                    "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    s.update_status({**pod, "status": {"phase": "Running"}})
    current = s.get("v1", "Pod", "p", "default")
    assert current is not None
    again = s.update({**current, "status": {"phase": "Failed"}})
    assert again["status"]["phase"] == "Running"  # status only through the status subresource
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]  # nothing changed
    with pytest.raises(ApiError) as immutable:  # nodeName is set through the binding subresource only
        s.patch("v1", "Pod", "p", "default", {"spec": {"nodeName": "n1"}}, "merge")
    assert immutable.value.code == 422
    bound = s.patch("v1", "Pod", "p", "default", {"spec": {"nodeName": "n1"}}, "merge", subresource="binding")
    assert bound["spec"]["nodeName"] == "n1" and bound["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as rebind:
        s.patch("v1", "Pod", "p", "default", {"spec": {"nodeName": "n2"}}, "merge", subresource="binding")
    assert rebind.value.code == 409
    with pytest.raises(ApiError) as conflict:
        s.update({**current, "metadata": {**current["metadata"], "labels": {"x": "y"}}})
    assert conflict.value.code == 409


def test_dependents_of_a_deleted_owner_are_collected() -> None:
    s = MemoryStore()
    owner = s.create(cm("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    s.create(cm("child", ownerReferences=[ref]))
    s.delete("v1", "ConfigMap", "owner", "default")
    assert s.get("v1", "ConfigMap", "child", "default") is None
    # a controller acting on a stale view creates a dependent of the gone owner: the GC removes it
    s.create(cm("late", ownerReferences=[ref]))
    assert s.get("v1", "ConfigMap", "late", "default") is None


def test_events_are_deduplicated_and_logs_rotate() -> None:
    s = MemoryStore()
    node = s.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    for _ in range(3):
        s.record_event(node, "NodeNotReady", "Node n1 status is now: NodeNotReady", "Warning", "node-controller")
    events = s.list("v1", "Event", "default", field_selector="involvedObject.name=n1")
    assert len(events) == 1 and events[0]["count"] == 3 and "namespace" not in events[0]["involvedObject"]
    s.append_log("default", "p", "c", "a\n")
    s.rotate_log("default", "p", "c")
    s.append_log("default", "p", "c", "b\n")
    assert s.read_log("default", "p", "c") == "b\n" and s.read_log("default", "p", "c", previous=True) == "a\n"
    assert s.read_log("default", "p", "other") is None


def test_namespaces_bring_a_default_service_account_and_take_their_objects() -> None:
    s = MemoryStore()
    s.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}})
    assert s.get("v1", "ServiceAccount", "default", "t") is not None
    s.create({**cm("x"), "metadata": {"name": "x", "namespace": "t"}})
    s.delete("v1", "Namespace", "t")
    assert s.get("v1", "ConfigMap", "x", "t") is None and s.get("v1", "ServiceAccount", "default", "t") is None
    # Terminating until the namespace controller's pass (harness/sim/namespaces.py) removes it
    assert (s.get("v1", "Namespace", "t") or {}).get("status", {}).get("phase") == "Terminating"
    with pytest.raises(ApiError) as ending:
        s.create({**cm("y"), "metadata": {"name": "y", "namespace": "t"}})
    assert ending.value.code == 403
    s.finish_namespaces()
    with pytest.raises(ApiError) as missing:
        s.create({**cm("y"), "metadata": {"name": "y", "namespace": "t"}})
    assert missing.value.code == 404


def test_clone_is_a_deep_copy_of_json_shaped_objects() -> None:
    from harness.sim.api.store import clone

    inner = {"k": [1, 2.5, True, None, "s"]}
    obj = {"spec": {"a": inner, "b": inner}, "t": (1, {"x": []}), "odd": {1, 2}}
    copied = clone(obj)
    assert copied == obj
    # Nothing mutable is shared with the original: the store hands out copies callers may change.
    assert copied["spec"]["a"] is not inner and copied["spec"]["a"]["k"] is not inner["k"]
    assert copied["t"][1] is not obj["t"][1] and copied["odd"] is not obj["odd"]
    copied["spec"]["a"]["k"].append("new")
    assert inner["k"] == [1, 2.5, True, None, "s"]
    # Aliasing inside the object is dropped, as the JSON round trip of a real API server drops it.
    assert copied["spec"]["b"]["k"] == [1, 2.5, True, None, "s"]


def test_clone_copies_what_marshal_refuses() -> None:
    from harness.sim.api.store import clone

    class Opaque:
        def __init__(self) -> None:
            self.items = [1]

    original = Opaque()
    copied = clone({"o": original})
    assert copied["o"] is not original and copied["o"].items == [1] and copied["o"].items is not original.items


def test_reads_hand_out_copies_of_the_current_version() -> None:
    """Reads copy from a frozen form made at each write: a caller's changes never reach the store,
    and after a write every read sees the new version, never the old frozen one."""
    s = MemoryStore()
    s.create({**cm("frozen"), "data": {"k": "v1"}})
    got = s.get("v1", "ConfigMap", "frozen", "default")
    assert got is not None
    got["data"]["k"] = "changed by the caller"
    (listed,) = [o for o in s.list("v1", "ConfigMap", "default") if o["metadata"]["name"] == "frozen"]
    listed["data"]["extra"] = "also changed"
    assert s.get("v1", "ConfigMap", "frozen", "default")["data"] == {"k": "v1"}  # type: ignore[index]
    s.patch("v1", "ConfigMap", "frozen", "default", {"data": {"k": "v2"}}, "merge")
    assert s.get("v1", "ConfigMap", "frozen", "default")["data"] == {"k": "v2"}  # type: ignore[index]
    assert [o["data"] for o in s.list("v1", "ConfigMap", "default") if o["metadata"]["name"] == "frozen"] == [
        {"k": "v2"}]
    s.delete("v1", "ConfigMap", "frozen", "default")
    assert s.get("v1", "ConfigMap", "frozen", "default") is None
