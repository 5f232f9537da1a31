"""Lint: each seed mistake is caught by its rule, shipped profiles pass, exit codes 0/1/2."""

from __future__ import annotations

import copy
import json
import marshal
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from harness import render
from harness.cli import main
from harness.commands.lint import read_live_nodes
from harness.config import Profile, load_profile, parse_profile
from harness.errors import UsageError
from harness.k8s.taints import toleration_matches as tolerates
from harness.lint import (
    ALL_RULES,
    Finding,
    documents_from_rendered,
    expected_nodes,
    format_json,
    has_errors,
    lint_documents,
    lint_manifests,
    lint_rendered,
    load_manifests,
)
from harness.lint.podspec import selects_node

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "data" / "seed"
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
DEFAULT = Profile()


def _seed(name: str, profile: Profile = DEFAULT) -> list[Finding]:
    return lint_documents(load_manifests([str(SEED / name)]), profile)


def _rules(findings: list[Finding], severity: str = "error") -> set[str]:
    return {f.rule for f in findings if f.severity == severity}


def _profile() -> Profile:
    return load_profile(ROOT / "profiles" / "sim.yaml")


# --- the seed's mistakes, one test each ---------------------------------------------------------------


def test_seed_gpu_requests_differ_from_limits() -> None:
    findings = _seed("server-gpu-limits.yaml")
    assert _rules(findings) == {"GPU001"}
    (f,) = findings
    assert f.object == "Server/seldon-mesh/mlserver-gpu-a"
    assert f.field == "spec.podSpec.containers[mlserver].resources"
    assert "requests 1 != limits 2" in f.message


def test_seed_server_fragment_without_server_config() -> None:
    findings = _seed("server-fragment.yaml")
    assert _rules(findings) == {"SEL003"}
    assert [f.field for f in findings if f.rule == "SEL003"] == ["spec.serverConfig"]


def test_seed_model_fragment_without_storage_uri() -> None:
    findings = _seed("model-fragment.yaml")
    assert _rules(findings) == {"SEL004"}
    assert findings[0].object == "Model/seldon-mesh/llm-on-gpu"


def test_seed_partial_server_config() -> None:
    findings = _seed("serverconfig-partial.yaml")
    assert _rules(findings) == {"SEL007"}
    assert "missing rclone, agent" in findings[0].message


def test_seed_device_plugin_daemonset_tolerating_only_nvidia_gpu() -> None:
    findings = _seed("device-plugin-daemonset.yaml")
    assert _rules(findings) == {"GPU006"}
    assert findings[0].object == "DaemonSet/kube-system/nvidia-device-plugin-daemonset"


def test_seed_device_plugin_values_with_chart_default_tolerations() -> None:
    findings = _seed("device-plugin-values.yaml")
    assert _rules(findings) == {"GPU006"}
    assert findings[0].object == "HelmValues/nvidia-device-plugin"
    assert "default tolerations" in findings[0].message


def test_seed_directory_cli_reports_every_mistake(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(SEED)]) == 1
    out = capsys.readouterr().out.splitlines()
    rules = {line.split()[1] for line in out if line.startswith("error ")}
    assert rules == {"GPU001", "GPU006", "SEL003", "SEL004", "SEL007"}
    assert out[-1] == "6 error(s), 0 warning(s)"


def test_seed_with_a_profile_whose_taint_the_seed_matches_still_fails_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lint", "--profile", str(ROOT / "profiles" / "kind-gpu.yaml"), "--format", "json",
                 str(SEED / "server-gpu-limits.yaml")]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["errors"] == 1
    assert payload["findings"][0]["rule"] == "GPU001"
    assert payload["findings"][0]["source"].endswith("server-gpu-limits.yaml#1")


