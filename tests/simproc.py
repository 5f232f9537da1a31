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

ROOT = Path(__file__).resolve().parents[1]


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
    data = yaml.safe_load(sim_profile.read_text())
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
