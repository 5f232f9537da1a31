"""In-cluster generators on the simulated cluster: the sim's Job controller (Indexed Jobs as
kubernetes/kubernetes pkg/controller/job runs them), and the Done-when test of issue 31: the latency
suite with 3 generator pods, merged exactly, leaving nothing behind; then `harness load --in-cluster`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.checks.leftovers import differences
from harness.config import load_profile
from harness.kube import Kube, KubeApiError
from harness.kube.retry import RetryPolicy
from harness.report import load_report
from harness.testkit.helpers import capture_cluster_state
from tests.kit.sim_fixtures import kube_against
from tests.kit.simproc import ROOT, existing_profile_for, running_sim

Obj = dict[str, Any]
SIM_PROFILE = ROOT / "profiles" / "sim.yaml"
RUN_ID_KEY = "harness.seldon.dev/run-id"


@pytest.fixture
def kube(sim: Any) -> Iterator[Kube]:
    """A `Kube` on the session's sim, with a namespace `jobs` that is deleted afterwards."""
    for k in kube_against(sim, RetryPolicy(attempts=3, base_s=0.01, max_delay_s=0.05)):
        k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "jobs"}})
        try:
            yield k
        finally:
            k.delete("v1", "Namespace", "jobs")


def _job(name: str, code: str, completions: int, backoff: int = 0, restart: str = "Never") -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "jobs"},
            "spec": {"completionMode": "Indexed", "completions": completions, "parallelism": completions,
                     "backoffLimit": backoff,
                     "template": {"spec": {"restartPolicy": restart, "containers": [
                         {"name": "c", "image": "python:3.12-slim", "command": ["python3", "-c", code]}]}}}}


def _finished(job: Obj | None) -> bool:
    return any(c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
               for c in ((job or {}).get("status") or {}).get("conditions") or [])


def test_sim_runs_an_indexed_job_to_completion(kube: Kube) -> None:
    kube.apply(_job("idx", "import os; print('index', os.environ['JOB_COMPLETION_INDEX'])", 3))
    job = kube.wait_for("batch/v1", "Job", "idx", "jobs", _finished, 30.0, "indexed Job")
    assert job is not None
    status = job["status"]
    assert [c["type"] for c in status["conditions"]] == ["Complete"]
    assert (status["succeeded"], status["failed"], status["completedIndexes"]) == (3, 0, "0-2")
    pods = kube.list("v1", "Pod", "jobs", label_selector="batch.kubernetes.io/job-name=idx")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    assert sorted(by_index) == ["0", "1", "2"]
    for index, pod in by_index.items():
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
        assert kube.logs("jobs", pod["metadata"]["name"]).strip() == f"index {index}"
    kube.delete("batch/v1", "Job", "idx", "jobs")
    assert kube.list("v1", "Pod", "jobs", label_selector="batch.kubernetes.io/job-name=idx") == []


def test_sim_fails_a_job_past_its_backoff_limit_and_refuses_restart_always(kube: Kube) -> None:
    kube.apply(_job("bad", "import os, sys; sys.exit(int(os.environ['JOB_COMPLETION_INDEX']) == 1)", 2))
    job = kube.wait_for("batch/v1", "Job", "bad", "jobs", _finished, 30.0, "failing Job")
    assert job is not None
    (failed,) = job["status"]["conditions"]
    assert (failed["type"], failed["reason"]) == ("Failed", "BackoffLimitExceeded")
    refusal = re.escape('spec.template.spec.restartPolicy: Unsupported value: "Always"')
    with pytest.raises(KubeApiError, match=refusal):
        kube.apply(_job("always", "pass", 1, restart="Always"))


def _run_ids_left(kube: Kube, run_id: str) -> list[str]:
    selector = f"{RUN_ID_KEY}={run_id}"
    return [f"{kind} {o['metadata'].get('namespace')}/{o['metadata']['name']}"
            for api, kind in (("batch/v1", "Job"), ("v1", "ConfigMap"), ("v1", "Pod"), ("v1", "Namespace"))
            for o in kube.list(api, kind, None, label_selector=selector)]


