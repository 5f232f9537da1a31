"""Placement verdicts: GPU servers on the GPU pool, nothing else there, each model on its server.

Every function takes a `Snapshot` (plain Kubernetes dicts as `kubectl get -o json` shows them) and
the profile, and returns `Violation`s: one per thing that is wrong, each a readable line naming the
object and why. An empty list means the rule holds. `placement_table` is what a failing test prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.config import Profile
from harness.k8s.conditions import node_ready
from harness.k8s.gpu import GPU_PRESENT_LABEL, in_pool, node_gpu_count, pod_gpu_request
from harness.k8s.gpu import is_gpu_node as _is_gpu_node
from harness.k8s.seldon_api import SERVER_NAME_LABEL
from harness.k8s.sharing import PRODUCT_LABEL
from harness.k8s.taints import format_taint, node_has_taint, tolerates

Obj = dict[str, Any]
TERMINATED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Violation:
    """One placement rule broken (lint's problems are `harness.lint.model.Finding` and preflight's
    results `harness.providers.base.PreflightCheck`: different shapes, so different names)."""

    rule: str
    subject: str  # "node/x", "pod/ns/x", "model/ns/x"
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass
class Snapshot:
    nodes: list[Obj]
    pods: list[Obj]
    servers: list[Obj] = field(default_factory=list)
    models: list[Obj] = field(default_factory=list)

    def node(self, name: str | None) -> Obj | None:
        return next((n for n in self.nodes if n["metadata"]["name"] == name), None)


# --- small accessors ------------------------------------------------------------------
def _labels(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _pod_id(pod: Obj) -> str:
    return f"pod/{pod['metadata'].get('namespace', '')}/{_name(pod)}"


def gpu_node(node: Obj, profile: Profile) -> bool:
    """`harness.k8s.gpu.is_gpu_node` with the profile's pool label and GPU resource."""
    pool = profile.gpu.pool_label
    return _is_gpu_node(node, pool.key, pool.value, profile.gpu.resource_name)


def _has_taint(node: Obj, profile: Profile) -> bool:
    want = profile.gpu.taint
    return node_has_taint(node, want.key, want.value, want.effect)


def _has_pool_label(node: Obj, profile: Profile) -> bool:
    return in_pool(node, profile.gpu.pool_label.key, profile.gpu.pool_label.value)


def _running(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINATED]


def _server_pods(snapshot: Snapshot, server: str, namespace: str) -> list[Obj]:
    return [
        p for p in _running(snapshot.pods)
        if _labels(p).get(SERVER_NAME_LABEL) == server and p["metadata"].get("namespace") == namespace
    ]


