"""Pure rules of the simulated Seldon: the pod-spec merge (each B1 rule), the StatefulSet a Server
becomes, capabilities, and model scheduling decisions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness.config import DEFAULT_CAPABILITIES
from harness.k8s.quantity import parse_quantity
from harness.k8s.seldon import merge_pod_spec
from harness.sim.api import crdschema
from harness.sim.models import ModelUnavailable, iris_cache_dir, resolve_storage_uri
from harness.sim.seldon_merge import (
    announced_capabilities,
    build_statefulset,
    default_server_config,
    server_memory_bytes,
    server_type,
)
from harness.sim.seldon_schedule import (
    NO_MATCHING_SERVERS,
    NOT_ENOUGH_REPLICAS,
    ModelRequest,
    ServerView,
    schedule_model,
)

GPU_TOL = {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def _config(kind: str = "mlserver") -> dict[str, Any]:
    return default_server_config(kind, "seldon-mesh", "2.10.2")


def _server(name: str = "gpu", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Server",
        "metadata": {"name": name, "namespace": "seldon-mesh", "uid": "u-1"},
        "spec": {"serverConfig": "mlserver", **spec},
    }


def _container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


# --- default ServerConfigs -----------------------------------------------------------------------

@pytest.mark.parametrize("kind,image", [("mlserver", "seldonio/mlserver:1.7.1"),
                                        ("triton", "nvcr.io/nvidia/tritonserver:23.03-py3")])
def test_default_server_configs_are_complete_pod_templates(kind: str, image: str) -> None:
    config = _config(kind)
    pod = config["spec"]["podSpec"]
    assert [c["name"] for c in pod["containers"]] == ["rclone", "agent", kind]
    server = _container(pod, kind)
    assert server["image"] == image
    assert {p["containerPort"] for p in server["ports"]} == {9000, 9500}
    assert server["resources"]["requests"] == {"cpu": "100m", "memory": "1Gi"}
    assert server["securityContext"]["runAsUser"] == 1000
    claim = config["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert server_type(pod) == kind
    assert announced_capabilities(_server(), pod) == list(DEFAULT_CAPABILITIES[kind])


def test_default_server_configs_validate_against_the_seldon_crd_schema() -> None:
    shared = Path(__file__).resolve().parents[4] / "shared" / "seldon-crds"
    if not shared.is_dir():
        pytest.skip(f"Seldon CRDs not found at {shared}; put the shared folder beside the checkout to enable")
    jsonschema = pytest.importorskip("jsonschema")
    # Read as the simulated API server reads it (the C loader, once per process), not in seconds of pure Python.
    schema = crdschema.schema("ServerConfig")
    assert schema is not None
    # No meta-validation of the (large) CRD schema: that alone takes seconds.
    validator = jsonschema.Draft7Validator(schema)
    for kind in ("mlserver", "triton"):
        validator.validate(_config(kind))


# --- merge rules (design B1) -----------------------------------------------------------------------

def test_tolerations_are_appended() -> None:
    base = {"tolerations": [{"key": "a", "operator": "Exists"}]}
    merged = merge_pod_spec(base, {"tolerations": [GPU_TOL]})
    assert merged["tolerations"] == [{"key": "a", "operator": "Exists"}, GPU_TOL]


def test_volumes_are_appended() -> None:
    base = {"volumes": [{"name": "config", "configMap": {"name": "x"}}]}
    merged = merge_pod_spec(base, {"volumes": [{"name": "models", "hostPath": {"path": "/m"}}]})
    assert [v["name"] for v in merged["volumes"]] == ["config", "models"]


def test_node_selector_is_merged_key_by_key() -> None:
    base = {"nodeSelector": {"kubernetes.io/os": "linux", "pool": "default"}}
    merged = merge_pod_spec(base, {"nodeSelector": {"pool": "infer-srv", "gpu": "h200"}})
    assert merged["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "infer-srv", "gpu": "h200"}


def test_affinity_is_replaced_not_merged() -> None:
    base = {"affinity": {"podAntiAffinity": {"x": 1}, "nodeAffinity": {"old": True}}}
    new = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["infer-srv"]}]}]}}}
    merged = merge_pod_spec(base, {"affinity": new})
    assert merged["affinity"] == new


def test_containers_merge_by_name_with_resources_key_by_key() -> None:
    pod = _config()["spec"]["podSpec"]
    merged = merge_pod_spec(pod, {"containers": [{
        "name": "mlserver",
        "resources": {"requests": {"nvidia.com/gpu": 1, "memory": "2Gi"},
                      "limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}},
    }]})
    server = _container(merged, "mlserver")
    assert server["resources"]["requests"] == {"cpu": "100m", "memory": "2Gi", "nvidia.com/gpu": 1}
    assert server["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": 1}
    assert server["image"] == "seldonio/mlserver:1.7.1"  # untouched fields survive
    assert [c["name"] for c in merged["containers"]] == ["rclone", "agent", "mlserver"]
    # The other containers are not touched.
    assert _container(merged, "agent") == _container(pod, "agent")


def test_unknown_container_is_added_and_other_fields_override_when_set() -> None:
    pod = _config()["spec"]["podSpec"]
    merged = merge_pod_spec(pod, {
        "containers": [{"name": "sidecar", "image": "busybox"}],
        "runtimeClassName": "nvidia",
        "terminationGracePeriodSeconds": 5,
        "priorityClassName": None,  # unset fields do not override
    })
    assert [c["name"] for c in merged["containers"]][-1] == "sidecar"
    assert merged["runtimeClassName"] == "nvidia"
    assert merged["terminationGracePeriodSeconds"] == 5
    assert "priorityClassName" not in merged


def test_container_image_override_replaces_only_that_field() -> None:
    pod = _config()["spec"]["podSpec"]
    merged = merge_pod_spec(pod, {"containers": [{"name": "mlserver", "image": "my/mlserver:gpu"}]})
    server = _container(merged, "mlserver")
    assert server["image"] == "my/mlserver:gpu"
    assert server["resources"] == _container(pod, "mlserver")["resources"]


def test_merge_does_not_mutate_its_inputs() -> None:
    pod = _config()["spec"]["podSpec"]
    before = copy.deepcopy(pod)
    override = {"tolerations": [GPU_TOL], "containers": [{"name": "mlserver", "resources": {"requests": {"cpu": "2"}}}]}
    override_before = copy.deepcopy(override)
    merge_pod_spec(pod, override)
    assert pod == before and override == override_before


# --- the StatefulSet ------------------------------------------------------------------------------

def test_statefulset_from_a_gpu_server() -> None:
    server = _server("mlserver-gpu", replicas=2, podSpec={
        "tolerations": [GPU_TOL],
        "nodeSelector": {"pool": "infer-srv"},
        "containers": [{"name": "mlserver", "resources": {"requests": {"nvidia.com/gpu": 1},
                                                           "limits": {"nvidia.com/gpu": 1}}}],
    })
    sts = build_statefulset(server, _config())
    assert sts["kind"] == "StatefulSet" and sts["metadata"]["name"] == "mlserver-gpu"
    assert sts["metadata"]["namespace"] == "seldon-mesh"
    assert sts["spec"]["replicas"] == 2
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels == {"seldon-server-name": "mlserver-gpu", "app.kubernetes.io/name": "seldon-server",
                      "app.kubernetes.io/managed-by": "seldon-core"}
    assert sts["spec"]["selector"]["matchLabels"] == {"seldon-server-name": "mlserver-gpu"}
    owner = sts["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Server", "mlserver-gpu", "u-1", True)
    pod = sts["spec"]["template"]["spec"]
    assert pod["tolerations"] == [GPU_TOL]
    assert pod["nodeSelector"] == {"pool": "infer-srv"}
    assert _container(pod, "mlserver")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "mlserver-models"


def test_statefulset_replicas_default_to_one() -> None:
    assert build_statefulset(_server(), _config())["spec"]["replicas"] == 1


def test_extra_capabilities_append_and_capabilities_replace() -> None:
    pod = _config()["spec"]["podSpec"]
    extra = _server(extraCapabilities=["model-on-gpu"])
    assert announced_capabilities(extra, pod) == [*DEFAULT_CAPABILITIES["mlserver"], "model-on-gpu"]
    replaced = _server(capabilities=["model-on-gpu"], extraCapabilities=["ignored"])
    assert announced_capabilities(replaced, pod) == ["model-on-gpu"]
    # What the agent announces is also written into its environment.
    sts = build_statefulset(replaced, _config())
    env = {e["name"]: e.get("value") for e in _container(sts["spec"]["template"]["spec"], "agent")["env"]}
    assert env["SELDON_SERVER_CAPABILITIES"] == "model-on-gpu"


def test_memory_capacity_comes_from_the_inference_container_request() -> None:
    pod = merge_pod_spec(_config()["spec"]["podSpec"],
                         {"containers": [{"name": "mlserver", "resources": {"requests": {"memory": "2Gi"}}}]})
    assert server_memory_bytes(pod) == 2 * 1024**3


@pytest.mark.parametrize("text,expected", [("1Gi", 1024**3), ("100Ki", 102400), ("1G", 10**9), ("512", 512),
                                           ("1.5Mi", int(1.5 * 1024**2)), ("1e3", 1000)])
def test_parse_quantity(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_quantity("lots")


# --- scheduling -------------------------------------------------------------------------------------

MLS = DEFAULT_CAPABILITIES["mlserver"]
GPU = ServerView("mlserver-gpu", (*MLS, "model-on-gpu"), ready_replicas=1, memory_bytes=2 * 1024**3)
CPU = ServerView("mlserver-cpu", (*MLS, "model-on-cpu"), ready_replicas=1, memory_bytes=1024**3)
TRITON = ServerView("triton", DEFAULT_CAPABILITIES["triton"], ready_replicas=1, memory_bytes=1024**3)


def test_requirements_select_the_server_with_the_capability() -> None:
    placement = schedule_model(ModelRequest("iris", ("sklearn", "model-on-gpu")), [CPU, GPU, TRITON])
    assert placement.server == "mlserver-gpu" and placement.reason is None


def test_no_server_with_all_requirements_fails_with_seldons_reason() -> None:
    placement = schedule_model(ModelRequest("iris", ("sklearn", "onnx")), [CPU, GPU, TRITON])
    assert placement.server is None and placement.reason == NO_MATCHING_SERVERS
    assert NO_MATCHING_SERVERS == "Failed to schedule model as no matching servers are available"


def test_requirements_are_exact_strings() -> None:
    assert not schedule_model(ModelRequest("iris", ("SKLearn",)), [CPU]).ok
    assert not schedule_model(ModelRequest("iris", ("model-on",)), [GPU]).ok


def test_pinning_wins_over_other_candidates() -> None:
    placement = schedule_model(ModelRequest("iris", ("sklearn",), server="mlserver-gpu"), [CPU, GPU])
    assert placement.server == "mlserver-gpu"


def test_pinning_has_no_fallback() -> None:
    down = ServerView("mlserver-gpu", GPU.capabilities, ready_replicas=0, memory_bytes=GPU.memory_bytes)
    placement = schedule_model(ModelRequest("iris", ("sklearn",), server="mlserver-gpu"), [CPU, down])
    assert placement.server is None and placement.reason == NO_MATCHING_SERVERS
    missing = schedule_model(ModelRequest("iris", server="nope"), [CPU, GPU])
    assert missing.reason == NO_MATCHING_SERVERS


def test_pinned_server_must_still_offer_the_requirements() -> None:
    placement = schedule_model(ModelRequest("iris", ("model-on-gpu",), server="mlserver-cpu"), [CPU, GPU])
    assert placement.reason == NO_MATCHING_SERVERS


def test_requirement_falls_back_to_another_server_when_the_first_has_no_ready_replica() -> None:
    gpu2 = ServerView("mlserver-gpu-b", GPU.capabilities, ready_replicas=1, memory_bytes=GPU.memory_bytes)
    down = ServerView("mlserver-gpu", GPU.capabilities, ready_replicas=0, memory_bytes=GPU.memory_bytes)
    placement = schedule_model(ModelRequest("iris", ("model-on-gpu",)), [down, gpu2, CPU])
    assert placement.server == "mlserver-gpu-b"


def test_servers_without_connected_replicas_do_not_count() -> None:
    down = ServerView("mlserver-gpu", GPU.capabilities, ready_replicas=0, memory_bytes=GPU.memory_bytes)
    assert schedule_model(ModelRequest("iris", ("model-on-gpu",)), [down]).reason == NO_MATCHING_SERVERS


def test_extra_capabilities_trap_lets_plain_models_land_on_gpu_servers() -> None:
    # Seldon issue 4968: extraCapabilities keep the default list, so a model asking only for sklearn
    # is eligible for the GPU server too; only an exclusive requirement keeps it off.
    plain = ModelRequest("iris", ("sklearn",))
    only_gpu_ready = [GPU, ServerView("mlserver-cpu", CPU.capabilities, 0, CPU.memory_bytes)]
    assert schedule_model(plain, only_gpu_ready).server == "mlserver-gpu"
    fenced = ModelRequest("iris", ("sklearn", "model-on-cpu"))
    assert schedule_model(fenced, only_gpu_ready).reason == NO_MATCHING_SERVERS
    # `capabilities` (replace) removes the default list: a plain sklearn model can no longer land there.
    replaced = ServerView("mlserver-gpu", ("model-on-gpu",), 1, GPU.memory_bytes)
    assert schedule_model(plain, [replaced]).reason == NO_MATCHING_SERVERS


def test_model_replicas_above_ready_server_replicas_fail_with_seldons_reason() -> None:
    placement = schedule_model(ModelRequest("iris", ("sklearn", "model-on-gpu"), replicas=2), [GPU, CPU])
    assert placement.server is None and placement.reason == NOT_ENOUGH_REPLICAS
    assert NOT_ENOUGH_REPLICAS == "Failed to schedule model as no matching server had enough suitable replicas"
    bigger = ServerView("mlserver-gpu", GPU.capabilities, 2, GPU.memory_bytes)
    assert schedule_model(ModelRequest("iris", ("model-on-gpu",), replicas=2), [bigger]).server == "mlserver-gpu"


def test_memory_check_uses_the_request_times_overcommit() -> None:
    cap = 2 * 1024**3
    fits = ModelRequest("big", ("model-on-gpu",), memory_bytes=int(cap * 1.1))
    too_big = ModelRequest("big", ("model-on-gpu",), memory_bytes=int(cap * 1.1) + 1024)
    assert schedule_model(fits, [GPU]).server == "mlserver-gpu"
    assert schedule_model(too_big, [GPU]).reason == NOT_ENOUGH_REPLICAS


def test_choice_among_candidates_is_deterministic_and_sticky() -> None:
    a = ServerView("a", MLS, 1, 1024**3)
    b = ServerView("b", MLS, 1, 1024**3)
    model = ModelRequest("iris", ("sklearn",))
    assert schedule_model(model, [b, a]).server == "a"
    assert schedule_model(model, [a, b]).server == "a"
    # The server already holding the model keeps it (no flip-flop when another becomes eligible).
    assert schedule_model(model, [a, b], current="b").server == "b"
    # ... unless it no longer fits.
    b_down = ServerView("b", MLS, 0, 1024**3)
    assert schedule_model(model, [a, b_down], current="b").server == "a"


# --- storageUri resolution ---------------------------------------------------------------------------

@pytest.mark.parametrize("uri", [
    "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn",
    "gs://seldon-models/scv2/samples/mlserver_1.5.0/iris-sklearn/",
    "gs://seldon-models/mlserver/iris-sklearn",
])
def test_iris_samples_map_to_the_local_iris_model(uri: str, tmp_path: Path) -> None:
    source = resolve_storage_uri(uri, tmp_path, train=False)
    assert source.sample and source.path == iris_cache_dir(tmp_path)


def test_iris_sample_is_trained_once_into_the_workdir(tmp_path: Path) -> None:
    source = resolve_storage_uri("gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn", tmp_path)
    assert (source.path / "model.joblib").is_file() and (source.path / "model-settings.json").is_file()
    stamp = (source.path / "model.joblib").stat().st_mtime_ns
    again = resolve_storage_uri("gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn", tmp_path)
    assert (again.path / "model.joblib").stat().st_mtime_ns == stamp


def test_local_paths_load_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_storage_uri(f"file://{folder}", tmp_path).path == folder
    assert resolve_storage_uri(str(folder), tmp_path).path == folder
    with pytest.raises(ModelUnavailable, match="not a folder"):
        resolve_storage_uri(f"file://{tmp_path / 'missing'}", tmp_path)


@pytest.mark.parametrize("uri", [
    "gs://seldon-models/scv2/samples/triton_22-11/mnist-onnx",
    "s3://bucket/model",
    "https://example.com/model.tar.gz",
    "relative/path",
])
def test_anything_else_is_not_reachable_from_the_sim(uri: str, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not reachable from the simulated cluster"):
        resolve_storage_uri(uri, tmp_path)


def test_empty_storage_uri_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="empty"):
        resolve_storage_uri("  ", tmp_path)


# --- what a Seldon install puts into the cluster -------------------------------------------------------

def _install(kafka: bool) -> dict[tuple[str, str], dict[str, Any]]:
    from harness.config import parse_profile
    from harness.sim.seldon import seldon_objects

    profile = parse_profile({"seldon": {"kafka": kafka}}, "test")
    return {(o["kind"], o["metadata"]["name"]): o for o in seldon_objects(profile)}


def test_install_without_kafka_has_controller_scheduler_envoy_and_mesh_service() -> None:
    objs = _install(kafka=False)
    manager = objs[("Deployment", "seldon-v2-controller-manager")]
    assert manager["spec"]["template"]["metadata"]["labels"] == {"control-plane": "v2-controller-manager"}
    assert manager["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.10.2")
    assert ("StatefulSet", "seldon-scheduler") in objs and ("Deployment", "seldon-envoy") in objs
    assert {("ServerConfig", "mlserver"), ("ServerConfig", "triton")} <= set(objs)
    mesh = objs[("Service", "seldon-mesh")]
    assert mesh["spec"]["type"] == "LoadBalancer"
    assert mesh["spec"]["selector"] == {"app.kubernetes.io/name": "seldon-envoy"}
    assert not any(name in ("seldon-modelgateway", "seldon-pipelinegateway", "seldon-dataflow-engine")
                   for _, name in objs)
    for obj in objs.values():
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        assert not pod.get("tolerations"), f"{obj['metadata']['name']} must not tolerate the GPU taint"


def test_install_with_kafka_adds_the_gateways_and_dataflow() -> None:
    objs = _install(kafka=True)
    for name in ("seldon-modelgateway", "seldon-pipelinegateway", "seldon-dataflow-engine"):
        labels = objs[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app.kubernetes.io/name": name}
