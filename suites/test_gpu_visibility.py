"""GPU visibility through NVML: each pod sees exactly its GPUs, a pod without GPUs sees none.

The NVML probe (harness/gpu/probe.py) runs from a ConfigMap in one-shot pods on the GPU nodes.
On the simulated cluster it runs unchanged against a simulated NVML; on kind-cpu (fake GPUs) these
tests skip, and `--require-gpu` turns that skip into a failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.testkit import (
    ClusterSession,
    GpuSample,
    ProbeResult,
    RunContext,
    Scope,
    Server,
    TestRecorder,
    TimedScrape,
    Views,
    allocated_uuids_from_env,
    finish_probe,
    free_gpus,
    gpu_diagnostic_allowed,
    gpu_isolation_finding,
    gpu_node,
    needed_host_gpus,
    probe_resource,
    start_probe,
)
from harness.testkit import gpu_checks as checks

# (the host's GPUs through NVML, or None; why not)
HostInventory = tuple[ProbeResult | None, str]

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("require_nvml")]



def _gpu_nodes(scope: Scope) -> list[dict[str, Any]]:
    nodes = [n for n in scope.kube.list("v1", "Node") if gpu_node(n, scope.profile)]
    if not nodes:
        pytest.fail("no GPU node in the cluster", pytrace=False)
    return nodes


def _product(node: dict[str, Any]) -> str | None:
    return (node["metadata"].get("labels") or {}).get("nvidia.com/gpu.product")


def _expected_product(scope: Scope, run_context: RunContext, host_gpu_inventory: HostInventory,
                      node: dict[str, Any], result: ProbeResult) -> str | None:
    """On kind with passthrough the node label is the harness's own (from the profile), so the truth is
    the host's NVML: the label form of the host GPUs this pod sees (an H200 NVL is `NVIDIA-H200-NVL`,
    whatever the profile says). Elsewhere gpu-feature-discovery's `nvidia.com/gpu.product` label."""
    if run_context.target_provider == "kind" and not scope.profile.cluster.fake_gpus:
        host, _ = host_gpu_inventory
        if host is not None:
            names = {d.name for d in host.devices if d.name and d.uuid in result.visible_uuids}
            if len(names) == 1:
                return checks.gfd_product_label(names.pop())
    return _product(node)


def _assert_verdicts(verdicts: list[checks.Verdict], record: TestRecorder) -> None:
    for verdict in verdicts:
        record.check(verdict.id, verdict.ok, verdict.reason)
    bad = checks.failed(verdicts)
    assert not bad, "\n".join(v.reason for v in bad)


# The probe tests take `deployed_ok`: they run beside the deployed Servers (a real cluster's GPUs are
# partly held then), so free GPUs are counted around them and a fully held node takes the diagnostic view.
def test_each_probe_sees_exactly_its_allocated_gpu(deployed_ok: ClusterSession, scope: Scope, record: TestRecorder,
                                                   run_context: RunContext, host_gpu_inventory: HostInventory) -> None:
    nodes = [n for n in _gpu_nodes(scope) if free_gpus(scope.kube, n, probe_resource(scope.profile)) >= 1]
    if not nodes:
        pytest.skip("missing shape: a GPU node with a GPU free beside the Servers (no GPU node has a free GPU "
                    "for the probe); give the cluster more GPUs (cluster.nodes.gpu_workers)")
    verdicts: list[checks.Verdict] = []
    sharing = scope.profile.gpu.shared()
    if sharing.mode != "none":
        # Shared GPUs: each GPU node advertises its devices x replicas (time-slicing, MIG; docs/gpu-sharing.md).
        verdicts += [v for n in _gpu_nodes(scope) for v in checks.check_shared_capacity(n, sharing)]
    for i, node in enumerate(nodes):
        start_probe(scope, f"probe-{i}", node["metadata"]["name"], gpus=1)
    for i, node in enumerate(nodes):
        pod, result = finish_probe(scope, f"probe-{i}")
        record.probe(pod, result, requested=1)
        product = _expected_product(scope, run_context, host_gpu_inventory, node, result)
        verdicts += checks.check_pod_visibility(
            result, 1, None, product, allocated_uuids_from_env(result.env),
            node=node["metadata"]["name"],
        )
    _assert_verdicts(verdicts, record)


