"""`python -m harness lint [--profile FILE] [--cluster [--kubeconfig F]] [--format text|json] [MANIFEST ...]`.

With MANIFESTs (files or directories) those are linted, judged by the profile's taint, pool label and
nodes (the defaults when no profile is given). Without, the profile's rendered manifests are linted.
Exit 0 clean (warnings allowed), 1 on errors, 2 on unusable input (raised as UsageError).
With `--cluster` the live nodes are read here, through the shared kube wrapper, and handed to lint as
plain dicts: `harness.lint` itself never imports the kube layer (an import-linter contract).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.config import Profile, Timeouts, load_profile
from harness.errors import UsageError
from harness.layout import static as static_layout
from harness.lint import format_json, format_text, has_errors, lint_documents
from harness.lint.loader import documents_from_rendered, load_manifests
from harness.lint.model import Document
from harness.load.job import render_run


def _documents(args: argparse.Namespace, profile: Profile) -> list[Document]:
    if args.manifests:
        return load_manifests(args.manifests)
    if args.profile is None:
        raise UsageError("lint: nothing to lint; give --profile FILE (its rendered manifests) or MANIFEST files")
    return documents_from_rendered(render_run(profile))


def read_live_nodes(
    kubeconfig: str | None, context: str | None = None, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """List the cluster's nodes. Any failure is a one-line `UsageError` (lint exits 2)."""
    from harness.kube import Kube  # imported here: plain lint runs must not need a cluster client

    kube = Kube.from_kubeconfig(kubeconfig, context, Timeouts(request_s=timeout_s))
    try:
        return kube.list("v1", "Node")
    except Exception as exc:  # connection refused, TLS, 401/403: all mean "cannot check this cluster"
        where = kubeconfig or "the default kubeconfig"
        raise UsageError(f"--cluster: cannot list nodes of the cluster in {where}: {exc}") from None
    finally:
        kube.close()


def _live_nodes(args: argparse.Namespace, profile: Profile) -> list[dict[str, Any]] | None:
    if not args.cluster:
        if args.kubeconfig:
            raise UsageError("lint: --kubeconfig only makes sense with --cluster")
        return None
    kubeconfig = args.kubeconfig or profile.cluster.kubeconfig or os.environ.get("KUBECONFIG") or None
    return read_live_nodes(kubeconfig, profile.cluster.context, timeout_s=profile.timeouts.request_s)


def run_lint(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile) if args.profile else Profile(source="<default profile>")
    profile = static_layout(profile)  # gpu_workers: auto is linted in the documented static layout
    docs = _documents(args, profile)
    nodes = _live_nodes(args, profile)
    findings = lint_documents(docs, profile, nodes)
    print(format_json(findings) if args.format == "json" else format_text(findings))
    return 1 if has_errors(findings) else 0
