"""`python -m harness sim up`: run the simulated cluster in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from harness.config import load_profile
from harness.errors import UsageError


def run_sim_up(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    if not 0 <= int(args.port) <= 65535:
        raise UsageError(f"--port: expected 0 (a free port) or a TCP port up to 65535, got {args.port}")
    kubeconfig = Path(args.kubeconfig).resolve()
    if kubeconfig.is_dir():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: expected a file path, got a directory")

    from harness.sim.cluster import SimCluster

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="harness-sim-"))
    cluster = SimCluster(profile, workdir, mlserver=not args.no_mlserver, port=int(args.port),
                         kubeconfig=kubeconfig)
    try:
        try:
            cluster.start()
        except OSError as exc:
            raise UsageError(f"--port {args.port}: cannot serve the simulated API there ({exc.strerror})") from None
        print(f"simulated cluster API at {cluster.api_url}; kubeconfig written to {kubeconfig} "
              f"(started in {cluster.start_seconds or 0:.2f}s; Ctrl-C to stop)", flush=True)
        # A foreground server runs until told to stop; the wait wakes on the signal handler's event.
        while not stop.wait(0.5):
            pass
        print("stopping the simulated cluster", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