def test_two_pods_on_one_node_get_disjoint_gpus(deployed_ok: ClusterSession, scope: Scope, record: TestRecorder,
                                                run_context: RunContext, host_gpu_inventory: HostInventory) -> None:
    resource = probe_resource(scope.profile)
    node = next((n for n in _gpu_nodes(scope) if free_gpus(scope.kube, n, resource) >= 2), None)
    if node is None:
        pytest.skip("missing shape: a GPU node with two free GPUs (no GPU node has two free GPUs); give a GPU "
                    "worker more GPUs (cluster.nodes.gpu_workers[].gpus)")
    name = node["metadata"]["name"]
    for pod in ("pair-a", "pair-b"):
        start_probe(scope, pod, name, gpus=1, hold_s=3)
    results = {}
    for pod in ("pair-a", "pair-b"):
        obj, result = finish_probe(scope, pod)
        record.probe(obj, result, requested=1)
        results[pod] = result
    # Time-sliced GPUs are shared on purpose: then the verdict reports who shares what (gpu.shared).
    verdicts = checks.check_disjoint(results, node=name, shared=scope.profile.gpu.shared().shared)
    for pod, result in results.items():
        # The product each pod must see, from NVML where the node label is the harness's own (kind).
        product = _expected_product(scope, run_context, host_gpu_inventory, node, result)
        verdicts += checks.check_pod_visibility(result, 1, None, product,
                                                allocated_uuids_from_env(result.env), node=f"{name} ({pod})")
    # MIG: each pod sees exactly its MIG device; the product label carries the MIG profile or -SHARED.
    verdicts += checks.check_sharing(results, 1, node["metadata"].get("labels") or {},
                                     scope.profile.gpu.shared(), node=name)
    _assert_verdicts(verdicts, record)


def test_pod_that_asked_for_no_gpu_sees_none(deployed_ok: ClusterSession, scope: Scope, record: TestRecorder) -> None:
    node = _gpu_nodes(scope)[0]
    start_probe(scope, "no-gpu", node["metadata"]["name"], gpus=0)
    pod, result = finish_probe(scope, "no-gpu")
    record.probe(pod, result, requested=0)
    _assert_verdicts(checks.check_pod_visibility(result, 0, None, _product(node),
                                                 allocated_uuids_from_env(result.env),
                                                 node=node["metadata"]["name"]), record)