@pytest.mark.slow
def test_latency_suite_with_three_generator_pods_merges_exactly_and_leaves_nothing(tmp_path: Path) -> None:
    """Done when (issue 31): the latency suite with 3 generator pods on the sim; the merged counts
    equal the sum of the pods'; no namespace, pod, Job, ConfigMap, Server or Model is left."""
    data = yaml.safe_load(SIM_PROFILE.read_text(encoding="utf-8"))
    load = {**data["load"], "generators": {"where": "cluster", "pods": 3, "cpu": "500m", "start_margin_s": 5}}
    load.pop("sweep", None)
    # One CPU Server and its model: the test is about the load, not the deployment.
    models = [m for m in data["models"] if m["name"] == "iris-cpu"]
    servers = [s for s in data["servers"] if s["name"] == "mlserver-cpu"]
    # Latency SLOs loose on purpose: this test is about where the load comes from and the merge, and a
    # busy shared machine must not fail it; the error budget stays strict.
    slo = {"p50_ms": 5000, "p95_ms": 5000, "p99_ms": 5000, "min_throughput_rps": 1, "max_error_rate": 0.0}
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        profile_path = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "existing.yaml", load=load,
                                            models=models, servers=servers, slo=slo)
        profile = load_profile(profile_path)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
        before = capture_cluster_state(kube, profile.seldon.namespace)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/test_inference_latency.py", "-k", "latency_meets",
             "--profile", str(profile_path), "--report-dir", str(tmp_path / "report"), "-q",
             "-p", "no:cacheprovider", "--run-id", "gens"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert differences(before, capture_cluster_state(kube, profile.seldon.namespace)) == []
        assert _run_ids_left(kube, "gens") == []
        gpu_nodes = {n["metadata"]["name"] for n in kube.list("v1", "Node")
                     if (n["metadata"].get("labels") or {}).get("pool") == "infer-srv"}

        # The command line, on the same cluster: its own namespace, removed afterwards. The model is
        # gone with the suite's cleanup, so every answer is a 404: counted, merged, and exit code 1.
        out = tmp_path / "cli.json"
        cli = subprocess.run(
            [sys.executable, "-m", "harness", "load", "--in-cluster", "--pods", "2", "--kubeconfig",
             str(sim.kubeconfig), "--start-margin", "4", "--model", "iris-cpu", "--rate", "20", "--duration", "1",
             "--warmup", "0.2", "--json", str(out)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        assert cli.returncode == 1, cli.stdout[-3000:] + cli.stderr[-2000:]
        assert "load from the cluster: 2 pod(s) of Job h-" in cli.stdout, cli.stdout
        assert differences(before, capture_cluster_state(kube, profile.seldon.namespace)) == []
        left = [o["metadata"]["name"] for o in kube.list("v1", "Namespace") if o["metadata"]["name"].endswith("-load")]
        assert left == []
    report = load_report(tmp_path / "report" / "report.json")
    (entry,) = report.latency
    result = entry.result
    source = result.source
    assert source is not None and source.where == "cluster" and source.pods == 3
    assert source.target == "http://seldon-mesh.seldon-mesh.svc.cluster.local:80"
    assert sorted(g.index for g in source.generators) == [0, 1, 2]
    assert source.recorded == sum(g.recorded for g in source.generators) == result.ok == sum(g.ok for g in
                                                                                              source.generators)
    assert result.requests == sum(g.requests for g in source.generators) > 0
    assert result.late_sends == sum(g.late_sends for g in source.generators)
    assert all(g.node and g.node not in gpu_nodes for g in source.generators), source.generators
    assert result.complete and result.workers == 3
    assert "from 3 generator pod(s) of Job" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    cli_result = json.loads(out.read_text())
    assert cli_result["source"]["pods"] == 2 and set(cli_result["errors"]) == {"http_404"}
    assert cli_result["requests"] == sum(g["requests"] for g in cli_result["source"]["generators"]) == 20


def test_generators_that_miss_the_shared_start_make_an_incomplete_result(sim: Any) -> None:
    """A start margin too short for the pods to start: each pod says so in its document (and exits 0,
    so the Job does not fail and delete the other pods), and the result is incomplete with the pods'
    reasons; the command's scope removes everything."""
    from harness.config import Profile
    from harness.load.spec import LoadSpec
    from harness.loadjob import LocalScope, run_in_cluster

    profile = Profile.model_validate({"load": {"generators": {"where": "cluster", "pods": 2, "cpu": "100m",
                                                              "start_margin_s": 0.001}}})
    spec = LoadSpec(endpoint="http://seldon-mesh.seldon-mesh.svc.cluster.local:80", model="iris", rate=10.0,
                    duration_s=0.5, warmup_s=0.1, timeout_s=1.0)
    for k in kube_against(sim, RetryPolicy(attempts=3, base_s=0.01, max_delay_s=0.05)):
        scope = LocalScope(k, "h-late-load", {RUN_ID_KEY: "late"}, 30.0)
        try:
            scope.open()
            result = run_in_cluster(k, profile, spec, scope.namespace, scope.apply, run_id="late")
        finally:
            assert scope.close() == []
        assert not result.complete and result.requests == 0
        assert result.failure is not None and "after the shared start time" in result.failure, result.failure
        assert "generator 0 (" in result.failure and "generator 1 (" in result.failure
        assert _run_ids_left(k, "late") == []
