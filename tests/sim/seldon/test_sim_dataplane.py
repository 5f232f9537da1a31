"""The simulated data plane end to end: a started `SimCluster` with real MLServer processes behind
MLServer-type Server pods, reached through the `seldon-mesh` Service's loopback ingress.

One cluster (and so one MLServer) per module; MLServer takes seconds to start on a busy machine.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from harness.config import parse_profile
from harness.localserver import cached_iris
from harness.render import seldon as render_seldon
from harness.sim.cluster import SimCluster
from harness.sim.dataplane import PodRef
from harness.sim.seldon import SeldonController
from tests.kit.sim_fixtures import Waiter

API = "mlops.seldon.io/v1alpha1"
NS = "seldon-mesh"
IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"
SETOSA = [5.1, 3.5, 1.4, 0.2]
LOAD_TIMEOUT = 150.0  # MLServer start + first load, on a 2-core machine shared with other tests
Obj = dict[str, Any]

PROFILE = {
    "name": "dataplane-test",
    "cluster": {"provider": "sim", "nodes": {"cpu_workers": {"count": 1, "cpu": "8", "memory": "16Gi"},
                                             "gpu_workers": [{"count": 1, "gpus": 2}]}},
    "servers": [{"name": "mlserver-gpu", "gpus": 1, "placement": "nodeAffinity"}],
}



@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    profile = parse_profile(PROFILE, "test-profile")
    sim = SimCluster(profile, tmp_path_factory.mktemp("sim-dataplane"), mlserver=True)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def waiter(cluster: SimCluster) -> Waiter:
    return Waiter(cluster)


@pytest.fixture(scope="module")
def seldon(cluster: SimCluster) -> SeldonController:
    return next(c for c in cluster.controllers if isinstance(c, SeldonController))


@pytest.fixture(scope="module")
def mesh_ports(cluster: SimCluster, waiter: Waiter) -> tuple[int, int]:
    def ingress() -> tuple[bool, Any]:
        svc = cluster.store.get("v1", "Service", "seldon-mesh", NS) or {}
        found = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return bool(found), found
    found = waiter.until(ingress, "seldon-mesh ingress")
    assert found[0]["ip"] == "127.0.0.1"
    http_port, grpc_port = (p["port"] for p in found[0]["ports"])
    return http_port, grpc_port


@pytest.fixture(scope="module")
def iris(cluster: SimCluster, waiter: Waiter) -> Obj:
    """GPU Server (dedicated-node config) with the iris sample loaded: the module's one MLServer."""
    profile = cluster.profile
    cluster.store.create(render_seldon.server(profile, profile.server("mlserver-gpu"), NS))
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "iris", "namespace": NS},
                          "spec": {"storageUri": IRIS, "requirements": ["sklearn", "model-on-gpu"]}})
    return waiter.until(_model_message(cluster, "iris", "ModelAvailable"), "iris ModelAvailable", LOAD_TIMEOUT)


def _status(cluster: SimCluster, kind: str, name: str) -> Obj:
    return (cluster.store.get(API, kind, name, NS) or {}).get("status") or {}


def _ready_cond(status: Obj) -> Obj:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "ModelReady"), {})


def _model_message(cluster: SimCluster, name: str, message: str) -> Callable[[], tuple[bool, Any]]:
    return lambda: (_ready_cond(_status(cluster, "Model", name)).get("message") == message,
                    _status(cluster, "Model", name))


def _serving_again(cluster: SimCluster, seldon: SeldonController, before: int,
                   port: int) -> Callable[[], tuple[bool, Any]]:
    """iris reported available, a new MLServer process behind mlserver-gpu-0, and an answer through the
    mesh. The status alone is not enough: it can still be the one from before the crash while the
    new process (which starts in well under a second) has yet to load the model."""
    def check() -> tuple[bool, Any]:
        status = _status(cluster, "Model", "iris")
        pid = seldon.dataplane.pid(NS, "mlserver-gpu-0")
        if _ready_cond(status).get("message") != "ModelAvailable" or pid in (None, before):
            return False, (pid, status)
        answer = _infer_rest(port, "iris", SETOSA)
        return answer[0] == 200, (pid, status, answer)
    return check


