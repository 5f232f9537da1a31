"""Render: every manifest from the profile, deterministic, valid against Kubernetes and Seldon schemas."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness import render
from harness.cli import main
from harness.config import Profile, load_profile, parse_profile
from harness.errors import UsageError
from harness.gpu import bindings
from harness.render import gpu as render_gpu
from harness.render.yamlio import dump_documents
from harness.safeyaml import load_all

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
CRD_DIR = Path(__file__).resolve().parents[3] / "shared" / "seldon-crds"
K8S_VERSION = "1.32.0"


def _profile(**overrides: Any) -> Profile:
    data: dict[str, Any] = {
        "servers": [
            {"name": "gpu-aff", "gpus": 1, "placement": "nodeAffinity"},
            {"name": "gpu-sel", "gpus": 2, "placement": "nodeSelector", "server_config": "triton"},
            {"name": "cpu", "gpus": 0, "extra_capabilities": ["model-on-cpu"]},
        ],
        "models": [
            {"name": "m-gpu", "storage_uri": "gs://b/m", "requirements": ["sklearn", "model-on-gpu"]},
            {"name": "m-pin", "storage_uri": "gs://b/p", "server": "gpu-sel", "memory": "100Mi"},
        ],
        "cluster": {"nodes": {"gpu_workers": [{"count": 2, "gpus": 2}]}},
    }
    data.update(overrides)
    return parse_profile(data, "test-profile")


def _by_name(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["metadata"]["name"] == name)


def _is_k8s_object(doc: dict[str, Any]) -> bool:
    return "apiVersion" in doc and "kind" in doc


# --- servers ------------------------------------------------------------------------------------


def test_gpu_server_with_node_affinity_tolerates_taint_and_pins_replicas() -> None:
    p = _profile()
    s = render.server(p, p.server("gpu-aff"), "seldon-mesh")
    spec = s["spec"]
    assert (spec["replicas"], spec["minReplicas"], spec["maxReplicas"]) == (1, 1, 1)
    assert spec["serverConfig"] == "mlserver"
    assert spec["extraCapabilities"] == ["model-on-gpu"]
    pod = spec["podSpec"]
    assert pod["tolerations"] == [
        {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["infer-srv"]}]}]
    assert "nodeSelector" not in pod
    (container,) = pod["containers"]
    assert container["name"] == "mlserver"
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    # A memory request above the default ServerConfig's 1Gi limit needs its own limit (maps merge by key).
    assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"]


def test_gpu_server_with_node_selector_uses_triton_container_name() -> None:
    p = _profile()
    pod = render.server(p, p.server("gpu-sel"), "ns")["spec"]["podSpec"]
    assert pod["nodeSelector"] == {"pool": "infer-srv"}
    assert "affinity" not in pod
    assert pod["containers"][0]["name"] == "triton"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_toleration_follows_profile_taint_and_noexecute_has_no_toleration_seconds() -> None:
    p = _profile(gpu={"taint": {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
                      "pool_label": {"key": "node-pool", "value": "gpus"}})
    pod = render.server(p, p.server("gpu-sel"), "ns")["spec"]["podSpec"]
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]
    assert pod["nodeSelector"] == {"node-pool": "gpus"}


def test_cpu_server_has_no_toleration_and_stays_off_the_pool() -> None:
    p = _profile()
    s = render.server(p, p.server("cpu"), "ns")
    pod = s["spec"]["podSpec"]
    assert "tolerations" not in pod
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["infer-srv"]}]}]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["requests"]
    assert s["spec"]["extraCapabilities"] == ["model-on-cpu"]


def test_runtime_class_only_on_kind_with_real_gpus() -> None:
    kind = _profile(cluster={"provider": "kind", "nodes": {"gpu_workers": [{"count": 1, "gpus": 2}]}})
    fake = _profile(cluster={"provider": "kind", "fake_gpus": True,
                             "nodes": {"gpu_workers": [{"count": 1, "gpus": 2}]}})
    assert render.server(kind, kind.server("gpu-aff"), "ns")["spec"]["podSpec"]["runtimeClassName"] == "nvidia"
    assert "runtimeClassName" not in render.server(fake, fake.server("gpu-aff"), "ns")["spec"]["podSpec"]
    assert "runtimeClassName" not in render.server(kind, kind.server("cpu"), "ns")["spec"]["podSpec"]


def test_run_labels_on_runtime_objects() -> None:
    p = _profile()
    s = render.server(p, p.server("cpu"), "ns", run_id="r-123")
    assert s["metadata"]["labels"]["harness.seldon.dev/run-id"] == "r-123"
    assert s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "seldon-gpu-harness"
    assert render.labels_for_run("abc") == {
        "app.kubernetes.io/managed-by": "seldon-gpu-harness", "harness.seldon.dev/run-id": "abc"}
    with pytest.raises(UsageError, match="run id"):
        render.labels_for_run("not a label!")


# --- models -------------------------------------------------------------------------------------


def test_models_by_requirement_and_by_pin() -> None:
    p = _profile()
    by_req = render.model(p, p.models[0], "seldon-mesh")
    assert by_req["spec"] == {"storageUri": "gs://b/m", "requirements": ["sklearn", "model-on-gpu"], "replicas": 1}
    pinned = render.model(p, p.models[1], "seldon-mesh")
    assert pinned["spec"]["server"] == "gpu-sel"
    assert pinned["spec"]["memory"] == "100Mi"
    assert "requirements" not in pinned["spec"]


# --- server config variant ------------------------------------------------------------------------


def _base_server_config(kind: str = "mlserver") -> dict[str, Any]:
    # A stand-in of a cluster's complete ServerConfig (written for this test, not Seldon's template).
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "ServerConfig",
        "metadata": {"name": kind, "namespace": "seldon-mesh"},
        "spec": {
            "podSpec": {
                "tolerations": [{"key": "other", "operator": "Exists"}],
                "containers": [
                    {"name": "rclone", "image": "example/rclone:1"},
                    {"name": "agent", "image": "example/agent:1",
                     "env": [{"name": "SELDON_SERVER_CAPABILITIES", "value": "mlserver,sklearn"}]},
                    {"name": kind, "image": f"example/{kind}:1",
                     "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
                ],
            },
            "volumeClaimTemplates": [{"name": f"{kind}-models", "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def test_server_config_variant_is_complete_and_gpu_placed() -> None:
    p = _profile()
    base = _base_server_config()
    before = copy.deepcopy(base)
    sc = render.server_config(p, p.server("gpu-aff"), "seldon-mesh", base=base)
    assert sc is not None
    assert base == before  # the base is not modified
    pod = sc["spec"]["podSpec"]
    assert [c["name"] for c in pod["containers"]] == ["rclone", "agent", "mlserver"]
    assert {"key": "other", "operator": "Exists"} in pod["tolerations"]
    assert {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    resources = pod["containers"][2]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["cpu"] == "1"
    assert sc["spec"]["volumeClaimTemplates"][0]["name"] == "mlserver-models"
    assert render.server_config(p, p.server("cpu"), "seldon-mesh", base=base) is None
    assert render.server_config(p, p.server("gpu-aff"), "seldon-mesh") is None


def test_server_config_variant_refuses_a_partial_base() -> None:
    p = _profile()
    base = _base_server_config()
    base["spec"]["podSpec"]["containers"] = base["spec"]["podSpec"]["containers"][2:]
    with pytest.raises(UsageError, match="missing rclone, agent"):
        render.server_config(p, p.server("gpu-aff"), "seldon-mesh", base=base)


# --- pods -----------------------------------------------------------------------------------------


def _assert_least_privilege(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all("hostPath" not in v for v in spec.get("volumes", []))
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["privileged"] is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}


def test_probe_pod_requests_gpus_and_targets_the_pool() -> None:
    p = _profile()
    pod = render.probe_pod(p, "probe-1", "t-ns", 2, run_id="r1")
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    # Isolated: nothing of the image's Python environment (MLServer 1.7.1 has no nvidia-ml-py at all).
    assert c["command"] == ["python3", "-I", "-S", "/probe/probe.py"]
    assert c["resources"] == {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}
    assert c["image"] == render.PROBE_IMAGE
    assert re.fullmatch(r"docker\.io/library/python:3\.\d+-slim@sha256:[0-9a-f]{64}", c["image"])
    assert "imagePullPolicy" not in c  # pulled where the cluster is not kind
    assert {"name": "probe", "mountPath": "/probe", "readOnly": True} in c["volumeMounts"]
    assert {"name": "probe", "configMap": {"name": "nvml-probe", "defaultMode": 0o444}} in spec["volumes"]
    assert spec["tolerations"] == render.server(p, p.server("gpu-aff"), "x")["spec"]["podSpec"]["tolerations"]
    assert spec["affinity"] == render.server(p, p.server("gpu-aff"), "x")["spec"]["podSpec"]["affinity"]
    assert pod["metadata"]["labels"]["harness.seldon.dev/run-id"] == "r1"
    _assert_least_privilege(pod)


def test_probe_pod_without_gpus_still_tolerates_and_targets_the_node() -> None:
    p = _profile()
    pod = render.probe_pod(p, "probe-0", "t-ns", 0, node_name="gpu-node-1", image="example/python:3")
    spec = pod["spec"]
    assert "resources" not in spec["containers"][0]
    assert spec["tolerations"][0]["key"] == "seldon-gpu-srv"
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "gpu-node-1"}
    assert "nodeName" not in spec  # nodeName would bypass the scheduler and the taint
    assert spec["containers"][0]["image"] == "example/python:3"
    _assert_least_privilege(pod)


def test_probe_configmap_holds_the_script_and_fails_clearly_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cm = render.probe_configmap("t-ns")
    assert cm["metadata"]["name"] == "nvml-probe"
    assert cm["data"]["probe.py"] == render_gpu.PROBE_SCRIPT.read_text(encoding="utf-8")
    # The bindings travel with the probe (their licence in their own header), with their version; a
    # ConfigMap holds at most 1 MiB.
    assert sorted(cm["data"]) == ["probe.py", "pynvml.py", "pynvml.version"]
    shipped = cm["data"]["pynvml.py"]
    assert "def nvmlInit" in shipped and "Redistribution and use in source" in shipped[:3000]
    assert cm["data"]["pynvml.version"] == f"nvidia-ml-py {bindings.VERSION}\n"
    assert sum(len(v.encode()) for v in cm["data"].values()) < 1024 * 1024
    monkeypatch.setattr(render_gpu, "probe_files", lambda: (tmp_path / "absent" / "probe.py").read_text())
    with pytest.raises(UsageError, match=r"probe\.py"):
        render.probe_configmap("t-ns")


def test_kind_probe_pod_uses_the_preloaded_image_and_never_pulls() -> None:
    kind = {"provider": "kind", "nodes": {"gpu_workers": [{"count": 2, "gpus": 2}]}}
    p = _profile(cluster=kind)
    (c,) = render.probe_pod(p, "probe-1", "t-ns", 1)["spec"]["containers"]
    assert c["image"] == render_gpu.KIND_PROBE_IMAGE and c["imagePullPolicy"] == "Never"
    own = _profile(cluster=kind, gpu={"probe_image": "registry.example/py:3.12"})
    (c,) = render.probe_pod(own, "probe-1", "t-ns", 1)["spec"]["containers"]
    assert c["image"] == "registry.example/py:3.12" and "imagePullPolicy" not in c


def test_intruder_has_no_toleration_and_aims_at_the_pool() -> None:
    p = _profile()
    pod = render.intruder_pod(p, "intruder", "t-ns", node_name="gpu-1")
    spec = pod["spec"]
    assert "tolerations" not in spec and "affinity" not in spec
    assert spec["nodeSelector"] == {"pool": "infer-srv", "kubernetes.io/hostname": "gpu-1"}
    assert spec["containers"][0]["image"] == render.INTRUDER_IMAGE
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["requests"]
    _assert_least_privilege(pod)


# --- kind, device plugin, Seldon values --------------------------------------------------------------


def test_kind_config_nodes_taints_labels_and_passthrough() -> None:
    p = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    p = parse_profile({**p.model_dump(exclude={"source"}), "cluster": {
        **p.cluster.model_dump(), "nodes": {"cpu_workers": {"count": 2}, "gpu_workers": [
            {"count": 2, "gpus": 2},
            {"count": 1, "gpus": 1, "host_gpus": [["GPU-aaaa"]], "labels": {"x": "y", "pool": "other"}}]}}},
        "kind-test")
    cfg = render.kind_config(p)
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker", "worker", "worker"]
    assert all(n["image"] == p.cluster.node_image for n in cfg["nodes"])
    assert cfg["nodes"][0]["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 30080, "listenAddress": "127.0.0.1", "protocol": "TCP"}]
    cpu_workers, gpu_workers = cfg["nodes"][1:3], cfg["nodes"][3:]
    assert all("kubeadmConfigPatches" not in n and "extraMounts" not in n for n in cpu_workers)
    mounts = [[m["containerPath"] for m in n["extraMounts"]] for n in gpu_workers]
    assert mounts == [
        ["/var/run/nvidia-container-devices/0", "/var/run/nvidia-container-devices/1"],
        ["/var/run/nvidia-container-devices/2", "/var/run/nvidia-container-devices/3"],
        ["/var/run/nvidia-container-devices/GPU-aaaa"],
    ]
    assert all(m["hostPath"] == "/dev/null" for n in gpu_workers for m in n["extraMounts"])
    for node in gpu_workers:
        assert node["labels"]["pool"] == "infer-srv"
        assert node["labels"]["nvidia.com/gpu.present"] == "true"
        (patch_text,) = node["kubeadmConfigPatches"]
        patch = yaml.safe_load(patch_text)
        assert patch == {"kind": "JoinConfiguration", "nodeRegistration": {"taints": [
            {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}]}}
    assert gpu_workers[2]["labels"]["x"] == "y"
    assert gpu_workers[2]["labels"]["pool"] == "infer-srv"  # the pool label wins over extras
    assert gpu_workers[0]["labels"]["nvidia.com/gpu.count"] == "2"


def test_kind_config_fake_gpus_has_no_passthrough_and_bad_host_gpus_is_a_usage_error() -> None:
    p = load_profile(ROOT / "profiles" / "kind-cpu.yaml")
    cfg = render.kind_config(p)
    assert all("extraMounts" not in n for n in cfg["nodes"])
    assert sum(1 for n in cfg["nodes"] if "kubeadmConfigPatches" in n) == 2
    bad = _profile(cluster={"provider": "kind",
                            "nodes": {"gpu_workers": [{"count": 1, "gpus": 2, "host_gpus": [["0"]]}]}})
    with pytest.raises(UsageError, match="host_gpus"):
        render.kind_config(bad)


def test_device_plugin_values_tolerate_the_profile_taint() -> None:
    p = _profile(cluster={"provider": "kind", "nodes": {"gpu_workers": [{"count": 1, "gpus": 2}]}},
                 gpu={"taint": {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
                      "device_plugin": {"device_list_strategy": "envvar"}})
    values = render.device_plugin_values(p)
    assert values["runtimeClassName"] == "nvidia"
    assert values["deviceListStrategy"] == "envvar"
    assert values["tolerations"] == [
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},
    ]
    expr = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]
    assert expr == [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]
    assert render.runtime_class() ["handler"] == "nvidia"


def test_runtime_values_kafka_parts_off_unless_kafka_and_overrides_merge() -> None:
    off = render.runtime_values(_profile())
    assert off["dataflow"]["disable"] and off["modelgateway"]["disable"] and off["pipelinegateway"]["disable"]
    assert off["hodometer"]["disable"] is True
    assert "serviceType" not in off["envoy"]  # sim: the chart default
    for component in ("scheduler", "envoy", "hodometer"):
        expr = off[component]["podSpec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
        assert expr == [{"key": "pool", "operator": "NotIn", "values": ["infer-srv"]}]
    on = render.runtime_values(_profile(seldon={"kafka": True, "runtime_values": {"envoy": {"replicas": 2}}}))
    assert not on["dataflow"]["disable"] and not on["modelgateway"]["disable"]
    assert on["envoy"]["replicas"] == 2 and "podSpec" in on["envoy"]  # merged, not replaced
    kind = render.runtime_values(load_profile(ROOT / "profiles" / "kind-gpu.yaml"))
    assert kind["envoy"]["serviceType"] == "NodePort"
    assert render.setup_values(_profile(seldon={"setup_values": {"controller": {"clusterwide": True}}})) == {
        "controller": {"clusterwide": True}}


def test_mesh_nodeport_service_on_kind() -> None:
    p = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    rendered = render.render_all(p)
    (svc,) = rendered["seldon/mesh-nodeport.yaml"]
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == p.cluster.mesh_node_port
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "seldon-envoy"}
    mapping = rendered["kind/cluster.yaml"][0]["nodes"][0]["extraPortMappings"][0]
    assert mapping["containerPort"] == p.cluster.mesh_node_port


# --- whole renders: files, determinism, schemas ----------------------------------------------------------


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_render_all_files_and_determinism(path: Path) -> None:
    p = load_profile(path)
    first = render.render_all(p)
    second = render.render_all(load_profile(path))
    assert list(first) == sorted(first)
    assert {k: dump_documents(v) for k, v in first.items()} == {k: dump_documents(v) for k, v in second.items()}
    for name in ("seldon/setup-values.yaml", "seldon/runtime-values.yaml", "seldon/servers.yaml",
                 "seldon/models.yaml", "gpu/probe.yaml", "placement/intruder.yaml"):
        assert name in first
    assert ("kind/cluster.yaml" in first) == (p.cluster.provider == "kind")
    assert ("gpu/device-plugin-values.yaml" in first) == (p.gpu.device_plugin.install and not p.cluster.fake_gpus)
    assert [s["metadata"]["name"] for s in first["seldon/servers.yaml"]] == [s.name for s in p.servers]
    for docs in first.values():
        for doc in docs:
            if _is_k8s_object(doc) and doc["kind"] != "Cluster":
                assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "seldon-gpu-harness"


def test_the_fast_yaml_emitter_writes_what_the_python_one_writes() -> None:
    """Rendering uses libyaml's emitter where PyYAML has it; the files must be the bytes the pure-Python
    emitter writes (the same dumper settings on the Python base): two profiles that between them render
    every file (kind's cluster and patches, time-slicing and MIG configs, the probe's script)."""
    from harness.render import yamlio

    assert yaml.__with_libyaml__, "PyYAML without libyaml: rendering falls back to the Python emitter"
    assert issubclass(yamlio._Dumper, yaml.CSafeDumper)

    class PythonDumper(yaml.SafeDumper):
        pass

    PythonDumper.add_representer(str, yamlio._str)
    for path in (ROOT / "profiles" / "kind-gpu-timeslicing.yaml", ROOT / "profiles" / "sim-mig.yaml"):
        for name, docs in render.render_all(load_profile(path)).items():
            python = yaml.dump_all(list(docs), Dumper=PythonDumper, sort_keys=False, default_flow_style=False,
                                   explicit_start=True, width=120)
            assert dump_documents(docs) == python, f"{path.name}: {name}"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_render_cli_output_is_byte_identical(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--profile", str(path), "--out", str(tmp_path / "a")]) == 0
    assert main(["render", "--profile", str(path), "--out", str(tmp_path / "b")]) == 0
    files_a = sorted(f.relative_to(tmp_path / "a") for f in (tmp_path / "a").rglob("*.yaml"))
    files_b = sorted(f.relative_to(tmp_path / "b") for f in (tmp_path / "b").rglob("*.yaml"))
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert load_all((tmp_path / "a" / rel).read_text(encoding="utf-8"), str(rel))
    assert str(tmp_path / "a" / "seldon" / "servers.yaml") in capsys.readouterr().out


def test_render_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--profile", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "profile file not found" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["render", "--profile", str(PROFILES[0]), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_builtin_kinds_validate_against_kubernetes_schemas(path: Path) -> None:
    rendered = render.render_all(load_profile(path))
    checked = 0
    for docs in rendered.values():
        for doc in docs:
            if _is_builtin(doc):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                checked += 1
    assert checked >= 3  # at least the probe ConfigMap, the probe Pod and the intruder Pod


def _is_builtin(doc: dict[str, Any]) -> bool:
    if not _is_k8s_object(doc):
        return False
    api = str(doc["apiVersion"])
    group = api.split("/")[0] if "/" in api else ""
    return group in ("", "apps", "batch") or (group.endswith(".k8s.io") and not group.startswith("kind."))


def test_kubernetes_validation_catches_a_broken_pod() -> None:
    pod = render.intruder_pod(_profile(), "intruder", "ns")
    pod["spec"]["containers"][0]["securityContext"]["runAsUser"] = "root"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def _crd_schemas() -> dict[str, dict[str, Any]]:
    if not CRD_DIR.is_dir():
        pytest.skip(f"Seldon CRDs not found at {CRD_DIR}; check out the shared folder beside the repository "
                    "(../shared/seldon-crds) to validate Seldon objects")
    return _load_crd_schemas()


@functools.cache
def _load_crd_schemas() -> dict[str, dict[str, Any]]:
    if not CRD_DIR.is_dir():
        pytest.skip(f"Seldon CRDs not found at {CRD_DIR}; check out the shared folder beside the repository "
                    "(../shared/seldon-crds) to validate Seldon objects")
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("mlops.seldon.io_*.yaml")):
        # The C loader when present: the CRDs are large and the pure-Python parser takes seconds each.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    # Built once per kind: jsonschema.validate() would re-check the (large) schema on every call.
    return jsonschema.Draft7Validator(_load_crd_schemas()[kind])


def _validate_seldon(doc: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> None:
    assert doc["kind"] in schemas
    _validator(doc["kind"]).validate(doc)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_seldon_objects_validate_against_the_crds(path: Path) -> None:
    schemas = _crd_schemas()
    p = load_profile(path)
    rendered = render.render_all(p)
    docs = rendered["seldon/servers.yaml"] + rendered["seldon/models.yaml"]
    assert docs
    for doc in docs:
        _validate_seldon(doc, schemas)
    for s in p.gpu_servers:
        variant = render.server_config(p, s, p.seldon.namespace, base=_base_server_config(s.server_config))
        assert variant is not None
        _validate_seldon(variant, schemas)


def test_crd_validation_catches_a_broken_server() -> None:
    # Guards the guard: the schema check must be able to fail.
    schemas = _crd_schemas()
    p = _profile()
    broken = render.server(p, p.server("gpu-aff"), "ns")
    broken["spec"]["replicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        _validate_seldon(broken, schemas)


def test_triton_server_pins_seldons_triton_image_and_one_gpu() -> None:
    # Seldon 2.10.2's default `triton` ServerConfig runs nvcr.io/nvidia/tritonserver:23.03-py3.
    for name in ("kind-gpu", "existing", "sim"):
        p = load_profile(ROOT / "profiles" / f"{name}.yaml")
        servers = [s for s in p.servers if s.server_config == "triton" and s.gpus]
        assert [s.gpus for s in servers] == [1], name
        spec = render.server(p, servers[0], p.seldon.namespace)["spec"]
        triton = next(c for c in spec["podSpec"]["containers"] if c["name"] == "triton")
        assert triton["image"] == "nvcr.io/nvidia/tritonserver:23.03-py3"
        assert triton["resources"]["requests"]["nvidia.com/gpu"] == triton["resources"]["limits"]["nvidia.com/gpu"]
        assert spec["podSpec"]["tolerations"] and spec["podSpec"]["affinity"]
        gpu_models = [m for m in p.models if p.intended_server(m) == servers[0].name]
        # The GPU proof needs a model whose kernels run on the GPU: Seldon 2.10.2's FP32 mnist ONNX sample,
        # never tfsimple's INT32 add/sub (TensorFlow keeps those on the host even in a KIND_GPU instance).
        assert [m.storage_uri for m in gpu_models] == ["gs://seldon-models/scv2/samples/triton_23-03/mnist-onnx"], name
        assert {t.datatype for m in gpu_models for t in (m.input, m.expected_output) if t} == {"FP32"}, name
        assert not [m for m in gpu_models if m.inputs or "tensorflow" in m.requirements], name
