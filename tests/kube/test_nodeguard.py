"""NodeGuard against the simulated cluster: restore-first changes, refusals, leases, conflicts, and
restore after a real SIGINT/SIGTERM to a real subprocess."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.kube import Kube, KubeApiError, NodeGuard
from tests.kit.simproc import default_signals

ROOT = Path(__file__).resolve().parents[2]
CPU_NODE = "seldon-gpu-worker"
GPU_NODE = "seldon-gpu-gpu-worker"
TAINT = {"key": "harness-test", "value": "x", "effect": "NoSchedule"}


def snapshot(kube: Kube, node: str) -> dict[str, Any]:
    obj = kube.get("v1", "Node", node)
    assert obj is not None
    status = obj.get("status") or {}
    return copy.deepcopy({"taints": (obj.get("spec") or {}).get("taints") or [],
                          "labels": obj["metadata"].get("labels") or {},
                          "capacity": status.get("capacity"), "allocatable": status.get("allocatable")})


def guard(kube: Kube, owner: str = "run-a") -> NodeGuard:
    return NodeGuard(kube, owner, install_signal_handlers=False)


def test_changes_are_applied_and_restored_exactly(kube: Kube) -> None:
    before = snapshot(kube, CPU_NODE)
    g = guard(kube)
    g.add_taint(CPU_NODE, TAINT)
    g.add_label(CPU_NODE, "harness/test", "yes")
    g.set_extended_capacity(CPU_NODE, "nvidia.com/gpu", 2)
    during = snapshot(kube, CPU_NODE)
    assert TAINT in during["taints"]
    assert during["labels"]["harness/test"] == "yes"
    assert during["capacity"]["nvidia.com/gpu"] == "2" and during["allocatable"]["nvidia.com/gpu"] == "2"
    assert kube.get("coordination.k8s.io/v1", "Lease", f"harness-node-{CPU_NODE}", "default") is not None
    assert len(g.changes()) == 3
    assert g.restore_all() == []
    assert snapshot(kube, CPU_NODE) == before
    assert kube.get("coordination.k8s.io/v1", "Lease", f"harness-node-{CPU_NODE}", "default") is None
    assert g.changes() == []


def test_what_was_already_there_is_never_removed(kube: Kube) -> None:
    before = snapshot(kube, GPU_NODE)
    existing = next(t for t in before["taints"] if t["key"] == "seldon-gpu-srv")
    g = guard(kube)
    g.add_taint(GPU_NODE, existing)
    g.add_label(GPU_NODE, "pool", before["labels"]["pool"])
    assert g.changes() == []  # nothing added, so nothing to undo
    assert g.restore_all() == []
    assert snapshot(kube, GPU_NODE) == before


def test_refuses_to_replace_a_foreign_taint_or_capacity(kube: Kube) -> None:
    before = snapshot(kube, GPU_NODE)
    g = guard(kube)
    existing = next(t for t in before["taints"] if t["key"] == "seldon-gpu-srv")
    with pytest.raises(UsageError, match="will not replace a taint it did not add"):
        g.add_taint(GPU_NODE, {**existing, "value": "other"})
    with pytest.raises(UsageError, match="already advertised"):
        g.set_extended_capacity(GPU_NODE, "nvidia.com/gpu", 8)
    assert g.restore_all() == []
    assert snapshot(kube, GPU_NODE) == before


def test_label_with_a_previous_value_is_put_back(kube: Kube) -> None:
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/prev": "old"}}})
    g = guard(kube)
    g.add_label(CPU_NODE, "harness/prev", "new")
    assert snapshot(kube, CPU_NODE)["labels"]["harness/prev"] == "new"
    assert g.restore_all() == []
    assert snapshot(kube, CPU_NODE)["labels"]["harness/prev"] == "old"
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/prev": None}}})


def test_a_second_run_is_refused_while_the_lease_is_held(kube: Kube) -> None:
    a, b = guard(kube, "run-a"), guard(kube, "run-b")
    a.add_taint(CPU_NODE, TAINT)
    with pytest.raises(UsageError, match=r"another harness run \(run-a, Lease default/harness-node-seldon-gpu-worker"):
        b.add_label(CPU_NODE, "harness/b", "1")
    assert a.restore_all() == []
    b.add_label(CPU_NODE, "harness/b", "1")  # free again
    assert b.restore_all() == []


def test_conflicts_are_retried_with_a_fresh_read(kube: Kube, sim: Any) -> None:
    kube._api.set_default_header("Connection", "close")  # see test_kube_client.close_connections
    before = snapshot(kube, CPU_NODE)
    g = guard(kube)
    injected = sim.faults.injected
    sim.faults.fail_next("patch", "nodes", CPU_NODE, count=2, code=409)
    g.add_taint(CPU_NODE, TAINT)
    assert sim.faults.injected - injected == 2
    assert TAINT in snapshot(kube, CPU_NODE)["taints"]
    # Someone else changes the node between our change and the restore: we re-read and remove only ours.
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/other": "1"}}})
    sim.faults.fail_next("patch", "nodes", CPU_NODE, count=1, code=409)
    assert g.restore_all() == []
    after = snapshot(kube, CPU_NODE)
    assert after["taints"] == before["taints"] and after["labels"]["harness/other"] == "1"
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/other": None}}})


def test_resource_version_precondition_is_sent(kube: Kube, sim: Any) -> None:
    """A stale resourceVersion must be rejected: proof that the guard's patches carry one."""
    node = kube.get("v1", "Node", CPU_NODE)
    assert node is not None
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/bump": "1"}}})
    with pytest.raises(KubeApiError) as err:
        kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"],
                                                              "labels": {"harness/stale": "1"}}})
    assert err.value.status == 409
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/bump": None}}})