def _infer_rest(port: int, model: str, data: list[float], headers: dict[str, str] | None = None,
                path_model: str | None = None) -> tuple[int, Any]:
    body = json.dumps({"inputs": [{"name": "predict", "datatype": "FP32", "shape": [1, 4], "data": data}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{path_model or model}/infer", body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def _infer_add_sub(port: int, model: str, a: list[int], b: list[int]) -> Any:
    """tfsimple's two INT32 [1, 16] inputs through the mesh's REST port; the parsed answer."""
    body = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a},
                                  {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers={"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _infer_grpc(port: int, model: str, data: list[float]) -> Any:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton_grpc.InferInput("predict", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([data], dtype=np.float32))
        return client.infer(model, [tensor], headers={"seldon-model": model}, client_timeout=30)
    finally:
        client.close()


# --- tests ------------------------------------------------------------------------------------------

def test_model_available_on_the_gpu_server(cluster: SimCluster, iris: Obj) -> None:
    assert iris["selector"] == "server=mlserver-gpu"
    assert iris["availableReplicas"] == 1
    pod = cluster.store.get("v1", "Pod", "mlserver-gpu-0", NS)
    assert pod is not None
    node = cluster.store.get("v1", "Node", pod["spec"]["nodeName"]) or {}
    assert node["metadata"]["labels"]["pool"] == "infer-srv"


def test_rest_inference_through_the_mesh(iris: Obj, mesh_ports: tuple[int, int]) -> None:
    status, answer = _infer_rest(mesh_ports[0], "iris", SETOSA)
    assert status == 200, answer
    assert answer["model_name"] == "iris_1"
    assert answer["outputs"][0]["data"] == [0]
    status, answer = _infer_rest(mesh_ports[0], "iris", [6.7, 3.0, 5.2, 2.3], headers={"Seldon-Model": "iris"})
    assert status == 200 and answer["outputs"][0]["data"] == [2]


@pytest.mark.parametrize("port", [0, 1])
def test_grpc_inference_through_the_mesh(iris: Obj, mesh_ports: tuple[int, int], port: int) -> None:
    # ingress ports[0] serves REST and gRPC on one port like Envoy; ports[1] is the gRPC proxy itself.
    result = _infer_grpc(mesh_ports[port], "iris", SETOSA)
    assert result.get_response().model_name == "iris_1"
    assert result.as_numpy("predict").tolist() == [[0]]


def test_unknown_model_is_404_and_not_found(iris: Obj, mesh_ports: tuple[int, int]) -> None:
    status, _ = _infer_rest(mesh_ports[0], "no-such-model", SETOSA)
    assert status == 404
    with pytest.raises(InferenceServerException) as err:
        _infer_grpc(mesh_ports[1], "no-such-model", SETOSA)
    assert "NOT_FOUND" in str(err.value)


def test_triton_sample_out_of_reach_fails_clearly(cluster: SimCluster, waiter: Waiter,
                                                   mesh_ports: tuple[int, int]) -> None:
    cluster.store.create({"apiVersion": API, "kind": "Server", "metadata": {"name": "triton", "namespace": NS},
                          "spec": {"serverConfig": "triton", "replicas": 1}})
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "mnist", "namespace": NS},
                          "spec": {"storageUri": "gs://seldon-models/scv2/samples/triton_23-03/mnist-pytorch",
                                   "requirements": ["pytorch"]}})
    status = waiter.until(_model_message(cluster, "mnist", "ModelFailed"), "mnist ModelFailed")
    assert status["selector"] == "server=triton"
    assert "not reachable from the simulated cluster" in _ready_cond(status)["reason"]
    code, _ = _infer_rest(mesh_ports[0], "mnist", SETOSA)
    assert code == 404


def test_kind_gpu_model_fails_to_load_on_triton_without_gpu(cluster: SimCluster, waiter: Waiter,
                                                             tmp_path: Path) -> None:
    """Triton's own refusal: an explicit KIND_GPU instance group and a pod that was given no GPU."""
    from harness.sim.models import TFSIMPLE_CONFIG

    model_dir = tmp_path / "gpu-only"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(TFSIMPLE_CONFIG + "instance_group [ { kind: KIND_GPU } ]\n")
    (model_dir / "standin.json").write_text('{"operation": "add_sub"}')
    if cluster.store.get(API, "Server", "triton", NS) is None:
        cluster.store.create({"apiVersion": API, "kind": "Server", "metadata": {"name": "triton", "namespace": NS},
                              "spec": {"serverConfig": "triton", "replicas": 1}})
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "gpuonly", "namespace": NS},
                          "spec": {"storageUri": f"file://{model_dir}", "server": "triton"}})
    status = waiter.until(_model_message(cluster, "gpuonly", "ModelFailed"), "gpuonly ModelFailed", LOAD_TIMEOUT)
    assert "has kind KIND_GPU but no GPUs are available" in _ready_cond(status)["reason"], status


