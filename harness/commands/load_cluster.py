"""`python -m harness load --in-cluster --pods N --kubeconfig K ...`: the load from generator pods.

One namespace of its own (`h-<run id>-load`, labelled with the run id so `harness cleanup` finds it
if this process dies), one ConfigMap and one indexed Job in it; all deleted, and waited on, at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from harness.commands.load import json_path, slo_from_args, spec_from_args, write_result
from harness.config import Profile, load_profile
from harness.errors import HarnessError, UsageError
from harness.kube import Kube
from harness.loadjob import LocalScope, mesh_service_url, run_in_cluster
from harness.render.labels import labels_for_run


def _profile(args: argparse.Namespace) -> Profile:
    profile = load_profile(args.profile) if args.profile else Profile()
    gens = profile.load.generators.model_copy(update={
        "where": "cluster",
        **({"pods": args.pods} if args.pods is not None else {}),
        **({"start_margin_s": float(args.start_margin)} if args.start_margin is not None else {}),
    })
    return profile.model_copy(update={"load": profile.load.model_copy(update={"generators": gens})})


def run_load_in_cluster(args: argparse.Namespace) -> int:
    """CLI handler; exit codes as `harness load`: 0 complete within the SLO, 1 not, 2 bad input."""
    if getattr(args, "sweep", False):
        raise UsageError("--sweep: runs from this machine only (not with --in-cluster)")
    if args.engine != "harness":
        raise UsageError("--engine: --in-cluster runs the harness's own generator only")
    if args.protocol != "http":
        raise UsageError("--protocol grpc: in-cluster generators speak HTTP only (the pods have nothing but "
                         "Python's standard library)")
    if args.workers is not None:
        raise UsageError("--workers: with --in-cluster the load is split over --pods generator pods")
    out = json_path(args)
    profile = _profile(args)
    if not args.endpoint:
        args.endpoint = mesh_service_url(profile)
    spec = spec_from_args(args)
    slo = slo_from_args(args)
    kubeconfig = args.kubeconfig or profile.cluster.kubeconfig
    kube = Kube.from_kubeconfig(Path(kubeconfig) if kubeconfig else None, args.context or profile.cluster.context,
                                profile.timeouts)
    run_id = hashlib.sha256(f"{os.getpid()}-{os.urandom(8).hex()}".encode()).hexdigest()[:8]
    scope = LocalScope(kube, f"h-{run_id}-load", dict(labels_for_run(run_id)), profile.timeouts.delete_s)
    try:
        scope.open()
        result = run_in_cluster(kube, profile, spec, scope.namespace, scope.apply, run_id=run_id,
                                target=args.endpoint, image=args.image, progress=lambda line: print(line, flush=True))
    except UsageError:
        raise
    except HarnessError as exc:  # a wait that timed out or gave up: not bad input, a failed run
        print(f"load --in-cluster: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        problems = scope.close()
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr, flush=True)
    return write_result(out, result, slo)
