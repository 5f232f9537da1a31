"""Issue 26 item 1: a run's liveness is its Lease, renewed on a timer and judged by the API server's
clock; `harness cleanup` never touches a live run, whatever PID namespace it runs from, and finds a
dead run's objects from what the run recorded, not from the profile it is given."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cleanup import LEASE_API, dead_runs
from harness.cli import main
from harness.kube import Kube
from harness.kube.lease import (
    LEASE_NAMESPACE,
    NAMESPACES_ANNOTATION,
    RunLease,
    expired,
    holder_identity,
    micro_time,
    run_lease_name,
)
from harness.render.labels import RUN_ID_KEY
from tests.kit.sim_fixtures import started_sim

ROOT = Path(__file__).resolve().parents[2]
SELDON_API = "mlops.seldon.io/v1alpha1"
SELDON_NS = "seldon-mesh"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("lease-sim"))


def _labels(run: str) -> dict[str, str]:
    return {RUN_ID_KEY: run, "app.kubernetes.io/managed-by": "seldon-gpu-harness"}


def _plant_objects(kube: Kube, run: str, namespace: str = SELDON_NS) -> None:
    """What a run creates: a Model in the Seldon namespace, a test namespace and a pod in it."""
    kube.create({"apiVersion": SELDON_API, "kind": "Model",
                 "metadata": {"name": f"{run}-m", "namespace": namespace, "labels": _labels(run)},
                 "spec": {"storageUri": "gs://bucket/model", "requirements": ["nothing-has-this"]}})
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{run}-ns", "labels": _labels(run)}})


def _objects(kube: Kube, run: str) -> list[str]:
    sel = f"{RUN_ID_KEY}={run}"
    return sorted([f"model/{m['metadata']['name']}" for m in kube.list(SELDON_API, "Model", None, label_selector=sel)
                   if not m["metadata"].get("deletionTimestamp")]
                  + [f"ns/{n['metadata']['name']}" for n in kube.list("v1", "Namespace", label_selector=sel)
                     if not n["metadata"].get("deletionTimestamp")])


def _age(kube: Kube, run: str, seconds: float = 3600) -> None:
    past = micro_time(kube.server_time() - dt.timedelta(seconds=seconds))
    kube.patch(LEASE_API, "Lease", run_lease_name(run), LEASE_NAMESPACE, {"spec": {"renewTime": past}})


def _cleanup_argv(sim: Any, profile: Path | None = None, *extra: str) -> list[str]:
    return ["cleanup", "--profile", str(profile or ROOT / "profiles" / "existing.yaml"),
            "--kubeconfig", str(sim.kubeconfig_path), *extra]


def test_expiry_is_by_the_given_server_clock_and_never_guessed() -> None:
    renewed = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lease = {"spec": {"renewTime": micro_time(renewed), "leaseDurationSeconds": 90}}
    assert expired(lease, renewed + dt.timedelta(seconds=90)) is None
    assert "last renewed 91 s ago" in str(expired(lease, renewed + dt.timedelta(seconds=91)))
    assert expired({"spec": {"renewTime": "not a time"}}, renewed + dt.timedelta(days=9)) is None
    with pytest.raises(ValueError, match="not well inside"):
        RunLease(object(), "r", duration_s=30, every_s=15)  # type: ignore[arg-type]


def test_the_lease_names_the_process_and_is_renewed_on_a_timer(kube: Kube) -> None:
    lease = RunLease(kube, "renewing", duration_s=3, every_s=0.2)
    lease.take([SELDON_NS])
    try:
        first = kube.get(LEASE_API, "Lease", lease.name, LEASE_NAMESPACE)
        assert first is not None
        holder = first["spec"]["holderIdentity"]
        assert holder == holder_identity("renewing")
        for part in ("host=", "boot=", "pidns=pid:[", f"pid={os.getpid()}", "start="):
            assert part in holder
        assert "unknown" not in holder
        assert first["metadata"]["annotations"][NAMESPACES_ANNOTATION] == f'["{SELDON_NS}"]'
        lease.start()
        # The renewal thread counts a renewal after its write returns, so the new renewTime can be seen
        # before the count: wait for both (the next renewal, 0.2 s on, is the next change to see).
        renewed = kube.wait_for(LEASE_API, "Lease", lease.name, LEASE_NAMESPACE,
                                lambda le: bool(le) and le["spec"]["renewTime"] != first["spec"]["renewTime"]
                                and lease.renewals >= 1,
                                timeout=20, what="a renewal")
        assert renewed is not None and lease.renewals >= 1
    finally:
        lease.release()
    assert kube.get(LEASE_API, "Lease", lease.name, LEASE_NAMESPACE) is None


def test_a_live_run_survives_cleanup_from_another_pid_namespace(kube: Kube, sim: Any) -> None:
    """The reported loss: cleanup on the same host name but in another PID namespace found no process
    with the run's pid and deleted a live run's objects mid-run."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
                            "true"], capture_output=True, timeout=30) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("unshare cannot make a PID namespace here (needs unprivileged user namespaces)")
    run = "live-elsewhere"
    lease = RunLease(kube, run)
    lease.take([SELDON_NS])
    lease.start()
    try:
        _plant_objects(kube, run)
        before = _objects(kube, run)
        cmd = [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "harness"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        other = subprocess.run([*cmd, *_cleanup_argv(sim)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                               env=env)
        assert other.returncode == 0, other.stderr[-2000:]
        assert "no dead harness run found" in other.stdout
        named = subprocess.run([*cmd, *_cleanup_argv(sim, None, "--run-id", run)], capture_output=True, text=True,
                               timeout=120, cwd=ROOT, env=env)
        assert named.returncode == 2 and f"run {run} is alive" in named.stderr, named.stderr[-2000:]
        assert len(named.stderr.strip().splitlines()) == 1
        assert _objects(kube, run) == before == [f"model/{run}-m", f"ns/{run}-ns"]
    finally:
        lease.release()
        kube.delete(SELDON_API, "Model", f"{run}-m", SELDON_NS, wait=True, timeout=30)
        kube.delete("v1", "Namespace", f"{run}-ns", None, wait=True, timeout=30)


def test_cleanup_finds_objects_from_the_runs_record_not_the_profile(
        kube: Kube, sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reported loss: a profile naming another Seldon namespace made cleanup report success, drop
    the run's record and leave its objects, and every later run was refused."""
    run = "dead-run"
    lease = RunLease(kube, run)
    lease.take([SELDON_NS])  # never renewed: the run died
    _plant_objects(kube, run)
    assert run not in dead_runs(kube)  # just taken: valid for its duration
    assert main(_cleanup_argv(sim)) == 0 and "no dead harness run found" in capsys.readouterr().out
    _age(kube, run)

    doc = yaml.safe_load((ROOT / "profiles" / "existing.yaml").read_text())
    doc.setdefault("seldon", {})["namespace"] = "someone-elses-seldon"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(doc))
    assert main(_cleanup_argv(sim, other)) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert f"deleted Model {SELDON_NS}/{run}-m" in out and f"released Lease default/{run_lease_name(run)}" in out
    assert _objects(kube, run) == []
    # and the next run with that id starts, and may create what the dead one had
    again = RunLease(kube, run)
    again.take([SELDON_NS])
    try:
        _plant_objects(kube, run)
    finally:
        again.release()
        kube.delete(SELDON_API, "Model", f"{run}-m", SELDON_NS, wait=True, timeout=30)
        kube.delete("v1", "Namespace", f"{run}-ns", None, wait=True, timeout=30)


def test_a_cleanup_that_cannot_finish_keeps_the_record(kube: Kube, sim: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = "half-cleaned"
    lease = RunLease(kube, run)
    lease.take([SELDON_NS])
    _plant_objects(kube, run)
    _age(kube, run)
    sim.faults.fail_next("delete", "models", f"{run}-m", count=10, code=403)
    try:
        assert main(_cleanup_argv(sim)) == 1
    finally:
        sim.faults.clear()
    out = capsys.readouterr().out
    assert "kept Lease default/harness-run-half-cleaned" in out
    assert kube.get(LEASE_API, "Lease", run_lease_name(run), LEASE_NAMESPACE) is not None
    assert main(_cleanup_argv(sim)) == 0
    assert _objects(kube, run) == []
    assert kube.get(LEASE_API, "Lease", run_lease_name(run), LEASE_NAMESPACE) is None