def test_cpu_triton_server_runs_the_real_tritonserver(cluster: SimCluster, waiter: Waiter, seldon: SeldonController,
                                                     mesh_ports: tuple[int, int]) -> None:
    """A Triton Server without GPUs is backed by nvidia-pytriton's real tritonserver: tfsimple loads
    through its repository API and answers through the mesh; the pod's process is the real binary."""
    from harness.localserver.tritonserver import TRITON_VERSION, binary_pid, find_tritonserver

    if cluster.store.get(API, "Server", "triton", NS) is None:
        cluster.store.create({"apiVersion": API, "kind": "Server", "metadata": {"name": "triton", "namespace": NS},
                              "spec": {"serverConfig": "triton", "replicas": 1}})
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "tfs-cpu", "namespace": NS},
                          "spec": {"storageUri": "gs://seldon-models/triton/simple", "server": "triton"}})
    waiter.until(_model_message(cluster, "tfs-cpu", "ModelAvailable"), "tfs-cpu ModelAvailable", LOAD_TIMEOUT)
    leader = seldon.dataplane.pid(NS, "triton-0")
    assert leader is not None
    install = find_tritonserver()
    server = binary_pid(install, leader)
    assert server is not None and Path(os.readlink(f"/proc/{server}/exe")) == install.binary.resolve()
    a = list(range(1, 17))
    answer = _infer_add_sub(mesh_ports[0], "tfs-cpu", a, [1] * 16)
    assert answer["model_name"] == "tfs-cpu_1"
    assert {o["name"]: o["data"] for o in answer["outputs"]}["OUTPUT0"] == [x + 1 for x in a]
    # What the pod's server container says of itself (port 9000, as the API's pod proxy reaches it).
    local = cluster.store.pod_ports(NS, "triton-0")[9000]
    conn = http.client.HTTPConnection("127.0.0.1", local, timeout=30)
    try:
        conn.request("GET", "/v2")
        meta = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert (meta["name"], meta["version"]) == ("triton", TRITON_VERSION)


