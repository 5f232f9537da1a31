"""Inference through the Seldon mesh: one correct answer per Model, then latency against the SLOs.

The correctness check uses tritonclient's HTTP and gRPC clients (the clients users have); the latency
run uses the harness's engine. Each latency entry names the Server, pods, node and GPUs that served
it, found through the API and Triton's own metrics, never through anything only the sim has.

Latency is measured in open loop (timed from the intended send time: no coordinated omission) at
the profile's load, below capacity, and gated on the achieved rate matching the offered one.
"""

from __future__ import annotations

import pytest

from harness.testkit import (
    ClusterSession,
    MeshEndpoint,
    Model,
    Profile,
    Scope,
    TestRecorder,
    evaluate_slo,
    failed_slos,
    progress,
    run_context_of,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" in metafunc.fixturenames:
        ctx = run_context_of(metafunc.config)
        models = [m for m in ctx.profile.models] if ctx is not None else []
        metafunc.parametrize("model", models, ids=[m.name for m in models])


def _mesh(deployed_ok: ClusterSession, record: TestRecorder | None = None) -> MeshEndpoint:
    mesh = deployed_ok.mesh  # looked up on first use (harness/providers/mesh.py)
    if mesh is None:
        pytest.fail(f"no route to the Seldon mesh: {deployed_ok.mesh_error or 'no endpoint'}", pytrace=False)
    if record is not None and mesh.note:
        record.note("mesh route", f"{mesh.route}: {mesh.note}")  # a tunnel's latency includes the tunnel
    return mesh


def _binary_ok(profile: Profile, model: Model) -> bool:
    """Triton's binary tensors (tritonclient's default) where the intended server is Triton; MLServer
    answers 422 to them, so MLServer models get JSON tensors."""
    intended = profile.intended_server(model)
    return intended is not None and profile.server(intended).server_config == "triton"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_inference_is_correct(deployed_ok: ClusterSession, profile: Profile, model: Model, protocol: str,
                                  record: TestRecorder) -> None:
    """One request with tritonclient's own client through the Seldon mesh, answers checked."""
    from harness.testkit import ServingError, compare_outputs, infer_tritonclient

    if not model.request_inputs:
        pytest.skip(f"model {model.name} has no input in the profile (models[].input or inputs)")
    mesh = _mesh(deployed_ok, record)
    endpoint = mesh.http_url if protocol == "http" else (mesh.grpc_target or "")
    if not endpoint:
        pytest.skip("the mesh exposes no gRPC endpoint")
    try:
        response = infer_tritonclient(endpoint, model, protocol, binary=_binary_ok(profile, model),
                                      timeout=profile.load.request_timeout_s)
    except ServingError as exc:
        pytest.fail(str(exc), pytrace=False)
    # Seldon answers with `<model>_<version>` (e.g. iris_1).
    answered = str(response.get("model_name") or "")
    assert answered == model.name or answered.startswith(f"{model.name}_"), response
    problems = compare_outputs(model, response)
    assert not problems, f"{model.name} over {protocol}: " + "; ".join(problems)
    record.note(f"inference {model.name} {protocol}", f"model_name={answered} (tritonclient)")


@pytest.mark.latency
def test_latency_meets_the_slo(deployed_ok: ClusterSession, profile: Profile, model: Model,
                               record: TestRecorder, scope: Scope) -> None:
    """Open loop at the profile's rate, from the runner or (`load.generators.where: cluster`) from
    generator pods of one indexed Job in the test's namespace, merged exactly."""
    from harness.testkit import LoadSpec, attribute, run_load

    if not model.latency:
        pytest.skip(f"latency disabled for {model.name} (models[].latency: false)")
    if not model.request_inputs:
        pytest.skip(f"model {model.name} has no input in the profile (models[].input or inputs)")
    generators = profile.load.generators
    if generators.where == "cluster":
        from harness.testkit import mesh_service_url, run_in_cluster

        spec = LoadSpec.from_profile(profile, model, mesh_service_url(profile))
        with progress(f"load {model.name} ({spec.mode} loop, {generators.pods} generator pod(s) in the cluster)"):
            loaded = run_in_cluster(scope.kube, scope.profile, spec, scope.namespace, scope.apply,
                                    pods=generators.pods, run_id=scope.run_id)
        result = loaded.to_dict()
        source = loaded.source
        assert source is not None
        record.note(f"load for {model.name}", f"from the cluster: {source.pods} pod(s) of Job {source.namespace}/"
                    f"{source.job} to {source.target}; " + "; ".join(
                        f"pod {g.index} on {g.node or '?'}: {g.requests} requests, {g.late_sends} late, "
                        f"CPU {g.client_cpu_ms_per_request:.3f} ms/request" for g in source.generators))
    else:
        mesh = _mesh(deployed_ok, record)
        endpoint = mesh.http_url if profile.load.protocol == "http" else (mesh.grpc_target or "")
        if not endpoint:
            pytest.skip("the mesh exposes no gRPC endpoint; set load.protocol: http")
        spec = LoadSpec.from_profile(profile, model, endpoint)
        with progress(f"load {model.name} ({spec.mode} loop, {profile.load.protocol})"):
            result = run_load(spec).to_dict()
        record.note(f"load for {model.name}", f"from the runner: {result['workers']} worker process(es) to {endpoint}")
    slo = profile.slo_for(model.name)
    verdicts = evaluate_slo(result, slo)
    who = attribute(deployed_ok.client(), profile, model)
    server, node = who.server, ",".join(who.nodes) or None
    record.latency(model.name, result, slo, verdicts, server=server, node=node, gpu_uuids=who.gpu_uuids)
    record.note(f"served by {model.name}", f"server={server} pods={','.join(who.pods) or '?'} node={node} "
                f"gpus={','.join(who.gpu_uuids) or '-'} (GPUs from: {who.gpu_source})")
    unnamed = any(s.name == server and s.gpu_use_expected for s in profile.servers) and not who.gpu_uuids
    assert not unnamed, f"{model.name} is served by GPU Server {server}, whose GPUs could not be named: " \
                        f"{who.gpu_source}"
    bad = failed_slos(verdicts)
    latency = result["latency_ms"]
    summary = (f"{model.name} via {server or '?'} on {node or '?'}: p50 {latency['p50']:.2f} ms, "
               f"p95 {latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, "
               f"{result['achieved_rate_rps']:.1f}/{result.get('offered_rate_rps') or '-'} req/s, "
               f"errors {result['errors']}")
    assert not bad, summary + "\n" + "\n".join(v.reason for v in bad)


@pytest.mark.latency
def test_capacity_at_slo(deployed_ok: ClusterSession, profile: Profile, model: Model, record: TestRecorder) -> None:
    """Capacity at the model's SLO (profile `load.sweep`): the highest open-loop rate that meets it."""
    from harness.testkit import (
        LoadSpec,
        SimulatedTelemetry,
        Telemetry,
        WindowSampler,
        attribute,
        latency_bound_ms,
        plan_from_profile,
        run_sweep,
        triton_gpu_reading,
        triton_metrics,
    )

    sweep = profile.load.sweep
    if sweep is None:
        pytest.skip("no capacity sweep in the profile (load.sweep)")
    if not model.latency:
        pytest.skip(f"latency disabled for {model.name} (models[].latency: false)")
    if not model.request_inputs:
        pytest.skip(f"model {model.name} has no input in the profile (models[].input or inputs)")
    slo = profile.slo_for(model.name)
    if latency_bound_ms(slo) is None:
        pytest.skip(f"model {model.name} has no latency SLO (slo.p99_ms, p95_ms or p50_ms) to sweep against")
    mesh = _mesh(deployed_ok, record)
    endpoint = mesh.http_url if profile.load.protocol == "http" else (mesh.grpc_target or "")
    if not endpoint:
        pytest.skip("the mesh exposes no gRPC endpoint; set load.protocol: http")
    who = attribute(deployed_ok.client(), profile, model)
    server, node, uuids = who.server, ",".join(who.nodes) or None, who.gpu_uuids
    # GPU telemetry per window: Triton's own GPU metrics through the pod proxy where the server is
    # Triton (on the sim, its stand-in's, marked simulated); on the sim's other GPU servers a stated
    # model, marked simulated; none where nothing reports a GPU (MLServer on a real cluster).
    telemetry: Telemetry | None = None
    if who.server_config == "triton" and who.pods:
        kube, namespace, pods = deployed_ok._kube(), profile.seldon.namespace, list(who.pods)

        def read() -> dict[str, float]:
            readings = [r for r in (triton_gpu_reading(triton_metrics(kube, namespace, pod), uuids)
                                    for pod in pods) if r]
            if len(readings) <= 1:
                return readings[0] if readings else {}
            # Replicas on their own GPUs: mean utilization, total memory and power.
            return {"utilization_percent": sum(r["utilization_percent"] for r in readings) / len(readings),
                    **{k: sum(r.get(k, 0.0) for r in readings) for k in ("memory_used_mib", "power_w")}}

        telemetry = WindowSampler(read, {"source": "triton-metrics", "gpu_uuids": uuids,
                                         "simulated": deployed_ok.simulated})
    elif deployed_ok.simulated and any(s.name == server and s.on_gpu for s in profile.servers):
        telemetry = SimulatedTelemetry(uuids)
    spec = LoadSpec.from_profile(profile, model, endpoint)
    with progress(f"capacity sweep {model.name} ({profile.load.protocol}, budget {sweep.budget_s:g} s)"):
        result = run_sweep(spec, slo, plan_from_profile(sweep), telemetry=telemetry)
    record.capacity(result.to_dict(), server=server, node=node)
    assert result.complete, f"{model.name}: capacity sweep incomplete: {result.failure}"
    assert result.capacity_rps > 0, (
        f"{model.name}: no offered rate meets the SLO ({result.stop_reason}); steps: "
        + "; ".join(f"{s.offered_rate_rps:.1f}/s: {'; '.join(s.reasons)}" for s in result.steps)
    )
