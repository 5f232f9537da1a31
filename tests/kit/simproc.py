"""`python -m harness sim up` as a real subprocess, for tests and the soak that treat it as an existing cluster."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.safeyaml import load_one

ROOT = Path(__file__).resolve().parents[2]


def default_signals() -> None:
    """`preexec_fn` for a child that a test interrupts: SIGINT and SIGTERM at their defaults.

    A job started in the background by a non-interactive shell inherits SIGINT ignored, and Python
    then installs no KeyboardInterrupt handler in its children; the test would prove nothing there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class RunningSim:
    process: subprocess.Popen[str]
    kubeconfig: Path
    banner: str


@contextlib.contextmanager
def running_sim(profile: Path, workdir: Path, *, start_timeout: float = 60.0,
                extra_args: tuple[str, ...] = ()) -> Iterator[RunningSim]:
    """Start `sim up`, wait for its one ready line (with a deadline), stop it with SIGTERM afterwards."""
    kubeconfig = workdir / "sim.kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "sim", "up", "--profile", str(profile), "--kubeconfig", str(kubeconfig),
         *extra_args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        banner = _read_line(process, start_timeout)
        if "kubeconfig written" not in banner:
            raise RuntimeError(f"sim up did not start: {banner!r}")
        yield RunningSim(process, kubeconfig, banner)
    finally:
        stop(process)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"sim up printed nothing within {timeout:g}s")
        if selector.select(left):
            return process.stdout.readline().strip()


def stop(process: subprocess.Popen[str], timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return process.returncode


def existing_profile_for(sim_profile: Path, kubeconfig: Path, out: Path, **changes: Any) -> Path:
    """The sim profile turned into an `existing` profile that attaches to a running `sim up`."""
    data = load_one(sim_profile.read_text(), str(sim_profile))
    data["cluster"]["provider"] = "existing"
    data["cluster"]["kubeconfig"] = str(kubeconfig)
    # The sim stands in for a cluster whose owners allow node changes; tests of the refusal set False.
    data["cluster"]["destructive"] = True
    data.setdefault("seldon", {})["install"] = False
    data.setdefault("gpu", {})["device_plugin"] = {"install": False}
    for key, value in changes.items():
        data[key] = value
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


SIM_PROFILE = ROOT / "profiles" / "sim.yaml"


KUBECTL = Path(sys.executable).parent / "kubectl"


def descendants(pid: int) -> set[int]:
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


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """Those of `pids` still alive after `seconds` (fewer as soon as they go)."""
    deadline = time.monotonic() + seconds
    living = [p for p in pids if alive(p)]
    while living and time.monotonic() < deadline:
        time.sleep(0.2)  # polling /proc against a deadline
        living = [p for p in living if alive(p)]
    return living


def first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError(f"sim up printed nothing within {timeout}s")
    line = proc.stdout.readline()
    if not line:  # its stdout closed: it exited before saying it was up; say how, with its last words
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        said = proc.stderr.read()[-3000:] if proc.stderr is not None and code is not None else ""
        raise AssertionError(f"sim up ended before its first line (exit code {code}):\n{said}")
    return line


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
