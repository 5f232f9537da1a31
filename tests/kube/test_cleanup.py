"""Crash-safe node changes and `harness cleanup` (issue 14 item 2), against the simulated cluster
reached over HTTP, with a real child process killed by SIGKILL (no handler, no atexit runs)."""

from __future__ import annotations

import copy
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cleanup import LEASE_API, dead_runs
from harness.cli import main
from harness.errors import UsageError
from harness.kube import Kube, NodeGuard
from harness.kube.lease import LEASE_NAMESPACE, micro_time, run_lease_name
from harness.render.labels import RUN_ID_KEY
from tests.kit.sim_fixtures import started_sim

ROOT = Path(__file__).resolve().parents[2]
NODE = "seldon-gpu-gpu-worker3"
TAINT = {"key": "harness.seldon.dev/evict-test", "value": "true", "effect": "NoExecute"}

CHILD = textwrap.dedent("""
    import os, signal, sys
    from harness.config import Timeouts
    from harness.kube import Kube, NodeGuard
    from harness.kube.lease import RunLease
    kube = Kube.from_kubeconfig(sys.argv[1], None, Timeouts(request_s=30))
    run = sys.argv[3]
    RunLease(kube, run).take([])  # never renewed: the process dies before its first renewal
    labels = {"harness.seldon.dev/run-id": run, "app.kubernetes.io/managed-by": "seldon-gpu-harness"}
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": run + "-ns", "labels": labels}})
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default",
                 "labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    g = NodeGuard(kube, run)
    g.add_taint(sys.argv[2], {"key": "harness.seldon.dev/evict-test", "value": "true", "effect": "NoExecute"})
    g.add_label(sys.argv[2], "harness/crashed", "yes")
    os.kill(os.getpid(), signal.SIGKILL)  # no signal handler, no atexit: only the cluster remembers
""")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("cleanup-sim"))


def _node(kube: Kube) -> dict[str, Any]:
    obj = kube.get("v1", "Node", NODE)
    assert obj is not None
    return copy.deepcopy({"taints": (obj.get("spec") or {}).get("taints") or [],
                          "labels": obj["metadata"].get("labels") or {}})


def _crash(sim: Any, run: str) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(sim.kubeconfig_path), NODE, run],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def age_lease(kube: Kube, name: str, seconds: float = 3600) -> None:
    """Time passes: the Lease was last renewed `seconds` ago by the API server's clock."""
    past = micro_time(kube.server_time() - dt.timedelta(seconds=seconds))
    kube.patch(LEASE_API, "Lease", name, LEASE_NAMESPACE, {"spec": {"renewTime": past, "acquireTime": past}})


def _run_objects(kube: Kube, run: str) -> list[str]:
    sel = f"{RUN_ID_KEY}={run}"
    return ([f"ns/{n['metadata']['name']}" for n in kube.list("v1", "Namespace", label_selector=sel)
             if not n["metadata"].get("deletionTimestamp")]
            + [f"pod/{p['metadata']['name']}" for p in kube.list("v1", "Pod", label_selector=sel)])


def test_after_sigkill_the_next_run_names_the_cleanup_and_cleanup_restores_everything(
        kube: Kube, sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _node(kube)
    _crash(sim, "crashed")
    during = _node(kube)
    assert TAINT in during["taints"] and during["labels"]["harness/crashed"] == "yes"
    # Just killed, its Lease is still valid: nothing may call it dead yet (its process could be in
    # another PID namespace), not cleanup and not the next run.
    assert "crashed" not in dead_runs(kube)
    with pytest.raises(UsageError, match="being changed by another harness run"):
        NodeGuard(kube, "next-run", install_signal_handlers=False).add_taint(NODE, TAINT)
    age_lease(kube, run_lease_name("crashed"))
    assert "last renewed" in dead_runs(kube).get("crashed", "")

    # The next run does not take the leaked taint for pre-existing: it refuses, naming the cleanup.
    other = NodeGuard(kube, "next-run", install_signal_handlers=False)
    with pytest.raises(UsageError) as exc:
        other.add_taint(NODE, TAINT)
    message = str(exc.value)
    assert "harness run crashed that changed it is gone" in message
    assert "taint harness.seldon.dev/evict-test:NoExecute" in message
    assert "python -m harness cleanup --profile <profile> --run-id crashed" in message
    assert other.changes() == []

    code = main(["cleanup", "--profile", str(ROOT / "profiles" / "existing.yaml"),
                 "--kubeconfig", str(sim.kubeconfig_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "run crashed (its Lease was last renewed" in out and "restored taint" in out
    assert "deleted Namespace crashed-ns" in out
    assert _node(kube) == before
    assert _run_objects(kube, "crashed") == []
    assert [le["metadata"]["name"] for le in kube.list(LEASE_API, "Lease", "default")
            if "crashed" in str(le)] == []
    # and now the next run may change the node, and restores it itself
    other.add_taint(NODE, TAINT)
    assert other.restore_all() == []
    assert _node(kube) == before


def test_cleanup_leaves_live_runs_alone_unless_named(kube: Kube, sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    before = _node(kube)
    live = NodeGuard(kube, "live-run", install_signal_handlers=False)  # this process: alive
    live.add_label(NODE, "harness/live", "yes")
    try:
        assert main(["cleanup", "--profile", str(ROOT / "profiles" / "existing.yaml"),
                     "--kubeconfig", str(sim.kubeconfig_path)]) == 0
        assert "no dead harness run found" in capsys.readouterr().out
        assert _node(kube)["labels"].get("harness/live") == "yes"
        # named explicitly, it is cleaned (the operator knows better than a Lease)
        assert main(["cleanup", "--profile", str(ROOT / "profiles" / "existing.yaml"),
                     "--kubeconfig", str(sim.kubeconfig_path), "--run-id", "live-run"]) == 0
        assert "restored label harness/live" in capsys.readouterr().out
        assert _node(kube) == before
    finally:
        live.restore_all()


def test_a_live_holder_is_refused_with_the_cleanup_hint(kube: Kube) -> None:
    first = NodeGuard(kube, "holder-a", install_signal_handlers=False)
    first.add_label(NODE, "harness/a", "yes")
    try:
        with pytest.raises(UsageError, match=r"being changed by another harness run \(holder-a"):
            NodeGuard(kube, "holder-b", install_signal_handlers=False).add_label(NODE, "harness/b", "yes")
    finally:
        assert first.restore_all() == []


def test_cleanup_of_a_sim_profile_needs_a_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cleanup", "--profile", str(ROOT / "profiles" / "sim.yaml")]) == 2
    assert "pass --kubeconfig" in capsys.readouterr().err


def test_cleanup_is_in_the_cli_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "cleanup", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ})
    assert proc.returncode == 0 and "--run-id" in proc.stdout