def test_triton_stand_in_serves_on_its_allocated_gpu(cluster: SimCluster, waiter: Waiter,
                                                     mesh_ports: tuple[int, int]) -> None:
    """tfsimple on a Triton GPU Server: right answers over REST and gRPC through the mesh, KIND_GPU
    in its config, its GPU in Triton's metrics (pod proxy) and in the node's simulated NVML."""
    from harness.config import Server, Timeouts
    from harness.gpu.triton import gpu_instance_groups, gpu_sample
    from harness.kube import Kube
    from harness.sim.gpus import pod_allocated_gpus
    from harness.sim.kubelet import GPU_USE_DIR, gpu_processes
    from harness.testkit.serving import (
        TRITON_METRICS_PORT,
        ServingError,
        served_name,
        triton_config,
        triton_config_via_pod,
    )

    profile = cluster.profile
    server = Server(name="triton-gpu", server_config="triton", gpus=1)
    cluster.store.create(render_seldon.server(profile, server, NS))
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "tfsimple", "namespace": NS},
                          "spec": {"storageUri": "gs://seldon-models/triton/simple",
                                   "requirements": ["tensorflow", "model-on-gpu"]}})
    waiter.until(_model_message(cluster, "tfsimple", "ModelAvailable"), "tfsimple ModelAvailable", LOAD_TIMEOUT)
    a, b = list(range(1, 17)), [1] * 16
    answer = _infer_add_sub(mesh_ports[0], "tfsimple", a, b)
    assert answer["model_name"] == "tfsimple_1"
    assert {o["name"]: o["data"] for o in answer["outputs"]} == {
        "OUTPUT0": [x + 1 for x in a], "OUTPUT1": [x - 1 for x in a]}
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{mesh_ports[1]}")
    try:
        inputs = []
        for name, values in (("INPUT0", a), ("INPUT1", b)):
            item = triton_grpc.InferInput(name, [1, 16], "INT32")
            item.set_data_from_numpy(np.array([values], dtype=np.int32))
            inputs.append(item)
        result = client.infer("tfsimple", inputs, headers={"seldon-model": "tfsimple"})
    finally:
        client.close()
    assert result.as_numpy("OUTPUT1").tolist() == [[x - 1 for x in a]]

    pod = cluster.store.get("v1", "Pod", "triton-gpu-0", NS) or {}
    allocated = pod_allocated_gpus(pod)
    assert len(allocated) == 1
    # The model config is not reachable through the mesh, as with Seldon 2.10.2's agent; the pod proxy
    # to the Triton container reaches it under the served name the metrics labels give.
    with pytest.raises(ServingError, match="HTTP 400 Failed to get path termination"):
        triton_config(f"http://127.0.0.1:{mesh_ports[0]}", "tfsimple", 30)
    kube = Kube.from_kubeconfig(cluster.kubeconfig_path, None, Timeouts())
    try:
        text = kube.pod_proxy_get(NS, "triton-gpu-0", TRITON_METRICS_PORT, "metrics")
        sample = gpu_sample(text)
        name = served_name(text, "tfsimple")
        assert name == "tfsimple_1"
        config = triton_config_via_pod(kube, NS, "triton-gpu-0", name)
    finally:
        kube.close()
    assert gpu_instance_groups(config) == [("KIND_GPU", [0])]
    assert sample.uuids == allocated and sample.memory_used[allocated[0]] > 0
    node = cluster.store.get("v1", "Node", pod["spec"]["nodeName"]) or {}
    held = gpu_processes(node, cluster.workdir / GPU_USE_DIR)
    assert set(held) == set(allocated), held


def test_local_model_directory_loads_under_its_served_name(cluster: SimCluster, waiter: Waiter, iris: Obj,
                                                          mesh_ports: tuple[int, int], tmp_path: Path) -> None:
    model_dir = cached_iris(tmp_path / "my-iris", name="my-iris")  # the user cache: no scikit-learn import here
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "local", "namespace": NS},
                          "spec": {"storageUri": f"file://{model_dir}", "server": "mlserver-gpu"}})
    waiter.until(_model_message(cluster, "local", "ModelAvailable"), "local ModelAvailable", LOAD_TIMEOUT)
    status, answer = _infer_rest(mesh_ports[0], "local", SETOSA)
    assert status == 200 and answer["model_name"] == "local_1"


