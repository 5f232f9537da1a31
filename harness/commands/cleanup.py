"""`python -m harness cleanup`: the command line of `harness.cleanup` (which runs are dead, what each
left), reading the profile and the kubeconfig and printing one line per run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness.cleanup import clean_run, dead_runs
from harness.config import load_profile
from harness.errors import UsageError
from harness.kube import Kube
from harness.kube.retry import KubeApiError


def _kubeconfig(args: argparse.Namespace, profile: Any) -> Path:
    if args.kubeconfig:
        return Path(args.kubeconfig)
    if profile.cluster.kubeconfig:
        return Path(profile.cluster.kubeconfig)
    if profile.cluster.provider == "sim":
        raise UsageError(f"{profile.source}: a sim cluster lives only as long as its run; pass --kubeconfig of the "
                         "`sim up` to clean")
    env = os.environ.get("KUBECONFIG", "")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"


def run_cleanup_command(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    kube = Kube.from_kubeconfig(_kubeconfig(args, profile), args.context or profile.cluster.context,
                                profile.timeouts)
    try:
        runs = {args.run_id: "named with --run-id"} if args.run_id else dead_runs(kube)
        if not runs:
            print("cleanup: no dead harness run found (name one with --run-id to clean it anyway)")
            return 0
        status = 0
        for run_id, why in sorted(runs.items()):
            done, problems = clean_run(kube, run_id, profile.seldon.namespace, profile.timeouts.delete_s)
            print(f"cleanup: run {run_id} ({why}): " + ("; ".join(done) if done else "nothing left"))
            for problem in problems:
                print(f"cleanup: run {run_id}: {problem}")
                status = 1
        return status
    except KubeApiError as exc:
        raise UsageError(f"cleanup: the cluster answered: {exc}") from None
    finally:
        kube.close()
