"""Seldon Core 2 rules the simulated control plane follows (third round), through the real client and kubectl.

Sources (SeldonIO/seldon-core tag v2.10.2, commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce; read, not copied):
- scheduler/pkg/store/utils/validate.go `CheckName` and scheduler/pkg/store/memory.go `UpdateModel`: a model
  name must be a DNS label without dots, else the scheduler refuses it (FailedPrecondition, not retried:
  operator/scheduler/client.go `checkErrorRetryable`), and the model controller writes ModelFailed;
- operator/apis/mlops/v1alpha1/model_types.go `AsSchedulerModel`: `spec.memory` must be a whole number
  of bytes (`Quantity.AsInt64`), "500m" fails the Model;
- scheduler/pkg/scheduler/filters/replicamemory.go and scheduler/pkg/agent/state_manager.go: a replica's
  available memory is its capacity with overcommit less the models already on it;
- operator/controllers/mlops/server_controller.go + operator/internal/utils.go `GetValidatedScalingSpec`:
  a Server with only minReplicas runs minReplicas replicas; an invalid combination is written to the
  Server's status and nothing is deployed;
- operator/config/crd/bases/mlops.seldon.io_models.yaml `subresources.scale` (specReplicasPath
  .spec.replicas, statusReplicasPath .status.replicas, labelSelectorPath .status.selector): `kubectl scale`;
- operator/config/crd/bases: Pipeline, Experiment, SeldonRuntime and SeldonConfig exist upstream; the sim
  refuses them naming the kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from harness.sim.api import crdschema
from harness.sim.cluster import SimCluster
from harness.sim.seldon_schedule import NOT_ENOUGH_REPLICAS
from tests.kit.seldon_objects import (
    GROUP,
    IRIS,
    NS,
    VERSION,
    cond,
    get_object,
    make_model,
    make_server,
    model_state,
    until,
)
from tests.kit.sim_fixtures import Waiter, run_kubectl

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def api(cluster: SimCluster) -> Iterator[Any]:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    try:
        yield client
    finally:
        client.close()


def _server(crs: k8s.CustomObjectsApi, waiter: Waiter, name: str, caps: list[str], replicas: int = 1) -> Obj:
    """The Server `name` (made once per module), Ready."""
    if get_object(crs, "servers", name) is None:
        return make_server(crs, waiter, name, replicas, caps)
    return until(waiter, crs, "servers", name, "Ready", lambda o: cond(o, "Ready").get("status") == "True")


# (case, model name, spec, reason written on ModelReady)
FAILED = [
    ("dotted-name", "iris.v1", {},
     "rpc error: code = FailedPrecondition desc = Model iris.v1 does not have a valid name - it must be "
     "alphanumeric and not contains dots (.)"),
    ("memory-below-one-byte", "mem-milli", {"memory": "500m"},
     "Can't convert model memory quantity to bytes. 500m"),
    ("memory-fractional-bytes", "mem-frac", {"memory": "1.5"},
     "Can't convert model memory quantity to bytes. 1500m"),
]


@pytest.mark.parametrize(("case", "name", "spec", "reason"), FAILED, ids=[c[0] for c in FAILED])
def test_models_seldon_refuses_fail(api: Any, waiter: Waiter, case: str, name: str, spec: Obj,
                                    reason: str) -> None:
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "r3", ["cap-r3"])
    make_model(crs, name, requirements=["cap-r3"], **spec)
    model = until(waiter, crs, "models", name, "ModelFailed", model_state("ModelFailed"))
    assert cond(model, "ModelReady")["reason"] == reason


def test_replica_memory_is_shared_by_the_models_on_it(api: Any, waiter: Waiter) -> None:
    """Two models needing 60 % of a replica (1Gi request x 1.1) each: the second one does not fit."""
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "memsrv", ["cap-mem"])
    make_model(crs, "mem-a", requirements=["cap-mem"], memory="700Mi")
    until(waiter, crs, "models", "mem-a", "ModelAvailable", model_state("ModelAvailable"))
    make_model(crs, "mem-b", requirements=["cap-mem"], memory="700Mi")
    second = until(waiter, crs, "models", "mem-b", "ScheduleFailed", model_state("ScheduleFailed"))
    assert cond(second, "ModelReady")["reason"] == NOT_ENOUGH_REPLICAS
    make_model(crs, "mem-c", requirements=["cap-mem"], memory="300Mi")  # what is left still fits
    until(waiter, crs, "models", "mem-c", "ModelAvailable", model_state("ModelAvailable"))


SERVER_SCALING = [
    ("min-only-runs-min", {"minReplicas": 2}, 2, None),
    ("replicas-below-min", {"replicas": 1, "minReplicas": 2}, None,
     "scaling spec is invalid: number of replicas 1 must be >= min replicas 2"),
]


@pytest.mark.parametrize(("case", "spec", "replicas", "error"), SERVER_SCALING, ids=[c[0] for c in SERVER_SCALING])
def test_server_min_replicas(api: Any, waiter: Waiter, case: str, spec: Obj, replicas: int | None,
                             error: str | None) -> None:
    crs = k8s.CustomObjectsApi(api)
    name = f"scale-{case}"
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, "servers", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Server", "metadata": {"name": name},
        "spec": {"serverConfig": "mlserver", **spec}})
    if error is None:
        server = until(waiter, crs, "servers", name, "Ready", lambda o: cond(o, "Ready").get("status") == "True")
        assert server["status"]["replicas"] == replicas
        sts = k8s.AppsV1Api(api).read_namespaced_stateful_set(name, NS)
        assert sts.spec.replicas == replicas
    else:
        server = until(waiter, crs, "servers", name, "refused",
                        lambda o: cond(o, "StatefulSetOrDeploymentReady").get("status") == "False")
        assert error in json.dumps(cond(server, "StatefulSetOrDeploymentReady"))
        with pytest.raises(ApiException) as none:
            k8s.AppsV1Api(api).read_namespaced_stateful_set(name, NS)
        assert none.value.status == 404
    crs.delete_namespaced_custom_object(GROUP, VERSION, NS, "servers", name)


def test_model_scale_subresource(api: Any, waiter: Waiter, cluster: SimCluster) -> None:
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "scalesrv", ["cap-scale"], replicas=2)
    make_model(crs, "scaled", requirements=["cap-scale"])
    until(waiter, crs, "models", "scaled", "ModelAvailable", model_state("ModelAvailable"))
    scale = crs.get_namespaced_custom_object_scale(GROUP, VERSION, NS, "models", "scaled")
    assert (scale["kind"], scale["spec"], scale["status"]["selector"]) == ("Scale", {}, "server=scalesrv")
    done = run_kubectl(cluster.kubeconfig_path, "-n", NS, "scale", "model/scaled", "--replicas=2")
    assert done.returncode == 0, done.stderr
    model = until(waiter, crs, "models", "scaled", "two replicas",
                   lambda o: ((o or {}).get("status") or {}).get("availableReplicas") == 2)
    assert model["spec"]["replicas"] == 2
    sts_scale = k8s.AppsV1Api(api).read_namespaced_stateful_set_scale("scalesrv", NS)
    assert sts_scale.spec.replicas == 2 and sts_scale.status.selector == "seldon-server-name=scalesrv"


@pytest.mark.parametrize(("plural", "kind"), [("pipelines", "Pipeline"), ("experiments", "Experiment")])
def test_unmodelled_seldon_kinds_are_refused_by_name(api: Any, plural: str, kind: str) -> None:
    crs = k8s.CustomObjectsApi(api)
    with pytest.raises(ApiException) as refused:
        crs.create_namespaced_custom_object(GROUP, VERSION, NS, plural, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "p"}, "spec": {}})
    assert refused.value.status == 404
    assert f"does not model Seldon {kind}" in json.loads(refused.value.body)["message"]


def test_a_malformed_stored_model_fails_alone(api: Any, waiter: Waiter, cluster: SimCluster,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Stored while no schema was enforced (CRD files absent): it fails on its own status and event; the
    controller keeps reconciling the other Models."""
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "r3", ["cap-r3"])
    monkeypatch.setenv("HARNESS_SELDON_CRDS", str(tmp_path / "absent"))
    crdschema.forget()
    try:
        cluster.store.create({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model",
                              "metadata": {"name": "broken", "namespace": NS},
                              "spec": {"storageUri": IRIS, "requirements": ["cap-r3"], "replicas": "two"}})
    finally:
        monkeypatch.undo()
        crdschema.forget()
    broken = until(waiter, crs, "models", "broken", "ModelFailed", model_state("ModelFailed"))
    assert "cannot read this Model" in cond(broken, "ModelReady")["reason"]
    make_model(crs, "healthy", requirements=["cap-r3"])
    until(waiter, crs, "models", "healthy", "ModelAvailable", model_state("ModelAvailable"))
