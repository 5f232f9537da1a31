"""Seldon custom objects through the real client's CustomObjectsApi: create a Server or a Model, read one, wait for a
condition. For the tests of the simulated Seldon control plane (tests/sim/seldon/)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.kit.sim_fixtures import Waiter

Obj = dict[str, Any]


GROUP = "mlops.seldon.io"


VERSION = "v1alpha1"


NS = "seldon-mesh"


IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"


def get_object(crs: k8s.CustomObjectsApi, plural: str, name: str) -> Obj | None:
    try:
        obj: Obj = crs.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def cond(obj: Obj | None, ctype: str) -> Obj:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def until(waiter: Waiter, crs: k8s.CustomObjectsApi, plural: str, name: str, what: str,
           pred: Callable[[Obj | None], bool]) -> Obj:
    def probe() -> tuple[bool, Any]:
        obj = get_object(crs, plural, name)
        return pred(obj), (obj or {}).get("status")
    waiter.until(probe, f"{plural}/{name} {what}")
    obj = get_object(crs, plural, name)
    assert obj is not None
    return obj


def make_server(crs: k8s.CustomObjectsApi, waiter: Waiter, name: str, replicas: int, caps: list[str]) -> Obj:
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, "servers", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Server", "metadata": {"name": name},
        "spec": {"serverConfig": "mlserver", "replicas": replicas, "extraCapabilities": caps}})
    return until(waiter, crs, "servers", name, "Ready", lambda o: cond(o, "Ready").get("status") == "True")


def make_model(crs: k8s.CustomObjectsApi, name: str, **spec: Any) -> None:
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, "models", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name},
        "spec": {"storageUri": IRIS, **spec}})


def model_state(state: str) -> Callable[[Obj | None], bool]:
    return lambda o: cond(o, "ModelReady").get("message") == state