def test_injected_load_failure_on_a_real_server(cluster: SimCluster, waiter: Waiter, iris: Obj) -> None:
    cluster.faults.model_load_failure(NS, "broken")
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "broken", "namespace": NS},
                          "spec": {"storageUri": IRIS, "server": "mlserver-gpu"}})
    status = waiter.until(_model_message(cluster, "broken", "ModelFailed"), "broken ModelFailed")
    assert "injected fault" in _ready_cond(status)["reason"]


def test_mlserver_dying_restarts_the_container_and_reloads_models(
    cluster: SimCluster, waiter: Waiter, seldon: SeldonController, iris: Obj, mesh_ports: tuple[int, int]
) -> None:
    before = seldon.dataplane.pid(NS, "mlserver-gpu-0")
    assert before is not None
    assert cluster.faults.kill_mlserver(NS, "mlserver-gpu-0") is True

    def restarted() -> tuple[bool, Any]:
        pod = cluster.store.get("v1", "Pod", "mlserver-gpu-0", NS) or {}
        statuses = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
        count = statuses.get("mlserver", {}).get("restartCount", 0)
        return count >= 1, statuses.get("mlserver")
    container = waiter.until(restarted, "mlserver container restartCount >= 1")
    assert container["lastState"]["terminated"]["exitCode"] == 137

    waiter.until(_serving_again(cluster, seldon, before, mesh_ports[0]), "iris available on a new MLServer",
                 LOAD_TIMEOUT)
    status, answer = _infer_rest(mesh_ports[0], "iris", SETOSA)
    assert status == 200 and answer["model_name"] == "iris_1"
    previous = cluster.store.read_log(NS, "mlserver-gpu-0", "mlserver", previous=True)
    assert previous is not None and "container restarted" in previous
    assert "Uvicorn running" in previous or "Loaded model" in previous  # real MLServer output


def test_mlserver_dying_mid_load_restarts_and_the_load_is_retried(
    cluster: SimCluster, waiter: Waiter, seldon: SeldonController, iris: Obj, mesh_ports: tuple[int, int]
) -> None:
    restarts_before = seldon.dataplane.restarts(NS, "mlserver-gpu-0")
    cluster.faults.trigger("kill_mlserver_mid_load", NS, "midload")
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "midload", "namespace": NS},
                          "spec": {"storageUri": IRIS, "server": "mlserver-gpu"}})
    waiter.until(_model_message(cluster, "midload", "ModelAvailable"), "midload ModelAvailable", LOAD_TIMEOUT)
    assert seldon.dataplane.restarts(NS, "mlserver-gpu-0") == restarts_before + 1
    # The models the dead process held come back too.
    waiter.until(_model_message(cluster, "iris", "ModelAvailable"), "iris ModelAvailable again", LOAD_TIMEOUT)
    status, answer = _infer_rest(mesh_ports[0], "midload", SETOSA)
    assert status == 200 and answer["model_name"] == "midload_1"


def test_kubelet_container_crash_restarts_mlserver_and_reloads(
    cluster: SimCluster, waiter: Waiter, seldon: SeldonController, iris: Obj, mesh_ports: tuple[int, int]
) -> None:
    """The kubelet's own crash fault on the mlserver container: the pod goes NotReady for the back-off,
    the data plane drops that process, and once the pod is Ready again a new MLServer loads the models."""
    before = seldon.dataplane.pid(NS, "mlserver-gpu-0")
    assert before is not None
    cluster.faults.pod_crash(NS, "mlserver-gpu-0", "mlserver")

    waiter.until(_serving_again(cluster, seldon, before, mesh_ports[0]),
                 "iris available on a new MLServer after the container crash", LOAD_TIMEOUT)
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)
    status, answer = _infer_rest(mesh_ports[0], "iris", SETOSA)
    assert status == 200 and answer["model_name"] == "iris_1"