def test_host_gpus_equal_the_gpus_seen_in_the_cluster(deployed_ok: ClusterSession, scope: Scope,
                                                      run_context: RunContext, host_gpu_inventory: HostInventory,
                                                      record: TestRecorder) -> None:
    # A rehearsal of a kind profile runs it too, against the simulated host.
    if run_context.target_provider != "kind" or scope.profile.cluster.fake_gpus:
        pytest.skip("compares host NVML with the cluster: only on kind with GPU passthrough (profiles/kind-gpu.yaml)")
    host, reason = host_gpu_inventory
    if host is None:
        pytest.skip(f"host NVML unavailable: {reason}")
    seen: set[str] = set()
    unavailable: list[str] = []
    resource = probe_resource(scope.profile)
    for i, node in enumerate(_gpu_nodes(scope)):
        gpus = free_gpus(scope.kube, node, resource)
        total = int(str(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")) or 0)
        name = f"host-{i}"
        if gpus > 0 and gpus >= total:
            start_probe(scope, name, node["metadata"]["name"], gpus=gpus)
            pod, result = finish_probe(scope, name)
            record.probe(pod, result, requested=gpus)
        else:
            # GPUs of this node are held (by the deployed GPU Servers): a probe asking for the free ones
            # would not see those, so look through the diagnostic view, which asks for no GPU and sets
            # NVIDIA_VISIBLE_DEVICES=all (not recorded as a GPU holder).
            start_probe(scope, name, node["metadata"]["name"], gpus=0, env={"NVIDIA_VISIBLE_DEVICES": "all"})
            _, result = finish_probe(scope, name)
            record.note(f"host view of {node['metadata']['name']}",
                        f"{total - gpus} of {total} GPU(s) held by Servers: a diagnostic probe "
                        "(no GPU requested, NVIDIA_VISIBLE_DEVICES=all)")
        if not result.nvml_available:
            unavailable.append(f"{result.source} on {node['metadata']['name']}")
        seen |= set(result.visible_uuids)
    # Only some host GPUs go to kind workers when the profile names them (gpu_workers[].host_gpus) or
    # needs fewer than the host has.
    workers = scope.profile.cluster.nodes.gpu_workers
    subset = any(g.host_gpus for g in workers) or needed_host_gpus(scope.profile) < len(host.visible_uuids)
    _assert_verdicts(checks.check_host_matches_cluster(set(host.visible_uuids), seen,
                                                       allow_unused_host_gpus=subset, unavailable=unavailable),
                     record)


def _nvml_view(
    scope: Scope, name: str, node_name: str, findings: list[checks.Verdict] | None = None
) -> tuple[dict[str, int] | None, str | None, ProbeResult | None]:
    """Memory held by compute processes per GPU of the node, seen from a diagnostic probe that asks
    for no GPU and sets NVIDIA_VISIBLE_DEVICES=all (NVML then lists every process on every device).
    None with the reason where the runtime does not honour it, or where the diagnostic is off: it
    widens that pod's access, so on clusters the harness did not create it runs only when the
    profile opts in (gpu.use_diagnostic: true)."""
    profile = scope.profile
    if not gpu_diagnostic_allowed(profile.cluster.provider, profile.gpu.use_diagnostic):
        return None, ("the GPU-use diagnostic (a no-GPU pod with NVIDIA_VISIBLE_DEVICES=all) is off on clusters "
                      "the harness did not create: set gpu.use_diagnostic: true to run it"), None
    start_probe(scope, name, node_name, gpus=0, env={"NVIDIA_VISIBLE_DEVICES": "all"})
    # Not recorded as a probe: this diagnostic view sees every GPU of the node, and the report's GPU
    # inventory would list it as their holder.
    _, result = finish_probe(scope, name)
    if not result.nvml_available or not result.visible_uuids:
        return None, (f"a pod on {node_name} cannot see the node's GPUs with NVIDIA_VISIBLE_DEVICES=all "
                      "(the runtime ignores it for unprivileged pods, or the node has no GPU)"), result
    if findings is not None:
        # It saw GPUs it never asked for: whoever can create a pod there can use them (never a pass).
        findings.append(gpu_isolation_finding(sorted(result.visible_uuids), node_name, profile.cluster.provider))
    held = checks.memory_held(result)
    return held, None, result


def _triton_views(scope: Scope, deployed: ClusterSession, server: Server, pod: dict[str, Any], index: str,
                  findings: list[checks.Verdict] | None = None) -> Views:
    """Take the three views of one Triton pod: config and metrics through the API server's pod proxy
    (Seldon's mesh answers only inference), metrics before, during and after a sustained run of the
    latency engine (several of Triton's metrics intervals), NVML on the node."""
    import dataclasses
    import threading
    import time

    from harness.testkit import (
        MIN_INTERVALS,
        LoadSpec,
        ServingError,
        gpu_sample,
        run_load,
        served_name,
        timed_scrape,
        triton_config_via_pod,
        triton_metrics,
    )

    profile = scope.profile
    namespace, pod_name, node_name = profile.seldon.namespace, pod["metadata"]["name"], pod["spec"]["nodeName"]
    models = [m for m in profile.models if profile.intended_server(m) == server.name and m.request_inputs]
    if not models:
        pytest.fail(f"GPU Server {server.name} has no model with inputs in the profile to exercise it",
                    pytrace=False)
    model = models[0]
    views = Views(server.name, pod_name, node_name, model.name)
    mesh = deployed.mesh  # looked up on first use (harness/providers/mesh.py)
    if mesh is None:
        pytest.fail(f"no route to the Seldon mesh: {deployed.mesh_error or 'no endpoint'}", pytrace=False)
    samples: list[GpuSample] = []
    timed: list[TimedScrape] = []
    texts: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def scrape() -> None:
        try:
            text = triton_metrics(scope.kube, namespace, pod_name)
        except ServingError as exc:
            errors.append(str(exc))
            return
        samples.append(gpu_sample(text))
        timed.append(timed_scrape(text, time.monotonic()))
        if not texts:
            texts.append(text)

    def sampler() -> None:
        for _ in range(10_000):  # bounded; ends when the run does
            if stop.wait(0.25):
                return
            scrape()

    scrape()
    name = served_name(texts[0], model.name) if texts else None
    try:
        if name is None:
            raise ServingError(f"Triton's metrics name no loaded model {model.name} (nor {model.name}_<version>)")
        views.config = triton_config_via_pod(scope.kube, namespace, pod_name, name)
    except ServingError as exc:
        views.config_error = str(exc)
    # Sustained: several of Triton's metrics intervals, so each GPU signal refreshes more than once.
    window_s = MIN_INTERVALS * views.metrics_interval_s + 2.0
    spec = LoadSpec.from_profile(profile, model, mesh.http_url, protocol="http")
    spec = dataclasses.replace(spec, duration_s=window_s, warmup_s=0.0, window_s=window_s, max_trials=1).validate()
    thread = threading.Thread(target=sampler, name="triton-metrics-sampler", daemon=True)
    thread.start()
    try:
        run_load(spec)
    finally:
        stop.set()
        thread.join(10)
    scrape()
    views.metrics = samples
    views.timed = timed
    views.metrics_error = errors[-1] if errors and not samples else None
    node = scope.kube.get("v1", "Node", node_name) or {}
    if gpu_node(node, profile):
        views.nvml, views.nvml_note, _ = _nvml_view(scope, f"use-{index}", node_name, findings)
    else:
        views.nvml_note = f"the pod runs on {node_name}, which is not a GPU node of the pool"
    return views


def test_gpu_servers_really_use_their_gpu(deployed_ok: ClusterSession, scope: Scope, record: TestRecorder) -> None:
    """Once a model is loaded, the server's GPU does the work.

    Triton Servers: three views that must agree (model config KIND_GPU; NVML on the node shows memory
    held on the pod's GPUs; Triton's GPU metrics move during a short load run). Other servers: NVML
    on the node shows a compute process holding memory on a GPU of the node.
    """
    from harness.testkit import check_triton_gpu_use

    profile = scope.profile
    servers = [s for s in profile.servers if s.gpu_use_expected]
    if not servers:
        pytest.skip("no GPU Server expects GPU use (servers[].expect_gpu_use, default: Triton GPU servers)")
    verdicts: list[checks.Verdict] = []
    for i, server in enumerate(servers):
        pods = scope.kube.list("v1", "Pod", profile.seldon.namespace,
                               label_selector=f"seldon-server-name={server.name}")
        assert pods, f"Server {server.name} has no pods"
        for j, pod in enumerate(pods):
            node_name = pod["spec"]["nodeName"]
            if server.server_config == "triton":
                views = _triton_views(scope, deployed_ok, server, pod, f"{i}-{j}", verdicts)
                record.note(f"gpu-use views {server.name}/{pod['metadata']['name']}",
                            f"views used: {', '.join(views.used) or 'none'}"
                            + (f"; nvml not used: {views.nvml_note}" if views.nvml is None else ""))
                verdicts += check_triton_gpu_use(views)
                continue
            held, note, result = _nvml_view(scope, f"use-{i}-{j}", node_name, verdicts)
            if held is None:
                pytest.skip(f"{note}; check GPU use with a Triton Server (model config and metrics)")
            assert result is not None  # a view with memory figures has the probe result they came from
            verdicts += checks.check_gpu_in_use(result, set(result.visible_uuids),
                                                node=node_name)
    _assert_verdicts(verdicts, record)
