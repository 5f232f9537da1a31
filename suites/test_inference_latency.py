"""Inference through the Seldon mesh: one correct answer per Model, then latency against the SLOs.

Latency is measured in open loop (timed from the intended send time: no coordinated omission) at
the profile's load, below capacity, and gated on the achieved rate matching the offered one.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks.slo import evaluate_slo, failed
from harness.config import Model, Profile
from harness.lifecycle import ClusterSession
from harness.progress import progress
from harness.pytest_plugin import RUN_CONTEXT


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" in metafunc.fixturenames:
        ctx = metafunc.config.stash.get(RUN_CONTEXT, None)
        models = [m for m in ctx.profile.models] if ctx is not None else []
        metafunc.parametrize("model", models, ids=[m.name for m in models])


def _mesh(deployed_ok: ClusterSession) -> Any:
    if deployed_ok.mesh is None:
        pytest.fail("the cluster exposes no Seldon mesh endpoint", pytrace=False)
    return deployed_ok.mesh


def _served_by(session: ClusterSession, profile: Profile, model: Model) -> tuple[str | None, str | None, list[str]]:
    """Server, node and GPU UUIDs behind a model (for the report), from the live objects."""
    live = session._kube().get("mlops.seldon.io/v1alpha1", "Model", model.name, profile.seldon.namespace) or {}
    selector = (live.get("status") or {}).get("selector") or ""
    server = selector.split("=", 1)[1] if selector.startswith("server=") else None
    if server is None:
        return None, None, []
    pods = session._kube().list("v1", "Pod", profile.seldon.namespace, label_selector=f"seldon-server-name={server}")
    node = (pods[0].get("spec") or {}).get("nodeName") if pods else None
    annotations = (pods[0]["metadata"].get("annotations") or {}) if pods else {}
    uuids = [u for u in (annotations.get("sim.harness.dev/allocated-gpus") or "").split(",") if u]
    return server, node, uuids


def test_one_inference_is_correct(deployed_ok: ClusterSession, profile: Profile, model: Model, record: Any) -> None:
    from harness.load import infer_once

    if model.input is None:
        pytest.skip(f"model {model.name} has no input in the profile (models[].input)")
    intended = profile.intended_server(model)
    if deployed_ok.simulated and intended and profile.server(intended).server_config == "triton":
        pytest.skip("no Triton in the simulated cluster")
    mesh = _mesh(deployed_ok)
    response = infer_once(mesh.http_url, model.name, model.input, "http", profile.timeouts.request_s)
    # Seldon answers with `<model>_<version>` (e.g. iris_1).
    answered = str(response.get("model_name") or "")
    assert answered == model.name or answered.startswith(f"{model.name}_"), response
    if model.expected_output is not None:
        outputs = {o["name"]: o for o in response.get("outputs") or []}
        got = outputs.get(model.expected_output.name)
        assert got is not None, f"no output named {model.expected_output.name!r} in {response}"
        assert list(got.get("data") or []) == list(model.expected_output.data), (
            f"{model.name}: expected {model.expected_output.data}, got {got.get('data')}"
        )
    record.note(f"inference {model.name}", f"model_name={response.get('model_name')}")


@pytest.mark.latency
def test_latency_meets_the_slo(deployed_ok: ClusterSession, profile: Profile, model: Model, record: Any) -> None:
    from harness.load import LoadSpec, run_load

    if not model.latency:
        pytest.skip(f"latency disabled for {model.name} (models[].latency: false)")
    if model.input is None:
        pytest.skip(f"model {model.name} has no input in the profile (models[].input)")
    mesh = _mesh(deployed_ok)
    endpoint = mesh.http_url if profile.load.protocol == "http" else (mesh.grpc_target or "")
    if not endpoint:
        pytest.skip("the mesh exposes no gRPC endpoint; set load.protocol: http")
    spec = LoadSpec.from_profile(profile, model, endpoint)
    with progress(f"load {model.name} ({spec.mode} loop, {profile.load.protocol})"):
        result = run_load(spec).to_dict()
    slo = profile.slo_for(model.name)
    verdicts = evaluate_slo(result, slo)
    server, node, uuids = _served_by(deployed_ok, profile, model)
    record.latency(model.name, result, slo, verdicts, server=server, node=node, gpu_uuids=uuids)
    bad = failed(verdicts)
    latency = result["latency_ms"]
    summary = (f"{model.name} via {server or '?'} on {node or '?'}: p50 {latency['p50']:.2f} ms, "
               f"p95 {latency['p95']:.2f} ms, p99 {latency['p99']:.2f} ms, "
               f"{result['achieved_rate_rps']:.1f}/{result.get('offered_rate_rps') or '-'} req/s, "
               f"errors {result['errors']}")
    assert not bad, summary + "\n" + "\n".join(v.reason for v in bad)
