"""SIGINT and SIGTERM at each lifecycle phase: the run stops, and the cluster is left as it was found.

The cluster is a `sim up` process attached as an existing cluster; the run is `pytest suites/` in a
subprocess whose live progress lines (`-s`) tell the test which phase it is in. The last case waits
until the destructive isolation test has tainted a node, so the node guard's restore is what is
being tested there.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checks.leftovers import differences
from harness.config import load_profile
from harness.kube import Kube
from harness.report import gate, load_report
from harness.testkit.helpers import capture_cluster_state
from tests.kit.simproc import ROOT, default_signals, existing_profile_for, running_sim

SIM_PROFILE = ROOT / "profiles" / "sim.yaml"
EVICT_TAINT = "harness.seldon.dev/evict-test"


def _wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(deadline - time.monotonic()):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        if marker in line:
            return seen
    raise AssertionError(f"never saw {marker!r} within {timeout:g}s; last lines: {seen[-15:]}")


def _hung(proc: subprocess.Popen[str], exc: subprocess.TimeoutExpired) -> str:
    """A run that did not stop: its output so far, then every thread's stack (SIGABRT makes the
    interpreter, started with -X faulthandler, print them), so a hang that happens once in many runs
    can be diagnosed from the one CI log."""
    so_far = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
    proc.send_signal(signal.SIGABRT)
    try:
        rest, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        rest = "(nothing more within 20 s of SIGABRT)"
    return f"{so_far[-4000:]}\n--- after SIGABRT ---\n{(rest or '')[-8000:]}"


CASES = [
    ("SIGINT", "harness: Seldon started", ["suites/test_placement.py"]),
    ("SIGTERM", "harness: servers started", ["suites/test_placement.py"]),
    ("SIGINT", "harness: models started", ["suites/test_placement.py"]),
    ("SIGTERM", f"taint:{EVICT_TAINT}", ["suites/test_isolation.py::test_noexecute_taint_evicts_running_intruders"]),
]


@pytest.mark.slow
@contextlib.contextmanager
def _attached_sim(tmp_path: Path) -> Iterator[tuple[Path, Kube, str, Any]]:
    """A `sim up` reached through an existing profile: its path, a client, the Seldon namespace and
    the cluster's state before the run."""
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        profile_path = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "existing.yaml")
        profile = load_profile(profile_path)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
        yield profile_path, kube, profile.seldon.namespace, capture_cluster_state(kube, profile.seldon.namespace)


