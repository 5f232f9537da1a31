"""Rules over live nodes (`lint --cluster`): does the cluster really look like the profile says?"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.k8s.gpu import is_gpu_node, node_gpu_count
from harness.lint.model import Finding
from harness.lint.podspec import node_labels
from harness.lint.rules import Context, Rule


def _name(node: dict[str, Any]) -> str:
    return f"Node/{(node.get('metadata') or {}).get('name', '<unnamed>')}"


def _taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]


def _has_taint(node: dict[str, Any], taint: dict[str, str]) -> bool:
    wanted = (taint["key"], taint["value"], taint["effect"])
    return any((t.get("key"), str(t.get("value") or ""), t.get("effect")) == wanted for t in _taints(node))


def _in_pool(ctx: Context, node: dict[str, Any]) -> bool:
    label = ctx.profile.gpu.pool_label
    return node_labels(node).get(label.key) == label.value


def _looks_gpu(ctx: Context, node: dict[str, Any]) -> bool:
    """GPU-present label or advertised GPUs, whatever the pool label says (`harness.k8s.gpu`)."""
    return is_gpu_node(node, "", "", ctx.resource)


def node_taint(ctx: Context) -> Iterator[Finding]:
    taint = ctx.taint
    for node in ctx.nodes:
        if (_looks_gpu(ctx, node) or _in_pool(ctx, node)) and not _has_taint(node, taint):
            yield Finding(
                "NODE001", "error", _name(node), "spec.taints",
                f"GPU node without the taint {taint['key']}={taint['value']}:{taint['effect']}: "
                "workloads without the toleration can land on it",
            )


def node_pool_label(ctx: Context) -> Iterator[Finding]:
    label = ctx.profile.gpu.pool_label
    for node in ctx.nodes:
        if (_looks_gpu(ctx, node) or _has_taint(node, ctx.taint)) and not _in_pool(ctx, node):
            yield Finding(
                "NODE002", "error", _name(node), "metadata.labels",
                f"GPU node without the pool label {label.key}={label.value}: GPU Servers cannot be placed on it",
            )


def node_advertises_gpus(ctx: Context) -> Iterator[Finding]:
    for node in ctx.nodes:
        if (_in_pool(ctx, node) or _has_taint(node, ctx.taint)) and node_gpu_count(node, ctx.resource) <= 0:
            yield Finding(
                "NODE003", "error", _name(node), f"status.allocatable[{ctx.resource}]",
                f"GPU-pool node advertises no {ctx.resource}: is the device plugin running there "
                "(does it tolerate the GPU taint)?",
            )


def pool_size(ctx: Context) -> Iterator[Finding]:
    expected = sum(g.count for g in ctx.profile.cluster.nodes.gpu_workers)
    found = sum(1 for node in ctx.nodes if _in_pool(ctx, node))
    if found < expected:
        label = ctx.profile.gpu.pool_label
        yield Finding(
            "NODE004", "warning", "Cluster", "nodes",
            f"{found} node(s) carry {label.key}={label.value}, the profile expects {expected} GPU worker(s)",
        )


CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("NODE001", "error", "GPU node without the GPU taint", node_taint),
    Rule("NODE002", "error", "GPU node without the pool label", node_pool_label),
    Rule("NODE003", "error", "GPU-pool node advertising no GPUs", node_advertises_gpus),
    Rule("NODE004", "warning", "fewer GPU-pool nodes than the profile expects", pool_size),
)
