"""The lint rules: pure functions over documents, the profile and nodes. Each has a stable id.

Ids are part of the interface (CI filters, docs): never renumber, only add.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

from harness.config import DEFAULT_CAPABILITIES, Profile
from harness.k8s.gpu import DEVICE_PLUGIN_DEFAULT_TOLERATIONS as _DEVICE_PLUGIN_DEFAULT_TOLERATIONS
from harness.k8s.seldon import config_capabilities, merge_pod_spec, satisfies, server_capabilities
from harness.k8s.sharing import container_gpu_resources, mig_profile_of_resource, offered
from harness.k8s.taints import tolerates, toleration_matches
from harness.lint.model import DEVICE_PLUGIN_CHART, Document, Finding, Severity
from harness.lint.podspec import (
    containers,
    gpu_counts,
    gpu_resource_names,
    has_selection,
    requests_gpu,
    selects_node,
    targets_label,
    workload_pod,
)

_SERVER_CONTAINERS = ("mlserver", "triton")


@dataclass(frozen=True)
class Workload:
    doc: Document
    pod: dict[str, Any]
    path: str

    @property
    def is_server(self) -> bool:
        return self.doc.kind == "Server"


@dataclass(frozen=True)
class Context:
    docs: tuple[Document, ...]
    profile: Profile
    nodes: tuple[dict[str, Any], ...]
    live: bool

    @property
    def taint(self) -> dict[str, str]:
        return self.profile.gpu.taint.as_k8s()

    @property
    def resource(self) -> str:
        return self.profile.gpu.resource_name

    def of_kind(self, kind: str) -> list[Document]:
        return [d for d in self.docs if d.kind == kind]

    @cached_property
    def server_configs(self) -> dict[str, Document]:
        return {d.name: d for d in self.of_kind("ServerConfig")}

    def server_pod(self, server: Document) -> dict[str, Any]:
        config = self.server_configs.get(str(server.spec.get("serverConfig", "")))
        config_pod = config.spec.get("podSpec") if config is not None else None
        return merge_pod_spec(config_pod, server.spec.get("podSpec"))

    @cached_property
    def workloads(self) -> list[Workload]:
        found: list[Workload] = []
        for doc in self.docs:
            if doc.kind == "Server":
                found.append(Workload(doc, self.server_pod(doc), "spec.podSpec"))
                continue
            located = workload_pod(doc)
            if located is not None:
                found.append(Workload(doc, located[0], located[1]))
        return found

    def is_gpu(self, workload: Workload) -> bool:
        return requests_gpu(workload.pod, self.resource)

    def capabilities(self, server: Document) -> tuple[set[str], set[str]] | None:
        """(all capabilities, the defaults of its ServerConfig), or None when they cannot be known."""
        config_name = str(server.spec.get("serverConfig", ""))
        defaults: list[str] | None = None
        config = self.server_configs.get(config_name)
        if config is not None:
            pod = config.spec.get("podSpec")
            defaults = config_capabilities(pod) if isinstance(pod, dict) else None
        elif config_name in DEFAULT_CAPABILITIES:
            defaults = list(DEFAULT_CAPABILITIES[config_name])
        if defaults is None and not isinstance(server.spec.get("capabilities"), list):
            return None
        return set(server_capabilities(server.spec, defaults or [])), set(defaults or [])


CheckFn = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str
    check: CheckFn


_REGISTRY: list[Rule] = []


def _rule(rule_id: str, severity: Severity, summary: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        _REGISTRY.append(Rule(rule_id, severity, summary, fn))
        return fn

    return register


def _finding(rule_id: str, severity: Severity, doc: Document, field: str, message: str) -> Finding:
    return Finding(rule_id, severity, doc.ref, field, message, f"{doc.source}#{doc.index + 1}")


def _shown(quantity: Fraction | None) -> str:
    return "unset" if quantity is None else f"{float(quantity):g}"


def _taint_text(taint: dict[str, str]) -> str:
    return f"{taint['key']}={taint['value']}:{taint['effect']}"


# --- GPU placement ---------------------------------------------------------------------------------


@_rule("GPU001", "error", "GPU requests differ from limits")
def gpu_requests_equal_limits(ctx: Context) -> Iterator[Finding]:
    pods: list[tuple[Document, dict[str, Any], str]] = [(w.doc, w.pod, w.path) for w in ctx.workloads]
    pods += [(d, d.spec.get("podSpec") or {}, "spec.podSpec") for d in ctx.of_kind("ServerConfig")]
    for doc, pod, path in pods:
        for _, c in containers(pod):
            # Every GPU resource counts: whole GPUs, shared replicas, MIG devices (harness/k8s/sharing.py).
            for resource in gpu_resource_names(c, ctx.resource):
                req, lim = gpu_counts(c, resource)
                if req is None and lim is None:
                    continue
                if req is not None and lim is not None and req == lim:
                    continue
                yield _finding(
                    "GPU001", "error", doc, f"{path}.containers[{c.get('name')}].resources",
                    f"{resource} requests {_shown(req)} != limits {_shown(lim)}; extended resources need "
                    "requests == limits (a Server's StatefulSet is rejected and "
                    "StatefulSetOrDeploymentReady goes False)",
                )


@_rule("GPU008", "error", "GPU resource (MIG profile, shared replicas) that no node offers")
def gpu_resource_offered(ctx: Context) -> Iterator[Finding]:
    # Only where nodes are known to advertise GPUs: a profile's promised GPU workers or live nodes.
    offers = offered(ctx.nodes)
    if not offers:
        return
    what = "live node" if ctx.live else "node of the profile"
    summary = "; ".join(f"{r} on {', '.join(sorted(n))}" for r, n in sorted(offers.items()))
    for w in ctx.workloads:
        for _, c in containers(w.pod):
            for resource, (req, lim) in container_gpu_resources(c).items():
                if resource in offers or not ((req or 0) > 0 or (lim or 0) > 0):
                    continue
                profile = mig_profile_of_resource(resource)
                yield _finding(
                    "GPU008", "error", w.doc, f"{w.path}.containers[{c.get('name')}].resources",
                    f"requests {resource}" + (f" (MIG profile {profile})" if profile else "")
                    + f", which no {what} offers; the nodes offer {summary}; pods stay Pending",
                )


@_rule("GPU002", "error", "GPU workload without a toleration for the GPU taint")
def gpu_tolerates_taint(ctx: Context) -> Iterator[Finding]:
    taint = ctx.taint
    for w in ctx.workloads:
        if not ctx.is_gpu(w):
            continue
        tolerations = [t for t in w.pod.get("tolerations") or [] if isinstance(t, dict)]
        if any(toleration_matches(t, taint) for t in tolerations):
            continue
        same_key = [t for t in tolerations if t.get("key") == taint["key"]]
        if same_key:
            t = same_key[0]
            yield _finding(
                "GPU003", "error", w.doc, f"{w.path}.tolerations",
                f"toleration for {taint['key']} (operator {t.get('operator', 'Equal')}, value "
                f"{t.get('value')!r}, effect {t.get('effect') or '<any>'}) does not tolerate the GPU taint "
                f"{_taint_text(taint)}; pods stay Pending",
            )
        else:
            yield _finding(
                "GPU002", "error", w.doc, f"{w.path}.tolerations",
                f"requests {ctx.resource} but has no toleration for the GPU taint {_taint_text(taint)}; "
                "pods stay Pending (or land only where an admission plugin adds tolerations)",
            )


# GPU003 is reported by gpu_tolerates_taint (one finding per workload); registered for the catalogue.
_REGISTRY.append(Rule("GPU003", "error", "toleration for the GPU taint with the wrong value/effect", lambda _: ()))


@_rule("GPU004", "error", "GPU workload not pinned to the GPU pool")
def gpu_targets_pool(ctx: Context) -> Iterator[Finding]:
    label = ctx.profile.gpu.pool_label
    for w in ctx.workloads:
        if ctx.is_gpu(w) and not targets_label(w.pod, label.key, label.value):
            yield _finding(
                "GPU004", "error", w.doc, f"{w.path}.affinity",
                f"requests {ctx.resource} but neither nodeSelector nor required node affinity restricts it to "
                f"{label.key}={label.value}; it may land on other nodes",
            )


@_rule("GPU005", "error", "node selection that no node satisfies")
def selection_satisfiable(ctx: Context) -> Iterator[Finding]:
    # Against the profile's promise on an existing cluster the labels are only a guess: warn, don't fail.
    severity: Severity = "error" if ctx.live or ctx.profile.cluster.provider != "existing" else "warning"
    what = "live node" if ctx.live else "node of the profile"
    candidates: list[tuple[Document, dict[str, Any], str]] = [(w.doc, w.pod, w.path) for w in ctx.workloads]
    candidates += [(d, d.body, "affinity") for d in _device_plugin_values(ctx)]
    for doc, pod, path in candidates:
        if not has_selection(pod):
            continue
        if not any(selects_node(pod, node) for node in ctx.nodes):
            yield _finding(
                "GPU005", severity, doc, f"{path}.nodeSelector/affinity",
                f"no {what} matches its nodeSelector and required node affinity ({len(ctx.nodes)} nodes checked)",
            )


def _device_plugin_values(ctx: Context) -> list[Document]:
    return [d for d in ctx.docs if d.chart == DEVICE_PLUGIN_CHART]


def _is_device_plugin_daemonset(doc: Document) -> bool:
    if doc.kind != "DaemonSet":
        return False
    located = workload_pod(doc)
    images = [str(c.get("image", "")) for _, c in containers(located[0] if located else {})]
    return "nvidia-device-plugin" in doc.name or any("k8s-device-plugin" in i for i in images)


@_rule("GPU006", "error", "device plugin does not tolerate the GPU taint")
def device_plugin_tolerates(ctx: Context) -> Iterator[Finding]:
    taint = ctx.taint
    consequence = (
        f"it never runs on {_taint_text(taint)} nodes, no {ctx.resource} is advertised there and GPU pods stay "
        f"Pending with 'Insufficient {ctx.resource}'"
    )
    for doc in _device_plugin_values(ctx):
        raw = doc.body.get("tolerations")
        tolerations = raw if isinstance(raw, list) else list(_DEVICE_PLUGIN_DEFAULT_TOLERATIONS)
        if not any(isinstance(t, dict) and toleration_matches(t, taint) for t in tolerations):
            source = "its tolerations" if isinstance(raw, list) else "the chart's default tolerations"
            yield _finding("GPU006", "error", doc, "tolerations", f"{source} miss the GPU taint: {consequence}")
    for doc in ctx.docs:
        if _is_device_plugin_daemonset(doc):
            located = workload_pod(doc)
            pod = located[0] if located else {}
            if not any(isinstance(t, dict) and toleration_matches(t, taint) for t in pod.get("tolerations") or []):
                yield _finding(
                    "GPU006", "error", doc, "spec.template.spec.tolerations",
                    f"the device plugin DaemonSet does not tolerate the GPU taint: {consequence}",
                )


@_rule("GPU007", "warning", "CPU Server tolerating the GPU taint")
def cpu_server_off_pool(ctx: Context) -> Iterator[Finding]:
    for w in ctx.workloads:
        tolerations = [t for t in w.pod.get("tolerations") or [] if isinstance(t, dict)]
        tolerated = tolerates(tolerations, ctx.taint)
        if w.is_server and not ctx.is_gpu(w) and tolerated:
            yield _finding(
                "GPU007", "warning", w.doc, f"{w.path}.tolerations",
                f"asks for no {ctx.resource} but tolerates the GPU taint {_taint_text(ctx.taint)}; "
                "it can take GPU-node capacity from the inference servers",
            )


# --- Seldon objects -------------------------------------------------------------------------------


@_rule("SEL001", "warning", "Server minReplicas/maxReplicas unset")
def server_replicas_set(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.of_kind("Server"):
        unset = [k for k in ("replicas", "minReplicas", "maxReplicas") if doc.spec.get(k) is None]
        if unset:
            yield _finding(
                "SEL001", "warning", doc, f"spec.{'/'.join(unset)}",
                "unset (Seldon defaults 1/0/0): autoscaling may change the replica count; set all three equal",
            )


@_rule("SEL002", "error", "Server replicas, minReplicas and maxReplicas differ")
def server_replicas_equal(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.of_kind("Server"):
        values = {k: doc.spec.get(k) for k in ("replicas", "minReplicas", "maxReplicas") if doc.spec.get(k) is not None}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            yield _finding(
                "SEL002", "error", doc, "spec.replicas",
                f"{shown}: the replica count may change under test; set replicas = minReplicas = maxReplicas",
            )


@_rule("SEL003", "error", "Server without serverConfig")
def server_has_config(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.of_kind("Server"):
        if not doc.spec.get("serverConfig"):
            yield _finding(
                "SEL003", "error", doc, "spec.serverConfig",
                "required (a ServerConfig name such as mlserver or triton); the API server rejects the Server",
            )


@_rule("SEL004", "error", "Model without storageUri")
def model_has_storage(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.of_kind("Model"):
        if not doc.spec.get("storageUri"):
            yield _finding(
                "SEL004", "error", doc, "spec.storageUri",
                "required (where the model artefact is, e.g. gs://... or a path mounted into rclone)",
            )


@_rule("SEL005", "error", "Model that no Server can serve")
def model_has_server(ctx: Context) -> Iterator[Finding]:
    servers = ctx.of_kind("Server")
    if not servers:
        return  # a Model on its own: its Servers are elsewhere
    by_name = {s.name: s for s in servers}
    caps = {s.name: ctx.capabilities(s) for s in servers}
    for doc in ctx.of_kind("Model"):
        needed = {str(r) for r in doc.spec.get("requirements") or []}
        pinned = doc.spec.get("server")
        if pinned:
            if pinned not in by_name:
                yield _finding(
                    "SEL005", "error", doc, "spec.server",
                    f"pinned to Server {pinned!r}, which is not among the manifests ({', '.join(by_name)}); "
                    "there is no fallback",
                )
                continue
            known = caps[pinned]
            if known is not None and not satisfies(needed, known[0]):
                yield _finding(
                    "SEL005", "error", doc, "spec.requirements",
                    f"pinned Server {pinned!r} lacks {sorted(needed - known[0])}; the model will not schedule",
                )
            continue
        if any(c is None for c in caps.values()):
            continue  # a Server with unknown capabilities might serve it
        if not any(satisfies(needed, c[0]) for c in caps.values() if c is not None):
            yield _finding(
                "SEL005", "error", doc, "spec.requirements",
                f"no Server offers all of {sorted(needed)}; Seldon reports 'Failed to schedule model as no "
                "matching servers are available'",
            )


@_rule("SEL006", "error", "Model that can land on a GPU Server without asking for it")
def model_gpu_trap(ctx: Context) -> Iterator[Finding]:
    label = ctx.profile.gpu.pool_label
    gpu_servers: list[Document] = []
    # Capabilities that do not tell a GPU Server apart: every stock one, and whatever a non-GPU Server offers.
    common: set[str] = {c for caps in DEFAULT_CAPABILITIES.values() for c in caps}
    for w in ctx.workloads:
        if not w.is_server:
            continue
        if ctx.is_gpu(w) or targets_label(w.pod, label.key, label.value):
            gpu_servers.append(w.doc)
        else:
            known = ctx.capabilities(w.doc)
            common |= known[0] if known is not None else set()
    for doc in ctx.of_kind("Model"):
        if doc.spec.get("server"):
            continue  # pinned on purpose
        needed = {str(r) for r in doc.spec.get("requirements") or []}
        for server in gpu_servers:
            known = ctx.capabilities(server)
            if known is None:
                continue
            capabilities = known[0]
            distinguishing = capabilities - common
            if satisfies(needed, capabilities) and not needed & distinguishing:
                ask = sorted(distinguishing) or [ctx.profile.gpu.capability]
                yield _finding(
                    "SEL006", "error", doc, "spec.requirements",
                    f"requirements {sorted(needed)} are met by GPU Server {server.name!r} through capabilities that "
                    f"other Servers share, so the model may take a GPU it never asked for (Seldon #4968); require "
                    f"one of {ask} for GPU models and a CPU-only capability for the others",
                )


@_rule("SEL007", "error", "partial ServerConfig")
def server_config_complete(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.of_kind("ServerConfig"):
        pod = doc.spec.get("podSpec")
        names = [str(c.get("name")) for _, c in containers(pod if isinstance(pod, dict) else {})]
        missing = [n for n in ("rclone", "agent") if n not in names]
        if not any(n in _SERVER_CONTAINERS or n not in ("rclone", "agent") for n in names):
            missing.append("an inference server container (mlserver or triton)")
        if not names:
            yield _finding(
                "SEL007", "error", doc, "spec.podSpec.containers",
                "no containers: a ServerConfig replaces the whole pod template, it is not merged with the default",
            )
        elif missing:
            yield _finding(
                "SEL007", "error", doc, "spec.podSpec.containers",
                f"missing {', '.join(missing)}: a ServerConfig replaces the whole pod template (it is not merged "
                "with the default one); start from a complete template",
            )


_RUNTIME_CHART = "seldon-core-v2-runtime"
_KAFKA_COMPONENTS = ("dataflow", "modelgateway", "pipelinegateway")


@_rule("SEL008", "warning", "Kafka components enabled without Kafka")
def runtime_kafka_components(ctx: Context) -> Iterator[Finding]:
    if ctx.profile.seldon.kafka:
        return
    for doc in ctx.docs:
        if doc.chart != _RUNTIME_CHART:
            continue
        for component in _KAFKA_COMPONENTS:
            entry = doc.body.get(component) or {}
            if not entry.get("disable"):
                yield _finding(
                    "SEL008", "warning", doc, f"{component}.disable",
                    "enabled (the chart default) while the profile has no Kafka (seldon.kafka: false): it is only "
                    "for pipelines and crash-loops without Kafka; set disable: true",
                )


# --- kind -----------------------------------------------------------------------------------------------

# Seldon Core 2.10 supports Kubernetes 1.27-1.33 (design B1).
_KIND_IMAGE = re.compile(r"^kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}$")
_SUPPORTED_MINORS = range(27, 34)


@_rule("KIND001", "warning", "kind node image not pinned to a supported Kubernetes version")
def kind_node_image(ctx: Context) -> Iterator[Finding]:
    for doc in ctx.docs:
        if doc.kind != "Cluster" or not str(doc.body.get("apiVersion", "")).startswith("kind.x-k8s.io/"):
            continue
        for i, node in enumerate(doc.body.get("nodes") or []):
            image = str((node or {}).get("image", "")) if isinstance(node, dict) else ""
            match = _KIND_IMAGE.match(image)
            if match is None or int(match.group(1)) not in _SUPPORTED_MINORS:
                yield _finding(
                    "KIND001", "warning", doc, f"nodes[{i}].image",
                    f"{image or '<kind default>'}: expected kindest/node:v1.27-v1.33 pinned by @sha256 digest "
                    "(Seldon Core 2.10 supports Kubernetes 1.27-1.33; an unpinned tag can change under you)",
                )


RULES: tuple[Rule, ...] = tuple(sorted(_REGISTRY, key=lambda r: r.id))