@pytest.mark.parametrize(("signame", "when", "suites"), CASES, ids=[f"{c[0]}-{c[1].split(':')[-1]}" for c in CASES])
def test_signal_at_phase_leaves_nothing_behind(tmp_path: Path, signame: str, when: str, suites: list[str]) -> None:
    with _attached_sim(tmp_path) as (profile_path, kube, namespace, before):
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-u", "-m", "pytest", *suites, "--profile", str(profile_path),
             "--report-dir", str(tmp_path / "report"), "-s", "-q", "-p", "no:cacheprovider", "--run-id", "sig"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_signals,
        )
        try:
            if when.startswith("taint:"):
                key = when.split(":", 1)[1]
                kube.wait_for_list("v1", "Node", None,
                                   lambda nodes: any(t.get("key") == key for n in nodes
                                                     for t in (n.get("spec") or {}).get("taints") or []),
                                   timeout=180, what=f"a node tainted {key}")
            else:
                _wait_for_line(proc, when, timeout=180)
            proc.send_signal(getattr(signal, signame))
            try:
                output, _ = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired as exc:
                pytest.fail(f"the run did not stop within 180 s of {signame}; where it hung:\n{_hung(proc, exc)}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode != 0, f"an interrupted run must not report success:\n{output[-2000:]}"
        left = differences(before, capture_cluster_state(kube, namespace))
        assert left == [], f"{signame} at {when!r} left: {left}\n{output[-3000:]}"
        # Wherever the signal landed (while the cluster came up, as at "Seldon started" it mostly
        # does, or later) the cleanup ran: the run's Lease, which says a run is alive, is gone too.
        assert "harness: cleanup started" in output, output[-3000:]
        leases = [lease["metadata"]["name"] for lease in kube.list("coordination.k8s.io/v1", "Lease", "default")]
        assert "harness-run-sig" not in leases, f"{signame} at {when!r} left the run Lease\n{output[-3000:]}"
    # The report it leaves says what happened, and the gate refuses it twice over: the cluster was
    # `sim up` reached through an existing profile (its API says so), and the run was cut short.
    report = load_report(tmp_path / "report" / "report.json")
    assert report.simulated and report.provider == "existing" and report.interrupted, report.interrupted_reason
    assert gate(report, None, 0.10, allow_simulated=False).refused
    kinds = {f.kind for f in gate(report, None, 0.10, allow_simulated=True).failures}
    assert "interrupted" in kinds, kinds


# Two windows a signal can hit, opened on purpose by a plugin that raises KeyboardInterrupt there.
INJECTED = {
    # right after `up()` returned, before the fixture's teardown began (run b1 hit it by chance)
    "after-up": ("injected just after the cluster came up",
                 "from harness.testkit.recording import Recorder\n"
                 "_identified, _fired = Recorder.cluster_identified, []\n"
                 "def _interrupt(self, session):\n"
                 "    if not _fired:  # once: the report's writer calls it again\n"
                 "        _fired.append(1)\n"
                 "        raise KeyboardInterrupt('injected just after the cluster came up')\n"
                 "    return _identified(self, session)\n"
                 "Recorder.cluster_identified = _interrupt\n"),
    # in pytest's own code, after the fixture yielded and before pytest registered its teardown: the
    # generator stays suspended and nothing but the session finish can clean up (run s8q3 hung here at
    # interpreter exit). The names are pytest's (_pytest/fixtures.py, call_fixture_func).
    "after-yield": ("injected after the cluster fixture yielded",
                    "import _pytest.fixtures as fixtures\n"
                    "_add = fixtures.SubRequest.addfinalizer\n"
                    "def addfinalizer(self, finalizer):\n"
                    "    if self.fixturename == 'cluster' and getattr(finalizer, 'func', None) is "
                    "fixtures._teardown_yield_fixture:\n"
                    "        raise KeyboardInterrupt('injected after the cluster fixture yielded')\n"
                    "    return _add(self, finalizer)\n"
                    "fixtures.SubRequest.addfinalizer = addfinalizer\n"),
}


@pytest.mark.parametrize("window", sorted(INJECTED))
def test_an_interrupt_just_after_the_cluster_came_up_still_cleans_up(tmp_path: Path, window: str) -> None:
    """KeyboardInterrupt in either window: the run stops, the cleanup runs and the Lease goes."""
    message, code = INJECTED[window]
    plugin = tmp_path / "interrupt_after_up.py"
    plugin.write_text(code)
    with _attached_sim(tmp_path) as (profile_path, kube, namespace, before):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/test_placement.py", "--profile", str(profile_path),
             "--report-dir", str(tmp_path / "report"), "-s", "-q", "-p", "no:cacheprovider", "--run-id", "sig",
             "-p", "interrupt_after_up"],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in output, output[-3000:]
        assert "harness: cleanup started" in output, output[-3000:]
        # ... before the report was written, so the report records what the cleanup left
        assert "harness: json:" in output, output[-3000:]
        assert output.index("harness: cleanup started") < output.index("harness: json:"), output[-3000:]
        assert differences(before, capture_cluster_state(kube, namespace)) == []
        leases = [lease["metadata"]["name"] for lease in kube.list("coordination.k8s.io/v1", "Lease", "default")]
        assert "harness-run-sig" not in leases, output[-3000:]
