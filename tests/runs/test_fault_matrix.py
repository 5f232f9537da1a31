"""The fault matrix: every fault ends the run with a verdict naming its cause, and the cluster is
left as it was found.

The cluster is an in-process simulated cluster (its `faults` reachable from the test) that the run
attaches to over HTTP as an existing cluster, exactly as a user's run attaches to theirs. Each case
compares a capture of nodes, namespaces, pods and Seldon objects taken before the run with one taken
after `down()`. docs/reliability.md summarises the matrix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.checks import placement
from harness.checks.leftovers import differences
from harness.checks.slo import evaluate_slo, failed
from harness.config import Profile, parse_profile
from harness.kube import Kube
from harness.lifecycle import ClusterSession, RunOptions
from harness.sim.cluster import SimCluster
from harness.testkit.helpers import capture_cluster_state

IRIS = "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn"
BASE: dict[str, Any] = {
    "name": "faults",
    "cluster": {"provider": "sim", "name": "fm", "nodes": {
        "cpu_workers": {"count": 1},
        "gpu_workers": [{"count": 1, "gpus": 2, "product": "NVIDIA-H200"}],
    }},
    "servers": [
        {"name": "mlserver-gpu", "gpus": 1},
        {"name": "mlserver-cpu", "gpus": 0, "extra_capabilities": ["model-on-cpu"]},
    ],
    "models": [
        {"name": "iris-gpu", "storage_uri": IRIS, "requirements": ["sklearn", "model-on-gpu"],
         "input": {"name": "predict", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}},
    ],
    "slo": {"p99_ms": 500, "max_error_rate": 0.0},
    "load": {"rate": 30, "duration_s": 3, "warmup_s": 0.5, "window_s": 3, "max_trials": 1},
    "timeouts": {"server_ready_s": 60, "model_ready_s": 60, "pod_schedule_s": 15, "delete_s": 60},
}
NAMESPACE = "seldon-mesh"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    workdir = tmp_path_factory.mktemp("fault-sim")
    cluster = SimCluster(parse_profile(BASE, "fault-matrix"), workdir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Run:
    session: ClusterSession
    sim: SimCluster
    kube: Kube
    profile: Profile

    def gpu_pod(self) -> str:
        return "mlserver-gpu-0"


@pytest.fixture
def run(sim: SimCluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    data = {**BASE, "cluster": {**BASE["cluster"], "provider": "existing",
                                "kubeconfig": str(sim.kubeconfig_path)},
            "seldon": {"install": False}, "gpu": {"device_plugin": {"install": False}}}
    profile = parse_profile(data, "fault-matrix-existing")
    kube = Kube.from_kubeconfig(sim.kubeconfig_path, None, profile.timeouts)
    before = capture_cluster_state(kube, NAMESPACE)
    session = ClusterSession(profile, RunOptions(run_id="fm", workdir=tmp_path))
    session.up()
    try:
        yield Run(session, sim, kube, profile)
    finally:
        sim.faults.clear()
        problems = session.down()
        left = differences(before, capture_cluster_state(kube, NAMESPACE))
        assert left == [], f"left behind after {request.node.name}: {left} (cleanup problems: {problems})"


def test_api_500_on_create_is_retried_and_the_run_passes(run: Run) -> None:
    run.sim.faults.fail_next("create", "servers", count=2, code=500)
    run.session.deploy()
    assert run.session.deploy_error is None
    assert run.sim.faults.injected >= 2


def test_api_500_beyond_the_retry_bound_names_the_cause(run: Run) -> None:
    run.sim.faults.fail_next("*", "servers", count=1000, code=500)
    run.session.deploy()
    error = run.session.deploy_error or ""
    assert "servers failed" in error and ("500" in error or "InternalError" in error), error
    run.sim.faults.clear()


def test_api_429_during_waits_honours_retry_after(run: Run) -> None:
    run.sim.faults.fail_next("list", "models", count=2, code=429, retry_after=1)
    run.session.deploy()
    assert run.session.deploy_error is None


def test_dropped_watch_streams_during_waits_resume(run: Run) -> None:
    stop = threading.Event()
    dropped = []

    def dropper() -> None:
        # Bounded: at most 200 drops, 0.2 s apart, until the deployment is done.
        for _ in range(200):
            if stop.wait(0.2):
                return
            dropped.append(run.sim.faults.drop_watches())

    thread = threading.Thread(target=dropper, daemon=True)
    thread.start()
    try:
        run.session.deploy()
    finally:
        stop.set()
        thread.join(5)
    assert run.session.deploy_error is None
    assert sum(dropped) > 0, "no watch stream was open to drop"


def test_model_that_fails_to_load_is_named(run: Run) -> None:
    run.sim.faults.model_load_failure(NAMESPACE, "iris-gpu")
    try:
        run.session.deploy()
    finally:
        run.sim.faults.trigger("clear_model_load_failure", NAMESPACE, "iris-gpu")
    error = run.session.deploy_error or ""
    assert "Model iris-gpu" in error, error
    assert "ModelFailed" in error or "fail" in error.lower(), error


def test_crash_looping_server_pod_is_named_with_evidence(run: Run, tmp_path: Path) -> None:
    run.session.deploy()
    assert run.session.deploy_error is None
    run.sim.faults.trigger("pod_crash_loop", NAMESPACE, run.gpu_pod())
    server = run.kube.wait_for(
        "mlops.seldon.io/v1alpha1", "Server", "mlserver-gpu", NAMESPACE,
        lambda s: not any(c.get("type") == "Ready" and c.get("status") == "True"
                          for c in ((s or {}).get("status") or {}).get("conditions") or []),
        timeout=30, what="Server not Ready while its pod crash-loops",
    )
    assert server is not None
    from harness.lifecycle import diagnose_server

    why = diagnose_server(run.kube, "mlserver-gpu", NAMESPACE)
    assert "CrashLoopBackOff" in why, why
    from harness.kube.evidence import collect_evidence

    files = collect_evidence(run.kube, tmp_path / "evidence", [NAMESPACE], seldon_namespace=NAMESPACE)
    assert any("previous" in str(f) for f in files), [str(f) for f in files]
    run.sim.faults.trigger("end_crash_loop", NAMESPACE, run.gpu_pod())


def test_gpu_node_going_not_ready_mid_run_fails_placement_naming_the_node(run: Run) -> None:
    run.session.deploy()
    assert run.session.deploy_error is None
    node = (run.kube.get("v1", "Pod", run.gpu_pod(), NAMESPACE) or {})["spec"]["nodeName"]
    run.sim.faults.node_not_ready(node)
    try:
        run.kube.wait_for("v1", "Node", node, None,
                          lambda n: any(t.get("key") == "node.kubernetes.io/not-ready"
                                        for t in ((n or {}).get("spec") or {}).get("taints") or []),
                          timeout=15, what=f"node {node} tainted not-ready")
        snapshot = run.session.snapshot()
        findings = placement.all_findings(snapshot, run.profile)
        node_obj = snapshot.node(node) or {}
        ready = [c for c in (node_obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
        assert ready and ready[0]["status"] != "True"
        # The pod rides out the NotReady node (DefaultTolerationSeconds) and the verdict says so.
        messages = [str(f) for f in findings]
        assert f"pod/{NAMESPACE}/{run.gpu_pod()}: on node {node}: node is not Ready" in messages, messages
        table = placement.format_table(placement.placement_table(snapshot, run.profile, findings))
        assert "node.kubernetes.io/not-ready" in table, table
    finally:
        run.sim.faults.node_ready(node)


def test_mlserver_killed_during_the_latency_run_fails_the_slo_with_the_cause(run: Run) -> None:
    from harness.load import LoadSpec, run_load

    run.session.deploy()
    assert run.session.deploy_error is None
    model = run.profile.models[0]
    assert run.session.mesh is not None
    spec = LoadSpec.from_profile(run.profile, model, run.session.mesh.http_url)
    killer = threading.Timer(1.5, lambda: run.sim.faults.kill_mlserver(NAMESPACE, run.gpu_pod()))
    killer.start()
    try:
        result = run_load(spec).to_dict()
    finally:
        killer.cancel()
    verdicts = failed(evaluate_slo(result, run.profile.slo_for(model.name)))
    assert verdicts, f"a run whose server died should fail its SLO: {result}"
    reasons = " ".join(v.reason for v in verdicts)
    assert "error rate" in reasons or "incomplete" in reasons, reasons


def test_a_second_run_on_the_same_cluster_is_refused_and_leaves_the_first_alone(run: Run, tmp_path: Path) -> None:
    run.session.deploy()
    assert run.session.deploy_error is None
    other = ClusterSession(run.profile, RunOptions(run_id="fm2", workdir=tmp_path / "other"))
    other.up()
    try:
        other.deploy()
        assert other.deploy_error is not None
        assert "Server seldon-mesh/mlserver-gpu already exists and belongs to run 'fm'" in other.deploy_error
    finally:
        assert other.down() == []
    # The first run's Servers and Models are untouched by the second run's cleanup.
    assert run.kube.get("mlops.seldon.io/v1alpha1", "Server", "mlserver-gpu", NAMESPACE) is not None
    assert placement.models_on_intended_servers(run.session.snapshot(), run.profile) == []