# --- shipped profiles and the render output ----------------------------------------------------------


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_shipped_profiles_lint_clean(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--profile", str(path)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0 error(s), 0 warning(s)"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_rendered_files_lint_clean_from_disk(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--profile", str(path), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["lint", "--profile", str(path), str(tmp_path)]) == 0


def _servers(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in rendered["seldon/servers.yaml"]}


def test_removing_the_toleration_from_a_rendered_server_is_caught() -> None:
    p = _profile()
    rendered = render.render_all(p)
    del _servers(rendered)["mlserver-gpu"]["spec"]["podSpec"]["tolerations"]
    findings = lint_rendered(rendered, p)
    assert [(f.rule, f.object) for f in findings if f.severity == "error"] == [
        ("GPU002", "Server/seldon-mesh/mlserver-gpu")]


def test_wrong_toleration_effect_and_value_are_caught() -> None:
    p = _profile()
    rendered = render.render_all(p)
    tol = _servers(rendered)["mlserver-gpu"]["spec"]["podSpec"]["tolerations"][0]
    tol["effect"] = "NoExecute"
    assert _rules(lint_rendered(rendered, p)) == {"GPU003"}
    tol["effect"], tol["value"] = "NoSchedule", "false"
    assert _rules(lint_rendered(rendered, p)) == {"GPU003"}
    tol["operator"] = "Exists"  # Exists ignores the value: tolerated again
    del tol["value"]
    assert _rules(lint_rendered(rendered, p)) == set()


def test_gpu_server_without_pool_selection_is_caught() -> None:
    p = _profile()
    rendered = render.render_all(p)
    servers = _servers(rendered)
    del servers["mlserver-gpu"]["spec"]["podSpec"]["affinity"]
    del servers["mlserver-gpu-sel"]["spec"]["podSpec"]["nodeSelector"]
    findings = [f for f in lint_rendered(rendered, p) if f.rule == "GPU004"]
    assert sorted(f.object for f in findings) == [
        "Server/seldon-mesh/mlserver-gpu", "Server/seldon-mesh/mlserver-gpu-sel"]


def test_selection_no_node_satisfies_is_caught_and_is_a_warning_on_existing_clusters() -> None:
    p = _profile()
    rendered = render.render_all(p)
    _servers(rendered)["mlserver-gpu-sel"]["spec"]["podSpec"]["nodeSelector"]["gpu-type"] = "a100"
    assert [(f.rule, f.severity) for f in lint_rendered(rendered, p)] == [("GPU005", "error")]
    existing = load_profile(ROOT / "profiles" / "existing.yaml")
    server = render.server(existing, existing.servers[0], "seldon-mesh")
    server["spec"]["podSpec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"].append({"key": "cloud/accel", "operator": "Exists"})
    assert [(f.rule, f.severity) for f in lint_manifests([server], existing)] == [("GPU005", "warning")]


def test_replica_rules() -> None:
    p = _profile()
    rendered = render.render_all(p)
    spec = _servers(rendered)["mlserver-cpu"]["spec"]
    spec["maxReplicas"] = 3
    assert [(f.rule, f.severity) for f in lint_rendered(rendered, p)] == [("SEL002", "error")]
    del spec["maxReplicas"], spec["minReplicas"]
    findings = lint_rendered(rendered, p)
    assert [(f.rule, f.severity, f.field) for f in findings] == [("SEL001", "warning", "spec.minReplicas/maxReplicas")]
    assert not has_errors(findings)


def test_model_that_no_server_offers_and_bad_pin_are_caught() -> None:
    p = _profile()
    rendered = render.render_all(p)
    models = {m["metadata"]["name"]: m for m in rendered["seldon/models.yaml"]}
    models["iris-gpu"]["spec"]["requirements"] = ["sklearn", "model-on-tpu"]
    models["iris-pinned"]["spec"]["server"] = "no-such-server"
    findings = [f for f in lint_rendered(rendered, p) if f.rule == "SEL005"]
    assert sorted((f.object, f.field) for f in findings) == [
        ("Model/seldon-mesh/iris-gpu", "spec.requirements"), ("Model/seldon-mesh/iris-pinned", "spec.server")]


def test_extra_capabilities_trap_model_without_gpu_requirement() -> None:
    p = _profile()
    rendered = render.render_all(p)
    models = {m["metadata"]["name"]: m for m in rendered["seldon/models.yaml"]}
    models["iris-cpu"]["spec"]["requirements"] = ["sklearn"]  # also offered by every GPU Server
    findings = [f for f in lint_rendered(rendered, p) if f.rule == "SEL006"]
    assert {f.object for f in findings} == {"Model/seldon-mesh/iris-cpu"}
    assert "mlserver-gpu" in " ".join(f.message for f in findings)
    assert "#4968" in findings[0].message
    del models["iris-cpu"]["spec"]["requirements"]  # no requirements at all: lands anywhere
    assert {f.object for f in lint_rendered(rendered, p) if f.rule == "SEL006"} == {"Model/seldon-mesh/iris-cpu"}


def test_server_merged_with_a_server_config_in_the_same_manifests() -> None:
    p = _profile()
    sc = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "ServerConfig",
          "metadata": {"name": "gpu-sc", "namespace": "seldon-mesh"},
          "spec": {"podSpec": {
              "tolerations": [{"key": "seldon-gpu-srv", "operator": "Exists"}],
              "nodeSelector": {"pool": "infer-srv"},
              "containers": [
                  {"name": "rclone", "image": "r"},
                  {"name": "agent", "image": "a",
                   "env": [{"name": "SELDON_SERVER_CAPABILITIES", "value": "mlserver,sklearn,gpu-only"}]},
                  {"name": "mlserver", "image": "m",
                   "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}]}}}
    srv = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server",
           "metadata": {"name": "from-sc", "namespace": "seldon-mesh"},
           "spec": {"serverConfig": "gpu-sc", "replicas": 1, "minReplicas": 1, "maxReplicas": 1}}
    model = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
             "metadata": {"name": "m", "namespace": "seldon-mesh"},
             "spec": {"storageUri": "gs://x", "requirements": ["gpu-only"]}}
    assert lint_manifests([sc, srv, model], p) == []
    # The Server's own container fragment is merged by name: a limit of 2 over the config's request of 1.
    bad = copy.deepcopy(srv)
    bad["spec"]["podSpec"] = {"containers": [{"name": "mlserver", "resources": {"limits": {"nvidia.com/gpu": 2}}}]}
    found = [(f.rule, f.object) for f in lint_manifests([sc, bad, model], p)]
    assert found == [("GPU001", "Server/seldon-mesh/from-sc")]
    # Model asking for what the agent does not offer.
    model["spec"]["requirements"] = ["tensorrt"]
    assert _rules(lint_manifests([sc, srv, model], p)) == {"SEL005"}


def test_kafka_components_enabled_without_kafka_warn() -> None:
    p = _profile()
    rendered = render.render_all(p)
    values = rendered["seldon/runtime-values.yaml"][0]
    values["dataflow"]["disable"] = False
    del values["modelgateway"]
    findings = lint_rendered(rendered, p)
    assert [(f.rule, f.severity, f.field) for f in findings] == [
        ("SEL008", "warning", "dataflow.disable"), ("SEL008", "warning", "modelgateway.disable")]
    kafka = parse_profile({**p.model_dump(exclude={"source"}), "seldon": {"kafka": True}}, "kafka")
    assert lint_rendered(rendered, kafka) == []


def test_kind_node_image_must_be_pinned_and_supported() -> None:
    p = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    cfg = render.kind_config(p)
    assert lint_manifests([cfg], p) == []
    cfg["nodes"][1]["image"] = "kindest/node:v1.34.0"
    cfg["nodes"][2]["image"] = "kindest/node:v1.26.3@sha256:" + "a" * 64
    findings = lint_manifests([cfg], p)
    assert [(f.rule, f.severity, f.field) for f in findings] == [
        ("KIND001", "warning", "nodes[1].image"), ("KIND001", "warning", "nodes[2].image")]


def test_rule_catalogue_has_unique_stable_ids() -> None:
    ids = [r.id for r in ALL_RULES]
    assert len(ids) == len(set(ids))
    for wanted in ("GPU001", "GPU002", "GPU003", "GPU004", "GPU005", "GPU006", "SEL001", "SEL002", "SEL003",
                   "SEL004", "SEL005", "SEL006", "SEL007", "NODE001", "NODE002", "NODE003"):
        assert wanted in ids


# --- scheduling semantics used by the rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, True),
        ({"key": "seldon-gpu-srv", "value": "true"}, True),  # default operator Equal, any effect
        ({"key": "seldon-gpu-srv", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # empty key + Exists tolerates everything
        ({"key": "seldon-gpu-srv", "operator": "Equal", "value": "false"}, False),
        ({"key": "seldon-gpu-srv", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, False),
        # ToleratesTaint skips an empty key and compares values (API validation refuses this shape).
        ({"operator": "Equal", "value": "true"}, True),
    ],
)
def test_toleration_semantics(toleration: dict[str, str], expected: bool) -> None:
    assert tolerates(toleration, {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}) is expected


def test_node_selection_semantics() -> None:
    node = {"metadata": {"name": "n1", "labels": {"pool": "infer-srv", "gpus": "4"}}}
    term = lambda *e: {"affinity": {"nodeAffinity": {  # noqa: E731
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": list(e)}]}}}}
    assert selects_node(term({"key": "pool", "operator": "In", "values": ["infer-srv"]}), node)
    assert not selects_node(term({"key": "pool", "operator": "NotIn", "values": ["infer-srv"]}), node)
    assert selects_node(term({"key": "other", "operator": "NotIn", "values": ["x"]}), node)
    assert selects_node(term({"key": "gpus", "operator": "Gt", "values": ["2"]}), node)
    assert not selects_node(term({"key": "gpus", "operator": "Lt", "values": ["2"]}), node)
    assert selects_node(term({"key": "other", "operator": "DoesNotExist"}), node)
    assert not selects_node({"nodeSelector": {"pool": "other"}}, node)
    or_terms = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "x", "operator": "Exists"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}
    assert selects_node(or_terms, node)


def test_expected_nodes_follow_the_profile() -> None:
    p = _small_profile()
    nodes = expected_nodes(p)
    gpu = [n for n in nodes if n["metadata"]["labels"].get("pool") == "infer-srv"]
    assert len(nodes) == 1 + 1 + 2 and len(gpu) == 2
    assert all(n["spec"]["taints"] == [{"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}] for n in gpu)
    assert all(n["status"]["allocatable"]["nvidia.com/gpu"] == "2" for n in gpu)


# --- unusable input: exit 2, one line naming the file --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "kind: Server\n  spec: [\n", "not valid YAML"),
        ("scalar.yaml", "just text\n", "expected a Kubernetes object"),
        ("nokind.yaml", "metadata: {name: x}\nspec: {}\n", "not a Kubernetes object (no apiVersion and kind)"),
        ("empty.yaml", "---\n", "holds no documents"),
    ],
)
def test_unusable_manifests_exit_2(
    name: str, text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and expected in err


def test_missing_file_and_nothing_to_lint_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(tmp_path / "nope.yaml")]) == 2
    assert "manifest file not found" in capsys.readouterr().err
    assert main(["lint"]) == 2
    assert "nothing to lint" in capsys.readouterr().err
    assert main(["lint", "--kubeconfig", "x", str(SEED / "model-fragment.yaml")]) == 2
    assert "--cluster" in capsys.readouterr().err


def test_list_kind_is_expanded(tmp_path: Path) -> None:
    items = [yaml.safe_load((SEED / "server-gpu-limits.yaml").read_text(encoding="utf-8"))]
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}), encoding="utf-8")
    assert _rules(lint_documents(load_manifests([str(path)]), DEFAULT)) == {"GPU001"}


def test_json_output_is_stable() -> None:
    findings = _seed("server-gpu-limits.yaml")
    assert format_json(findings) == format_json(_seed("server-gpu-limits.yaml"))
    assert json.loads(format_json(findings))["findings"][0]["severity"] == "error"


# --- live nodes (--cluster) -------------------------------------------------------------------------------


def _live_node(name: str, labels: dict[str, str], taints: list[dict[str, str]], gpus: int) -> dict[str, Any]:
    status = {"capacity": {"nvidia.com/gpu": str(gpus)}, "allocatable": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}, "status": status}


TAINT = {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}


def _small_profile() -> Profile:
    return parse_profile({"cluster": {"nodes": {"cpu_workers": {"count": 1}, "gpu_workers": [{"count": 2, "gpus": 2}]}},
                          "servers": [{"name": "g", "gpus": 1}]}, "small")


def test_cluster_rules_over_live_nodes() -> None:
    p = _small_profile()
    docs = load_manifests([str(SEED / "model-fragment.yaml")])
    good = [_live_node("cpu", {}, [], 0),
            _live_node("g1", {"pool": "infer-srv", "nvidia.com/gpu.present": "true"}, [TAINT], 2),
            _live_node("g2", {"pool": "infer-srv"}, [TAINT], 2)]
    assert [f.rule for f in lint_documents(docs, p, nodes=good)] == ["SEL004"]
    bad = [_live_node("untainted", {"pool": "infer-srv"}, [], 1),
           _live_node("unlabelled", {"nvidia.com/gpu.present": "true"}, [TAINT], 1),
           _live_node("no-plugin", {"pool": "infer-srv"}, [TAINT], 0)]
    found = {(f.rule, f.object) for f in lint_documents(docs, p, nodes=bad)}
    assert {("NODE001", "Node/untainted"), ("NODE002", "Node/unlabelled"), ("NODE003", "Node/no-plugin")} <= found
    assert ("NODE004", "Cluster") not in found  # two pool nodes, the profile expects two
    assert ("NODE004", "Cluster") in {(f.rule, f.object) for f in lint_documents(docs, p, nodes=bad[:1])}


def test_affinity_matching_no_live_node_is_an_error() -> None:
    p = _profile()
    nodes = [_live_node("cpu", {}, [], 0)]
    findings = lint_rendered(render.render_all(p), p, nodes=nodes)
    assert ("GPU005", "Server/seldon-mesh/mlserver-gpu", "error") in {(f.rule, f.object, f.severity) for f in findings}


class _NodesHandler(BaseHTTPRequestHandler):
    nodes: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/v1":  # discovery, which the kube wrapper reads to find the nodes resource
            doc: dict[str, Any] = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
                {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
                 "verbs": ["get", "list", "watch"]}]}
        elif path == "/api/v1/nodes":
            doc = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": self.nodes}
        else:
            self.send_error(404)
            return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NodesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
    }), encoding="utf-8")
    return path


