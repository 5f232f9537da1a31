"""The test kit: everything a suite (`suites/`) uses, under one name.

A suite imports from here and from `harness.k8s` (the pure Kubernetes and Seldon rules), nothing else
of the harness (tests/house/test_layering.py holds it). The kit's own modules:

- `context`: the run (`RunContext`) and the per-test `Scope`, without pytest;
- `recording`: what a test adds to the report (`TestRecorder`);
- `helpers`: failures with the placement table, the NVML probe pod's run, cluster state;
- `serving`: what a suite asks of a served model (tritonclient inference, Triton's config and metrics
  through the pod proxy, which Server, pod, node and GPUs serve a model);
- `plugin`: the pytest plugin (options, fixtures, the report), loaded by the root conftest.

The rest are the harness's checks, engines and renderers that the suites drive, named here so that a
suite needs no path into the harness. They are imported when first used (PEP 562), as the suites
did themselves: a run that never reaches the latency engine or Triton's metrics does not pay for
importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.testkit.context import RunContext, Scope
from harness.testkit.helpers import (
    capture_cluster_state,
    fail_on_findings,
    failed_scheduling_messages,
    finish_probe,
    free_gpus,
    start_probe,
)
from harness.testkit.recording import TestRecorder

if TYPE_CHECKING:
    import harness.checks.placement as placement
    import harness.gpu.checks as gpu_checks
    import harness.render as render
    from harness.checks.placement import gpu_node
    from harness.checks.shared_nodes import (
        destructive_refusal,
        gpu_diagnostic_allowed,
        gpu_isolation_finding,
        nodes_free_of_others,
    )
    from harness.checks.slo import evaluate_slo
    from harness.checks.slo import failed as failed_slos
    from harness.config import Model, Profile, Server
    from harness.gpu.gpu_use import MIN_INTERVALS, TimedScrape, timed_scrape
    from harness.gpu.result import ProbeResult, allocated_uuids_from_env
    from harness.gpu.triton import GpuSample, Views, check_triton_gpu_use, gpu_sample
    from harness.lifecycle import ClusterSession
    from harness.load import LoadSpec, run_load
    from harness.load.sweep import SimulatedTelemetry, Telemetry, latency_bound_ms, plan_from_profile, run_sweep
    from harness.load.telemetry import WindowSampler, triton_gpu_reading
    from harness.loadjob import mesh_service_url, run_in_cluster
    from harness.node_hold import evicted, hold_node
    from harness.progress import progress
    from harness.providers.base import MeshEndpoint
    from harness.providers.kind import needed_host_gpus
    from harness.render.gpu import probe_resource
    from harness.testkit.plugin import run_context_of
    from harness.testkit.serving import (
        ServingError,
        attribute,
        compare_outputs,
        infer_tritonclient,
        served_name,
        triton_config_via_pod,
        triton_metrics,
    )

# name -> "module" (the module itself) or "module:attribute"
_LAZY = {
    "render": "harness.render",
    "placement": "harness.checks.placement",
    "gpu_node": "harness.checks.placement:gpu_node",
    "destructive_refusal": "harness.checks.shared_nodes:destructive_refusal",
    "gpu_diagnostic_allowed": "harness.checks.shared_nodes:gpu_diagnostic_allowed",
    "gpu_isolation_finding": "harness.checks.shared_nodes:gpu_isolation_finding",
    "nodes_free_of_others": "harness.checks.shared_nodes:nodes_free_of_others",
    "evaluate_slo": "harness.checks.slo:evaluate_slo",
    "failed_slos": "harness.checks.slo:failed",
    "Model": "harness.config:Model",
    "Profile": "harness.config:Profile",
    "Server": "harness.config:Server",
    "gpu_checks": "harness.gpu.checks",
    "MIN_INTERVALS": "harness.gpu.gpu_use:MIN_INTERVALS",
    "timed_scrape": "harness.gpu.gpu_use:timed_scrape",
    "TimedScrape": "harness.gpu.gpu_use:TimedScrape",
    "allocated_uuids_from_env": "harness.gpu.result:allocated_uuids_from_env",
    "ProbeResult": "harness.gpu.result:ProbeResult",
    "Views": "harness.gpu.triton:Views",
    "check_triton_gpu_use": "harness.gpu.triton:check_triton_gpu_use",
    "gpu_sample": "harness.gpu.triton:gpu_sample",
    "GpuSample": "harness.gpu.triton:GpuSample",
    "ClusterSession": "harness.lifecycle:ClusterSession",
    "LoadSpec": "harness.load:LoadSpec",
    "run_load": "harness.load:run_load",
    "SimulatedTelemetry": "harness.load.sweep:SimulatedTelemetry",
    "Telemetry": "harness.load.sweep:Telemetry",
    "latency_bound_ms": "harness.load.sweep:latency_bound_ms",
    "plan_from_profile": "harness.load.sweep:plan_from_profile",
    "run_sweep": "harness.load.sweep:run_sweep",
    "WindowSampler": "harness.load.telemetry:WindowSampler",
    "triton_gpu_reading": "harness.load.telemetry:triton_gpu_reading",
    "mesh_service_url": "harness.loadjob:mesh_service_url",
    "run_in_cluster": "harness.loadjob:run_in_cluster",
    "evicted": "harness.node_hold:evicted",
    "hold_node": "harness.node_hold:hold_node",
    "progress": "harness.progress:progress",
    "MeshEndpoint": "harness.providers.base:MeshEndpoint",
    "needed_host_gpus": "harness.providers.kind:needed_host_gpus",
    "probe_resource": "harness.render.gpu:probe_resource",
    "run_context_of": "harness.testkit.plugin:run_context_of",
    "ServingError": "harness.testkit.serving:ServingError",
    "attribute": "harness.testkit.serving:attribute",
    "compare_outputs": "harness.testkit.serving:compare_outputs",
    "infer_tritonclient": "harness.testkit.serving:infer_tritonclient",
    "served_name": "harness.testkit.serving:served_name",
    "triton_config_via_pod": "harness.testkit.serving:triton_config_via_pod",
    "triton_metrics": "harness.testkit.serving:triton_metrics",
}

# Written out (not built from _LAZY) so that type checkers see what the kit exports.
__all__ = [
    "MIN_INTERVALS",
    "ClusterSession",
    "GpuSample",
    "LoadSpec",
    "MeshEndpoint",
    "Model",
    "ProbeResult",
    "Profile",
    "RunContext",
    "Scope",
    "Server",
    "ServingError",
    "SimulatedTelemetry",
    "Telemetry",
    "TestRecorder",
    "TimedScrape",
    "Views",
    "WindowSampler",
    "allocated_uuids_from_env",
    "attribute",
    "capture_cluster_state",
    "check_triton_gpu_use",
    "compare_outputs",
    "destructive_refusal",
    "evaluate_slo",
    "evicted",
    "fail_on_findings",
    "failed_scheduling_messages",
    "failed_slos",
    "finish_probe",
    "free_gpus",
    "gpu_checks",
    "gpu_diagnostic_allowed",
    "gpu_isolation_finding",
    "gpu_node",
    "gpu_sample",
    "hold_node",
    "infer_tritonclient",
    "latency_bound_ms",
    "mesh_service_url",
    "needed_host_gpus",
    "nodes_free_of_others",
    "placement",
    "plan_from_profile",
    "probe_resource",
    "progress",
    "render",
    "run_context_of",
    "run_in_cluster",
    "run_load",
    "run_sweep",
    "served_name",
    "start_probe",
    "timed_scrape",
    "triton_config_via_pod",
    "triton_gpu_reading",
    "triton_metrics",
]


if not TYPE_CHECKING:  # a type checker sees the names above, never a catch-all

    def __getattr__(name: str) -> Any:
        target = _LAZY.get(name)
        if target is None:
            raise AttributeError(f"module 'harness.testkit' has no attribute {name!r}")
        module_name, _, attribute_name = target.partition(":")
        module = importlib.import_module(module_name)
        value = getattr(module, attribute_name) if attribute_name else module
        globals()[name] = value  # the next lookup is a plain attribute
        return value