CHILD = textwrap.dedent("""
    import sys
    from harness.config import Timeouts
    from harness.kube import Kube, NodeGuard
    kube = Kube.from_kubeconfig(sys.argv[1], None, Timeouts(request_s=5))
    g = NodeGuard(kube, "run-child")
    g.add_taint(sys.argv[2], {"key": "harness-test", "value": "x", "effect": "NoSchedule"})
    g.add_label(sys.argv[2], "harness/child", "yes")
    g.set_extended_capacity(sys.argv[2], "nvidia.com/gpu", 4)
    print("READY", flush=True)
    if sys.argv[3] == "exit":
        sys.exit(0)
    if sys.argv[3] == "mid-pool":
        # The signal lands while this thread is inside urllib3's connection pool, holding its
        # (non-reentrant) lock, as when it comes between a request and the return of its connection:
        # a restore through that pool would wait for this very thread forever.
        import os, signal
        pool = kube._api.rest_client.pool_manager.connection_from_url(kube._api.configuration.host)
        with pool.pool.mutex:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, before the lock is released
    sys.stdin.read()  # blocks until the test signals us (or closes stdin)
    print("NOT INTERRUPTED", flush=True)
""")


@pytest.mark.parametrize(("how", "code"), [("SIGINT", -signal.SIGINT), ("SIGTERM", -signal.SIGTERM), ("exit", 0),
                                           ("mid-pool", -signal.SIGTERM)])
def test_restore_after_signal_in_a_real_subprocess(kube: Kube, sim: Any, how: str, code: int) -> None:
    before = snapshot(kube, CPU_NODE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(sim.kubeconfig_path), CPU_NODE, how],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_signals)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read() if proc.stderr else ""
        if how in ("SIGINT", "SIGTERM"):
            during = snapshot(kube, CPU_NODE)
            assert TAINT in during["taints"] and during["labels"]["harness/child"] == "yes"
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "NOT INTERRUPTED" not in out
    assert "node restore" not in err, err
    if how == "SIGINT":
        # Python dies of SIGINT after a KeyboardInterrupt reaches the top (the default behaviour, re-raised).
        assert proc.returncode == code and "KeyboardInterrupt" in err
    else:
        assert proc.returncode == code, err
    assert snapshot(kube, CPU_NODE) == before
    assert kube.get("coordination.k8s.io/v1", "Lease", f"harness-node-{CPU_NODE}", "default") is None


def test_capacity_patch_retries_when_the_node_moves_between_read_and_patch(kube: Kube,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(kube, CPU_NODE)
    real_get = kube.get
    raced: list[bool] = []

    def racy_get(api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        obj = real_get(api_version, kind, name, namespace)
        if kind == "Node" and not raced:
            raced.append(True)  # another writer bumps the node right after our read: our version is stale
            kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/race": "1"}}})
        return obj

    g = guard(kube)
    monkeypatch.setattr(kube, "get", racy_get)
    g.set_extended_capacity(CPU_NODE, "nvidia.com/gpu", 3)
    monkeypatch.setattr(kube, "get", real_get)
    assert raced and snapshot(kube, CPU_NODE)["allocatable"]["nvidia.com/gpu"] == "3"
    assert g.restore_all() == []
    kube.patch("v1", "Node", CPU_NODE, None, {"metadata": {"labels": {"harness/race": None}}})
    assert snapshot(kube, CPU_NODE) == before


def test_nested_guards_of_one_run_share_the_lease(kube: Kube) -> None:
    before = snapshot(kube, CPU_NODE)
    session, per_test = guard(kube, "run-n"), guard(kube, "run-n")
    session.add_label(CPU_NODE, "harness/session", "1")
    per_test.add_taint(CPU_NODE, TAINT)
    lease = ("coordination.k8s.io/v1", "Lease", f"harness-node-{CPU_NODE}", "default")
    assert per_test.restore_all() == []
    assert kube.get(*lease) is not None  # the session still holds the node
    with pytest.raises(UsageError, match="run-n"):
        guard(kube, "run-other").add_label(CPU_NODE, "harness/x", "1")
    assert session.restore_all() == []
    assert kube.get(*lease) is None
    assert snapshot(kube, CPU_NODE) == before


def test_an_ignored_signal_gets_no_restore_handler(kube: Kube) -> None:
    # A run started in the background by a script ignores SIGINT: it keeps running on one, so a
    # handler that restored the nodes then would undo them under a live run.
    before = snapshot(kube, CPU_NODE)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        g = NodeGuard(kube, "run-a", install_signal_handlers=True)
        g.add_taint(CPU_NODE, TAINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (saved[signal.SIGTERM], signal.SIG_IGN)  # ours
        assert g.restore_all() == []
        assert signal.getsignal(signal.SIGTERM) == saved[signal.SIGTERM]  # given back once nothing is held
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert snapshot(kube, CPU_NODE) == before