def test_deleting_a_model_unloads_it(cluster: SimCluster, waiter: Waiter, seldon: SeldonController, iris: Obj,
                                     mesh_ports: tuple[int, int]) -> None:
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "short", "namespace": NS},
                          "spec": {"storageUri": IRIS, "server": "mlserver-gpu"}})
    waiter.until(_model_message(cluster, "short", "ModelAvailable"), "short ModelAvailable", LOAD_TIMEOUT)
    assert _infer_rest(mesh_ports[0], "short", SETOSA)[0] == 200
    cluster.store.delete(API, "Model", "short", NS)

    def unloaded() -> tuple[bool, Any]:
        pods = [p for p in cluster.store.list("v1", "Pod", NS) if p["metadata"]["name"] == "mlserver-gpu-0"]
        loaded = seldon.dataplane.loaded(PodRef(NS, "mlserver-gpu-0", "mlserver-gpu", "mlserver"))
        return bool(pods) and "short_1" not in loaded and not seldon.dataplane.pending(), loaded
    waiter.until(unloaded, "short_1 unloaded")
    assert _infer_rest(mesh_ports[0], "short", SETOSA)[0] == 404


def test_spec_change_bumps_the_version_and_failed_scale_up_keeps_serving(
        cluster: SimCluster, waiter: Waiter, iris: Obj, mesh_ports: tuple[int, int], seldon: SeldonController,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seldon v2.10.2 (commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce): a change to the model spec
    (storageUri, requirements, memory, server, ...) is a new version, served as `<model>_<n+1>`
    (scheduler/pkg/store/memory.go updateModelImpl), while the previous version keeps answering until
    the new one is available (memory_status.go), and is unloaded only once the mesh routes to the new one
    (envoy/processor/incremental.go modelSync: UnloadEnvoyRequested -> UnloadRequested after updateEnvoy;
    scheduler/cleaner/versions.go); a replicas change is not a new version. Scaling beyond the
    Server's replicas is ScheduleFailed while the loaded replica keeps serving (scheduler.go,
    FailedScheduling without reset). Driven through the kubernetes client."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    crs = k8s.CustomObjectsApi(api)
    try:
        crs.create_namespaced_custom_object("mlops.seldon.io", "v1alpha1", NS, "models", {
            "apiVersion": API, "kind": "Model", "metadata": {"name": "bump"},
            "spec": {"storageUri": IRIS, "server": "mlserver-gpu"}})
        waiter.until(_model_message(cluster, "bump", "ModelAvailable"), "bump ModelAvailable", LOAD_TIMEOUT)
        assert _infer_rest(mesh_ports[0], "bump", SETOSA)[1]["model_name"] == "bump_1"

        answers: list[tuple[int, str]] = []
        # What the mesh routed "bump" to at the moment each version was unloaded: never the one unloaded.
        unloads: list[tuple[str, str | None]] = []
        real_unload = seldon.dataplane.unload

        def unload(pod: Any, served: str) -> Any:
            route = seldon.route("bump")
            unloads.append((served, None if route is None else route.served_name))
            return real_unload(pod, served)
        monkeypatch.setattr(seldon.dataplane, "unload", unload)

        def answered_by(version: str) -> Callable[[], tuple[bool, Any]]:
            def probe() -> tuple[bool, Any]:
                code, answer = _infer_rest(mesh_ports[0], "bump", SETOSA)
                answers.append((code, str(answer.get("model_name") if isinstance(answer, dict) else answer)))
                return code == 200 and answer.get("model_name") == version, (code, answer)
            return probe

        patch = {"spec": {"storageUri": "gs://seldon-models/scv2/samples/mlserver_1.5.0/iris-sklearn"}}
        crs.patch_namespaced_custom_object("mlops.seldon.io", "v1alpha1", NS, "models", "bump", patch)
        waiter.until(answered_by("bump_2"), "bump_2 answering", LOAD_TIMEOUT)
        # no gap while the new version loads: every answer came from bump_1 or bump_2
        assert {a for a in answers} <= {(200, "bump_1"), (200, "bump_2")}, answers
        waiter.until(lambda: (any(u[0] == "bump_1" for u in unloads), unloads), "bump_1 unloaded", LOAD_TIMEOUT)
        assert [u for u in unloads if u[0] == "bump_1"] == [("bump_1", "bump_2")], unloads

        crs.patch_namespaced_custom_object("mlops.seldon.io", "v1alpha1", NS, "models", "bump",
                                           {"spec": {"replicas": 2}})
        status = waiter.until(_model_message(cluster, "bump", "ScheduleFailed"), "bump ScheduleFailed")
        assert status["availableReplicas"] == 1 and status["replicas"] == 2
        code, answer = _infer_rest(mesh_ports[0], "bump", SETOSA)
        assert code == 200 and answer["model_name"] == "bump_2"  # replicas are no new version; still serving
    finally:
        api.close()


