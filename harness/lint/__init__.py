"""Static checks of the dedicated-node configuration (pure: documents + profile + nodes -> findings).

    findings = lint_manifests(list_of_manifest_dicts, profile)           # plain Kubernetes dicts
    findings = lint_documents(load_manifests(paths), profile, nodes=live) # files, with their origin
    findings = lint_rendered(render_all(profile), profile)               # what a run would apply

Without live nodes, selections are judged against the nodes the profile promises (`expected_nodes`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.config import Profile
from harness.lint.cluster import CLUSTER_RULES
from harness.lint.loader import documents_from_rendered, documents_from_text, load_manifests
from harness.lint.model import Document, Finding, Severity
from harness.lint.nodes import expected_nodes
from harness.lint.rules import RULES, Context, Rule
from harness.lint.shapes import check_shape

ALL_RULES: tuple[Rule, ...] = RULES + CLUSTER_RULES


def lint_documents(
    docs: Sequence[Document], profile: Profile, nodes: Sequence[Mapping[str, Any]] | None = None
) -> list[Finding]:
    """Run every rule; `nodes` are live nodes (then the cluster rules run too), None means the profile's.

    A field of the wrong type (e.g. `tolerations: 7`) raises `UsageError` naming the file and field.
    """
    for doc in docs:
        check_shape(doc)
    live = nodes is not None
    node_list = tuple(dict(n) for n in nodes) if nodes is not None else tuple(expected_nodes(profile))
    ctx = Context(tuple(docs), profile, node_list, live)
    findings: list[Finding] = []
    for rule in RULES + (CLUSTER_RULES if live else ()):
        findings.extend(rule.check(ctx))
    # Stable order: by where it was found, then by rule, so output diffs cleanly between runs.
    return sorted(findings, key=lambda f: (f.source, f.object, f.rule, f.field, f.message))


def lint_manifests(
    manifests: Sequence[Mapping[str, Any]], profile: Profile, nodes: Sequence[Mapping[str, Any]] | None = None
) -> list[Finding]:
    docs = [Document(dict(m), "<manifests>", i) for i, m in enumerate(manifests)]
    return lint_documents(docs, profile, nodes)


def lint_rendered(
    rendered: Mapping[str, Sequence[Mapping[str, Any]]],
    profile: Profile,
    nodes: Sequence[Mapping[str, Any]] | None = None,
) -> list[Finding]:
    return lint_documents(documents_from_rendered(rendered), profile, nodes)


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def format_text(findings: Sequence[Finding]) -> str:
    lines = [f.text() for f in findings]
    errors = sum(1 for f in findings if f.severity == "error")
    lines.append(f"{errors} error(s), {len(findings) - errors} warning(s)")
    return "\n".join(lines)


def format_json(findings: Sequence[Finding]) -> str:
    errors = sum(1 for f in findings if f.severity == "error")
    payload = {"errors": errors, "warnings": len(findings) - errors, "findings": [f.as_dict() for f in findings]}
    return json.dumps(payload, indent=2, sort_keys=True)


__all__ = [
    "ALL_RULES",
    "Document",
    "Finding",
    "Rule",
    "Severity",
    "documents_from_rendered",
    "documents_from_text",
    "expected_nodes",
    "format_json",
    "format_text",
    "has_errors",
    "lint_documents",
    "lint_manifests",
    "lint_rendered",
    "load_manifests",
]
