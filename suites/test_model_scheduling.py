"""Model scheduling: by requirement and by pin, Seldon's failure reasons, no fallback for pins."""

from __future__ import annotations

from typing import Any

import pytest

from harness.k8s.conditions import condition
from harness.k8s.quantity import parse_quantity
from harness.k8s.seldon_api import SELDON_API
from harness.testkit import ClusterSession, Model, Scope, render

NO_MATCHING_SERVERS = "Failed to schedule model as no matching servers are available"
NOT_ENOUGH_REPLICAS = "Failed to schedule model as no matching server had enough suitable replicas"


def _settled(model: dict[str, Any] | None) -> bool:
    """Seldon has decided: available, or failed to schedule/load."""
    cond = condition(model, "ModelReady") or {}
    text = f"{cond.get('reason') or ''} {cond.get('message') or ''}"
    return cond.get("status") == "True" or any(s in text for s in ("ScheduleFailed", "ModelFailed", "Failed to"))


def _deploy(scope: Scope, name: str, storage: str | None = None, **fields: Any) -> dict[str, Any]:
    profile = scope.profile
    if storage is None:
        storage = (profile.models[0].storage_uri if profile.models
                   else "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn")
    model = Model(name=f"{name}-{scope.run_context.run_id}"[:63], storage_uri=storage, **fields)
    scope.apply(render.model(profile, model, profile.seldon.namespace))
    live = scope.kube.wait_for(SELDON_API, "Model", model.name, profile.seldon.namespace, _settled,
                               timeout=profile.timeouts.model_ready_s, what=f"Model {model.name} scheduled or failed")
    assert live is not None
    return dict(live)


def _summary(model: dict[str, Any]) -> str:
    cond = condition(model, "ModelReady") or {}
    status = model.get("status") or {}
    return (f"ModelReady={cond.get('status')} reason={cond.get('reason')!r} message={cond.get('message')!r} "
            f"selector={status.get('selector')!r}")


def test_requirement_based_model_lands_on_the_gpu_server(deployed_ok: ClusterSession, scope: Scope) -> None:
    """A copy of the profile's first GPU model (same artifact and requirements, new name) lands on
    the Server the profile intends for it, and loads there."""
    profile = scope.profile
    cases = [m for m in profile.models if profile.gpu.capability in m.requirements and profile.intended_server(m)]
    if not cases:
        pytest.skip(f"no model requires {profile.gpu.capability!r} with one intended Server (models[].requirements)")
    source = cases[0]
    server = profile.intended_server(source)
    model = _deploy(scope, "req", storage=source.storage_uri, requirements=list(source.requirements))
    assert (model.get("status") or {}).get("selector") == f"server={server}", _summary(model)
    assert (condition(model, "ModelReady") or {}).get("status") == "True", _summary(model)


def test_pinned_model_lands_on_its_server(deployed_ok: ClusterSession, scope: Scope) -> None:
    profile = scope.profile
    target = (profile.gpu_servers or profile.servers)[-1].name
    model = _deploy(scope, "pin", server=target)
    assert (model.get("status") or {}).get("selector") == f"server={target}", _summary(model)


def test_unmet_requirement_fails_with_seldons_reason(deployed_ok: ClusterSession, scope: Scope) -> None:
    model = _deploy(scope, "nocap", requirements=["no-such-capability"])
    cond = condition(model, "ModelReady") or {}
    assert cond.get("status") != "True", _summary(model)
    assert NO_MATCHING_SERVERS in f"{cond.get('reason')} {cond.get('message')}", _summary(model)


def test_pinned_model_that_cannot_fit_does_not_fall_back(deployed_ok: ClusterSession, scope: Scope) -> None:
    """More model replicas than the pinned Server has: Seldon refuses rather than using another Server."""
    profile = scope.profile
    target = profile.servers[0]
    model = _deploy(scope, "pin-big", server=target.name, replicas=target.replicas + 1)
    cond = condition(model, "ModelReady") or {}
    assert cond.get("status") != "True", _summary(model)
    assert NOT_ENOUGH_REPLICAS in f"{cond.get('reason')} {cond.get('message')}", _summary(model)
    # Seldon writes "server=" + the model's server, which a failed first schedule leaves empty
    assert (model.get("status") or {}).get("selector") in (None, "", "server=", f"server={target.name}"), \
        _summary(model)


def test_requirement_based_model_falls_back_to_a_server_that_fits(deployed_ok: ClusterSession, scope: Scope) -> None:
    """A model needing more memory than one capable Server has lands on another capable one that fits."""
    profile = scope.profile
    by_memory = sorted(profile.servers, key=lambda s: _bytes(s.memory))
    small, large = by_memory[0], by_memory[-1]
    if _bytes(small.memory) == _bytes(large.memory):
        pytest.skip("all Servers have the same memory; give one a larger servers[].memory to test fallback")
    # Between the small Server's capacity (memory x 1.1) and the large one's.
    need = int(_bytes(small.memory) * 1.1) + 1
    if need >= _bytes(large.memory) * 1.1:
        pytest.skip("the largest Server is not large enough to hold the model")
    common = set(small.capabilities(profile.gpu.capability)) & set(large.capabilities(profile.gpu.capability))
    requirement = "sklearn" if "sklearn" in common else sorted(common)[0]
    pinned = _deploy(scope, "fit-pin", server=small.name, memory=str(need))
    assert (condition(pinned, "ModelReady") or {}).get("status") != "True", _summary(pinned)
    model = _deploy(scope, "fit-req", requirements=[requirement], memory=str(need))
    assert (model.get("status") or {}).get("selector") == f"server={large.name}", _summary(model)


def _bytes(quantity: str) -> int:
    return int(parse_quantity(quantity))
