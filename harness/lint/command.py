"""`python -m harness lint [--profile FILE] [--cluster [--kubeconfig F]] [--format text|json] [MANIFEST ...]`.

With MANIFESTs (files or directories) those are linted, judged by the profile's taint, pool label and
nodes (the defaults when no profile is given). Without, the profile's rendered manifests are linted.
Exit 0 clean (warnings allowed), 1 on errors, 2 on unusable input (raised as UsageError).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.config import Profile, load_profile
from harness.errors import UsageError
from harness.lint import format_json, format_text, has_errors, lint_documents
from harness.lint.live import read_live_nodes
from harness.lint.loader import documents_from_rendered, load_manifests
from harness.lint.model import Document
from harness.render import render_all


def _documents(args: argparse.Namespace, profile: Profile) -> list[Document]:
    if args.manifests:
        return load_manifests(args.manifests)
    if args.profile is None:
        raise UsageError("lint: nothing to lint; give --profile FILE (its rendered manifests) or MANIFEST files")
    return documents_from_rendered(render_all(profile))


def _live_nodes(args: argparse.Namespace, profile: Profile) -> list[dict[str, Any]] | None:
    if not args.cluster:
        if args.kubeconfig:
            raise UsageError("lint: --kubeconfig only makes sense with --cluster")
        return None
    kubeconfig = args.kubeconfig or profile.cluster.kubeconfig or os.environ.get("KUBECONFIG") or None
    return read_live_nodes(kubeconfig, profile.cluster.context, timeout_s=profile.timeouts.request_s)


def run_lint(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile) if args.profile else Profile(source="<default profile>")
    docs = _documents(args, profile)
    nodes = _live_nodes(args, profile)
    findings = lint_documents(docs, profile, nodes)
    print(format_json(findings) if args.format == "json" else format_text(findings))
    return 1 if has_errors(findings) else 0
