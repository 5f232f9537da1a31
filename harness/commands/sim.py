"""`python -m harness sim up`: run the simulated cluster in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from harness.config import Profile, load_profile
from harness.errors import HarnessError, UsageError


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
    written: bytes | None = None
    cluster = SimCluster(profile, workdir, mlserver=not args.no_mlserver, port=int(args.port),
                         kubeconfig=kubeconfig, mesh_ingress=not getattr(args, "no_mesh_ingress", False))
    try:
        try:
            cluster.start()
        except OSError as exc:
            raise UsageError(f"--port {args.port}: cannot serve the simulated API there ({exc.strerror})") from None
        written = kubeconfig.read_bytes()
        print(f"simulated cluster API at {cluster.api_url}; kubeconfig written to {kubeconfig} "
              f"(started in {cluster.start_seconds or 0:.2f}s; Ctrl-C to stop)", flush=True)
        try:
            print(closing_line(profile, kubeconfig, workdir, deploy=bool(getattr(args, "deploy", False)),
                               no_mlserver=bool(args.no_mlserver),
                               no_ingress=bool(getattr(args, "no_mesh_ingress", False))), flush=True)
        except HarnessError as exc:  # the deployment did not come up: say why and stop the cluster
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        # A foreground server runs until told to stop; the wait wakes on the signal handler's event.
        while not stop.wait(0.5):
            pass
        print("stopping the simulated cluster", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_if_ours(kubeconfig, written)
    return 0


def _remove_if_ours(kubeconfig: Path, written: bytes | None) -> None:
    """A kubeconfig of a stopped cluster only misleads: remove it, unless someone changed it since."""
    if written is None:
        return
    with contextlib.suppress(OSError):
        if kubeconfig.read_bytes() == written:
            kubeconfig.unlink()


def closing_line(profile: Profile, kubeconfig: Path, workdir: Path, *, deploy: bool, no_mlserver: bool,
                 no_ingress: bool = False) -> str:
    """Deploy the profile's Servers and Models when asked; say where the mesh is and what to paste next."""
    from harness.kube import Kube
    from harness.providers import common

    kube = Kube.from_kubeconfig(kubeconfig, None, profile.timeouts)
    try:
        if deploy:
            from harness.lifecycle import ClusterSession, RunOptions

            session = ClusterSession(profile, RunOptions(run_id="sim-up", workdir=workdir))
            session.kube = kube
            session.deploy()
            if session.deploy_error:
                raise HarnessError(f"--deploy: {session.deploy_error}")
        mesh = ("none on the seldon-mesh Service (--no-mesh-ingress: clients reach it through a port-forward "
                "to a seldon-envoy pod's port 9000)") if no_ingress else common.mesh_endpoint(kube, profile).http_url
    finally:
        kube.close()
    if not deploy:
        return (f"mesh endpoint {mesh} (no Servers or Models yet: add --deploy to deploy the profile's, "
                f"or apply your own with kubectl --kubeconfig {kubeconfig})")
    model = _default_input_model(profile)
    if model is None or no_mlserver:
        why = ("--no-mlserver: no data plane" if no_mlserver else
               "no model takes the load command's default input (iris [1,4] FP32): pass --input FILE")
        return f"mesh endpoint {mesh}; {len(profile.models)} Model(s) deployed ({why})"
    return (f"mesh endpoint {mesh}; {len(profile.servers)} Server(s) and {len(profile.models)} Model(s) ready; "
            f"try: python -m harness load --endpoint {mesh} --model {model} --rate 20 --duration 5 "
            "--json /tmp/load.json")


def _default_input_model(profile: Profile) -> str | None:
    """The first latency-measured model that the `load` command's default input (iris) fits, so the
    printed command works as pasted."""
    from harness.load.spec import DEFAULT_INPUT, tensor_dict

    for model in profile.models:
        inputs = [tensor_dict(t) for t in model.request_inputs]
        if model.latency and [{**i, "data": None} for i in inputs] == [{**DEFAULT_INPUT, "data": None}]:
            return model.name
    return None