# --- rules ----------------------------------------------------------------------------
def gpu_pool_tainted(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    """Every node of the GPU pool carries the GPU taint and the pool label (reported, never fixed)."""
    findings = []
    for node in snapshot.nodes:
        if not gpu_node(node, profile):
            continue
        missing = []
        if not _has_taint(node, profile):
            missing.append(f"taint {profile.gpu.taint}")
        if not _has_pool_label(node, profile):
            missing.append(f"label {profile.gpu.pool_label.key}={profile.gpu.pool_label.value}")
        if missing:
            gpus = node_gpu_count(node, profile.gpu.resource_name)
            findings.append(Violation(
                "gpu-pool-tainted", f"node/{_name(node)}",
                f"GPU node ({gpus} {profile.gpu.resource_name}) lacks {' and '.join(missing)}",
            ))
    return findings


def gpu_server_pods_on_pool(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    """Each GPU Server has its replicas running on tainted, pool-labelled GPU nodes."""
    findings = []
    namespace = profile.seldon.namespace
    for server in profile.gpu_servers:
        pods = _server_pods(snapshot, server.name, namespace)
        if len(pods) != server.replicas:
            findings.append(Violation(
                "gpu-server-on-pool", f"server/{namespace}/{server.name}",
                f"expected {server.replicas} pod(s), found {len(pods)}",
            ))
        for pod in pods:
            node_name = pod.get("spec", {}).get("nodeName")
            node = snapshot.node(node_name)
            if node is None:
                findings.append(Violation("gpu-server-on-pool", _pod_id(pod), "is not scheduled on any node"))
                continue
            why = []
            if not node_ready(node):
                why.append("node is not Ready")
            if not _has_taint(node, profile):
                why.append(f"node lacks taint {profile.gpu.taint}")
            if not _has_pool_label(node, profile):
                why.append(f"node lacks label {profile.gpu.pool_label.key}={profile.gpu.pool_label.value}")
            requested = pod_gpu_request(pod, profile.gpu.resource_name)
            if requested != server.gpus:
                why.append(f"requests {requested} GPU(s), profile says {server.gpus}")
            if why:
                findings.append(Violation("gpu-server-on-pool", _pod_id(pod), f"on node {node_name}: {'; '.join(why)}"))
    return findings


def nothing_else_on_gpu_nodes(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    """No running pod that lacks a toleration for the GPU taint is on a GPU node."""
    taint = profile.gpu.taint.as_k8s()
    gpu_nodes = {_name(n) for n in snapshot.nodes if gpu_node(n, profile)}
    findings = []
    for pod in _running(snapshot.pods):
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name in gpu_nodes and not tolerates(pod.get("spec", {}).get("tolerations"), taint):
            owner = _owner(pod)
            findings.append(Violation(
                "nothing-else-on-gpu-nodes", _pod_id(pod),
                f"runs on GPU node {node_name} without a toleration for {format_taint(taint)} (owner {owner})",
            ))
    return findings


def cpu_servers_off_pool(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    gpu_nodes = {_name(n) for n in snapshot.nodes if gpu_node(n, profile)}
    findings = []
    for server in profile.servers:
        if server.on_gpu:
            continue
        for pod in _server_pods(snapshot, server.name, profile.seldon.namespace):
            node_name = pod.get("spec", {}).get("nodeName")
            if node_name in gpu_nodes:
                findings.append(Violation(
                    "cpu-server-off-pool", _pod_id(pod), f"CPU server {server.name} runs on GPU node {node_name}",
                ))
    return findings


def _model_status(model: Obj) -> tuple[str | None, bool, int]:
    status = model.get("status") or {}
    selector = status.get("selector")
    ready = any(
        c.get("type") == "ModelReady" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return selector, ready, int(status.get("availableReplicas") or 0)


def models_on_intended_servers(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    """Each profile Model is ready, with all replicas, on the Server it was meant for."""
    by_name = {(m["metadata"].get("namespace"), _name(m)): m for m in snapshot.models}
    findings = []
    for model in profile.models:
        subject = f"model/{profile.seldon.namespace}/{model.name}"
        live = by_name.get((profile.seldon.namespace, model.name))
        if live is None:
            findings.append(Violation("model-on-server", subject, "not found in the cluster"))
            continue
        selector, ready, available = _model_status(live)
        intended = profile.intended_server(model)
        if intended is not None and selector != f"server={intended}":
            findings.append(Violation(
                "model-on-server", subject, f"landed on {selector or 'no server'}, expected server={intended}",
            ))
        if not ready:
            findings.append(Violation("model-on-server", subject, f"is not ModelReady ({_condition_summary(live)})"))
        elif available < model.replicas:
            findings.append(Violation(
                "model-on-server", subject, f"has {available} available replica(s), expected {model.replicas}",
            ))
    return findings


def gpu_server_names(snapshot: Snapshot, profile: Profile) -> set[str]:
    """Servers that hold GPUs: the profile's GPU servers plus any live server whose pods request GPUs."""
    names = {s.name for s in profile.gpu_servers}
    for pod in _running(snapshot.pods):
        server = _labels(pod).get(SERVER_NAME_LABEL)
        if server and pod_gpu_request(pod, profile.gpu.resource_name) > 0:
            names.add(server)
    return names


def non_gpu_models_off_gpu_servers(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    """A model that did not ask for the GPU capability must not land on a GPU server (Seldon #4968)."""
    gpu_servers = gpu_server_names(snapshot, profile)
    findings = []
    for model in snapshot.models:
        spec = model.get("spec") or {}
        selector, _, _ = _model_status(model)
        if not selector or not selector.startswith("server="):
            continue
        server = selector.split("=", 1)[1]
        if server not in gpu_servers:
            continue
        asked = profile.gpu.capability in (spec.get("requirements") or []) or spec.get("server") == server
        if not asked:
            findings.append(Violation(
                "non-gpu-model-off-gpu-server", f"model/{model['metadata'].get('namespace')}/{_name(model)}",
                f"landed on GPU server {server} without requiring {profile.gpu.capability!r} or pinning it "
                f"(requirements {spec.get('requirements') or []})",
            ))
    return findings


RULES = (
    gpu_pool_tainted,
    gpu_server_pods_on_pool,
    nothing_else_on_gpu_nodes,
    cpu_servers_off_pool,
    models_on_intended_servers,
    non_gpu_models_off_gpu_servers,
)


def all_findings(snapshot: Snapshot, profile: Profile) -> list[Violation]:
    return [f for rule in RULES for f in rule(snapshot, profile)]


# --- the table a failure prints --------------------------------------------------------
def _owner(pod: Obj) -> str:
    server = _labels(pod).get(SERVER_NAME_LABEL)
    if server:
        return f"Server/{server}"
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return f"{refs[0].get('kind')}/{refs[0].get('name')}" if refs else "-"


def _condition_summary(obj: Obj) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    parts = [f"{c.get('type')}={c.get('status')}" + (f" ({c.get('message') or c.get('reason')})"
             if c.get("status") != "True" and (c.get("message") or c.get("reason")) else "") for c in conditions]
    return ", ".join(parts) or "no conditions"


@dataclass(frozen=True)
class TableRow:
    """One row of the placement table a failing test prints (the report's row is
    `harness.report.model.PlacementRow`, built from this by `ReportBuilder.add_placement_table`)."""

    pod: str
    node: str
    node_taints: str
    node_labels: str
    gpus: int
    owner: str
    verdict: str  # ok | WRONG
    why: str


def placement_table(snapshot: Snapshot, profile: Profile, findings: list[Violation] | None = None) -> list[TableRow]:
    """pod -> node -> taints/labels -> why it is wrong, for every running pod on a GPU node or of a Server."""
    findings = all_findings(snapshot, profile) if findings is None else findings
    by_subject: dict[str, list[str]] = {}
    for f in findings:
        by_subject.setdefault(f.subject, []).append(f.message)
    gpu_nodes = {_name(n) for n in snapshot.nodes if gpu_node(n, profile)}
    rows = []
    for pod in sorted(_running(snapshot.pods), key=lambda p: (p["metadata"].get("namespace", ""), _name(p))):
        node_name = pod.get("spec", {}).get("nodeName") or ""
        if node_name not in gpu_nodes and SERVER_NAME_LABEL not in _labels(pod):
            continue
        node = snapshot.node(node_name) or {}
        labels = _labels(node)
        shown = {k: v for k, v in labels.items()
                 if k in (profile.gpu.pool_label.key, PRODUCT_LABEL, GPU_PRESENT_LABEL)}
        why = by_subject.get(_pod_id(pod), []) + by_subject.get(f"node/{node_name}", [])
        rows.append(TableRow(
            pod=f"{pod['metadata'].get('namespace')}/{_name(pod)}",
            node=node_name or "<pending>",
            node_taints=",".join(format_taint(t) for t in (node.get("spec") or {}).get("taints") or []) or "-",
            node_labels=",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "-",
            gpus=pod_gpu_request(pod, profile.gpu.resource_name),
            owner=_owner(pod),
            verdict="WRONG" if why else "ok",
            why="; ".join(why) or "-",
        ))
    return rows


def format_table(rows: list[TableRow]) -> str:
    header = ("POD", "NODE", "NODE TAINTS", "NODE LABELS", "GPUS", "OWNER", "VERDICT", "WHY")
    cells = [header] + [
        (r.pod, r.node, r.node_taints, r.node_labels, str(r.gpus), r.owner, r.verdict, r.why) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