def test_a_version_that_never_loads_is_dropped_while_the_last_available_one_serves(
        cluster: SimCluster, waiter: Waiter, iris: Obj, mesh_ports: tuple[int, int], seldon: SeldonController) -> None:
    """Seldon v2.10.2: traffic stays on the last available version (envoy/processor/incremental.go
    addModelTraffic, GetLastAvailableModel) while the latest fails to load, and a newer spec replaces
    the failed one; the old version goes only when the newest is available (cleaner/versions.go)."""
    cluster.store.create({"apiVersion": API, "kind": "Model", "metadata": {"name": "hand", "namespace": NS},
                          "spec": {"storageUri": IRIS, "server": "mlserver-gpu"}})
    try:
        waiter.until(_model_message(cluster, "hand", "ModelAvailable"), "hand ModelAvailable", LOAD_TIMEOUT)
        answers: list[tuple[int, str]] = []

        def answered_by(version: str) -> Callable[[], tuple[bool, Any]]:
            def probe() -> tuple[bool, Any]:
                code, answer = _infer_rest(mesh_ports[0], "hand", SETOSA)
                answers.append((code, str(answer.get("model_name") if isinstance(answer, dict) else answer)))
                return code == 200 and answer.get("model_name") == version, (code, answer)
            return probe

        seldon.fail_model_load("hand")
        v2, v3 = "gs://seldon-models/scv2/samples/mlserver_1.5.0/iris-sklearn", "gs://seldon-models/mlserver/iris-sklearn"
        cluster.store.patch(API, "Model", "hand", NS, {"spec": {"storageUri": v2}}, "merge")
        waiter.until(_model_message(cluster, "hand", "ModelFailed"), "hand_2 ModelFailed", LOAD_TIMEOUT)
        assert answered_by("hand_1")()[0], answers  # the failed version never took the traffic
        seldon.dataplane.clear_model_fault("hand")
        cluster.store.patch(API, "Model", "hand", NS, {"spec": {"storageUri": v3}}, "merge")
        waiter.until(answered_by("hand_3"), "hand_3 answering", LOAD_TIMEOUT)
        assert {a for a in answers} <= {(200, "hand_1"), (200, "hand_3")}, answers
    finally:
        seldon.dataplane.clear_model_fault("hand")
        cluster.store.delete(API, "Model", "hand", NS)


def test_deleting_the_server_stops_its_mlserver(cluster: SimCluster, waiter: Waiter, seldon: SeldonController,
                                                iris: Obj) -> None:
    pid = seldon.dataplane.pid(NS, "mlserver-gpu-0")
    assert pid is not None
    cluster.store.delete(API, "Server", "mlserver-gpu", NS)

    def gone() -> tuple[bool, Any]:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True, "exited"
        return False, "still running"
    waiter.until(gone, f"MLServer pid {pid} to exit", 60)
    waiter.until(_model_message(cluster, "iris", "ScheduleFailed"), "iris ScheduleFailed")