def test_cluster_flag_reads_live_nodes(
    api_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_NodesHandler, "nodes", [
        {"apiVersion": "v1", "kind": "Node", **_live_node("gpu-a", {"pool": "infer-srv"}, [], 1)}])
    kubeconfig = _kubeconfig(tmp_path, api_server)
    nodes = read_live_nodes(str(kubeconfig), timeout_s=5)
    assert [n["metadata"]["name"] for n in nodes] == ["gpu-a"]
    code = main(["lint", "--profile", str(ROOT / "profiles" / "sim.yaml"), "--cluster", "--kubeconfig", str(kubeconfig),
                 str(SEED / "device-plugin-values.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "error NODE001 Node/gpu-a spec.taints" in out


def test_cluster_flag_unreachable_or_bad_kubeconfig_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _NodesHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    kubeconfig = _kubeconfig(tmp_path, f"http://127.0.0.1:{port}")
    assert main(["lint", "--cluster", "--kubeconfig", str(kubeconfig), str(SEED / "model-fragment.yaml")]) == 2
    assert "cannot list nodes" in capsys.readouterr().err
    with pytest.raises(UsageError, match="kubeconfig"):
        read_live_nodes(str(tmp_path / "missing-kubeconfig"))


def test_docs_list_every_rule() -> None:
    text = (ROOT / "docs" / "render-and-lint.md").read_text(encoding="utf-8")
    for rule in ALL_RULES:
        assert f"| {rule.id} | {rule.severity} |" in text


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


def test_wrong_field_types_are_usage_errors_never_crashes() -> None:
    """Every field of every seed and rendered document, replaced by a value of another type: lint either
    still works or raises one UsageError line naming the file; no other exception escapes."""
    p = load_profile(ROOT / "profiles" / "kind-gpu.yaml")
    docs = load_manifests([str(SEED)]) + [
        d for d in documents_from_rendered(render.render_all(p)) if d.kind != "ConfigMap"]
    usage_errors = 0
    for position, doc in enumerate(docs):
        for path in list(_paths(doc.body)):
            for bad in (7, "x", ["x"], None):
                body = marshal.loads(marshal.dumps(doc.body))  # a deep copy, several times faster
                target = body
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = bad
                mutated = [*docs[:position], replace(doc, body=body), *docs[position + 1:]]
                try:
                    lint_documents(mutated, p)
                except UsageError as exc:
                    usage_errors += 1
                    assert doc.source in str(exc) and "\n" not in str(exc)
    assert usage_errors > 100  # the shape check did reject the wrong types


def test_wrong_type_in_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = yaml.safe_load((SEED / "server-gpu-limits.yaml").read_text(encoding="utf-8"))
    body["spec"]["podSpec"]["tolerations"] = {"key": "seldon-gpu-srv"}
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: document 1 (Server): spec.podSpec.tolerations: expected a list, got dict"
