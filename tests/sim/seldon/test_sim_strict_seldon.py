"""Seldon Core 2 scheduling and status semantics of the simulated control plane, table by table,
driven and read through the real `kubernetes` client against a started `SimCluster` (no MLServer:
these are control-plane facts; tests/sim/seldon/test_sim_dataplane.py covers versions and serving with MLServer).

Sources (SeldonIO/seldon-core tag v2.10.2, commit 8ca3c3c741d6b7d25a1eedf2d415359ab042d2ce; read, not copied):
- scheduler/pkg/scheduler/scheduler.go `scheduleToServer`, `findAndUpdateToServers`: minReplicas lets a
  model load on fewer replicas than it asks for; a failed (re)schedule keeps live replicas;
- scheduler/pkg/store/memory_status.go `updateModelState`, `FailedScheduling`: ModelAvailable when
  available == replicas or >= minReplicas (> 0); ScheduleFailed keeps availableReplicas = assigned;
- operator/scheduler/model.go: status.replicas = available + unavailable, selector "server=" + server;
- operator/apis/mlops/v1alpha1/model_types.go / server_types.go: ModelStatus replicas, selector and
  availableReplicas are omitempty; ServerStatus loadedModels, replicas and selector are not;
- scheduler/pkg/server/server.go `createServerStatusUpdateResponse`: loadedModels sums the models
  loaded on each replica (model replicas);
- knative.dev/pkg apis/condition_set.go (efddeac3ec35, pinned by Seldon's go.mod): Ready True carries no
  reason or message; operator/controllers/reconcilers/server/statefulset_reconciler.go: the reasons of
  StatefulSetOrDeploymentReady;
- scheduler/pkg/scheduler/filters/serverrequirements.go: requirements are trimmed before matching;
- operator/controllers/mlops/model_controller.go `handleFinalizer`: `seldon.model.finalizer` is added
  before the first load and removed once the model is unloaded; operator/internal/utils.go
  `GetValidatedScalingSpec`: an invalid replicas/min/max combination fails the Model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from harness.sim.cluster import SimCluster
from harness.sim.seldon import MODEL_FINALIZER
from harness.sim.seldon_schedule import NO_MATCHING_SERVERS, NOT_ENOUGH_REPLICAS
from tests.kit.seldon_objects import (
    GROUP,
    NS,
    VERSION,
    cond,
    get_object,
    make_model,
    make_server,
    model_state,
    until,
)
from tests.kit.sim_fixtures import Waiter

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def crs(cluster: SimCluster) -> Iterator[k8s.CustomObjectsApi]:
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    try:
        yield k8s.CustomObjectsApi(api)
    finally:
        api.close()


# --- partial scheduling with minReplicas (Server "part" has 2 replicas) -----------------------------------

# (case, model spec, state, reason, status.replicas, status.availableReplicas or None when omitted)
PARTIAL: list[tuple[str, Obj, str, str | None, int, int | None]] = [
    ("fits", {"replicas": 2}, "ModelAvailable", None, 2, 2),
    ("min-below-replicas-loads-what-fits", {"replicas": 3, "minReplicas": 2}, "ModelAvailable", None, 2, 2),
    ("min-only-sets-replicas", {"minReplicas": 2}, "ModelAvailable", None, 2, 2),
    ("min-one-of-three", {"replicas": 3, "minReplicas": 1}, "ModelAvailable", None, 2, 2),
    ("min-above-server-replicas", {"replicas": 3, "minReplicas": 3}, "ScheduleFailed", NOT_ENOUGH_REPLICAS, 3, None),
    ("no-min", {"replicas": 3}, "ScheduleFailed", NOT_ENOUGH_REPLICAS, 3, None),
    ("replicas-below-min", {"replicas": 1, "minReplicas": 2}, "ModelFailed",
     "scaling spec is invalid: number of replicas 1 must be >= min replicas 2", 0, None),
]


@pytest.mark.parametrize(("case", "spec", "state", "reason", "replicas", "available"), PARTIAL,
                         ids=[c[0] for c in PARTIAL])
def test_partial_scheduling_with_min_replicas(crs: k8s.CustomObjectsApi, waiter: Waiter, case: str, spec: Obj,
                                              state: str, reason: str | None, replicas: int,
                                              available: int | None) -> None:
    if get_object(crs, "servers", "part") is None:
        make_server(crs, waiter, "part", 2, ["cap-part"])
    name = f"part-{case}"
    make_model(crs, name, requirements=["cap-part"], **spec)
    model = until(waiter, crs, "models", name, state, model_state(state))
    status = model["status"]
    assert cond(model, "ModelReady").get("reason") == reason
    assert status.get("replicas") == (replicas or None)  # omitempty: 0 is not written
    assert status.get("availableReplicas") == available
    assert cond(model, "Ready")["status"] == ("True" if state == "ModelAvailable" else "False")
    if state != "ModelFailed":
        expected = "server=part" if available else "server="
        assert status["selector"] == expected


def test_replicas_zero_scales_the_model_down(crs: k8s.CustomObjectsApi, waiter: Waiter) -> None:
    """memory_status.go: no replica wanted and none available is ModelScaledDown (not ready, loaded nowhere)."""
    make_server(crs, waiter, "down", 1, ["cap-down"])
    make_model(crs, "down", requirements=["cap-down"])
    until(waiter, crs, "models", "down", "available", model_state("ModelAvailable"))
    crs.patch_namespaced_custom_object(GROUP, VERSION, NS, "models", "down", {"spec": {"replicas": 0}})
    model = until(waiter, crs, "models", "down", "ModelScaledDown", model_state("ModelScaledDown"))
    assert cond(model, "ModelReady")["status"] == "False" and "reason" not in cond(model, "ModelReady")
    assert "availableReplicas" not in model["status"] and "replicas" not in model["status"]
    assert model["status"]["selector"] == "server=down"
    until(waiter, crs, "servers", "down", "loadedModels=0",
           lambda o: ((o or {}).get("status") or {}).get("loadedModels") == 0)


def test_scaling_a_ready_model_beyond_its_server_keeps_the_loaded_replicas(
        crs: k8s.CustomObjectsApi, waiter: Waiter) -> None:
    make_server(crs, waiter, "scale", 1, ["cap-scale"])
    make_model(crs, "scale", requirements=["cap-scale"])
    until(waiter, crs, "models", "scale", "available", model_state("ModelAvailable"))
    crs.patch_namespaced_custom_object(GROUP, VERSION, NS, "models", "scale", {"spec": {"replicas": 3}})
    model = until(waiter, crs, "models", "scale", "ScheduleFailed", model_state("ScheduleFailed"))
    assert cond(model, "ModelReady")["reason"] == NOT_ENOUGH_REPLICAS
    assert model["status"]["availableReplicas"] == 1  # still loaded, still serving
    assert model["status"]["replicas"] == 3 and model["status"]["selector"] == "server=scale"
    server = until(waiter, crs, "servers", "scale", "loadedModels=1",
                    lambda o: ((o or {}).get("status") or {}).get("loadedModels") == 1)
    assert server["status"]["loadedModels"] == 1
    crs.patch_namespaced_custom_object(GROUP, VERSION, NS, "models", "scale", {"spec": {"replicas": 1}})
    until(waiter, crs, "models", "scale", "available again", model_state("ModelAvailable"))


# --- what a Server and a Model report -----------------------------------------------------------------------

def test_server_status_shape_and_loaded_model_replicas(crs: k8s.CustomObjectsApi, waiter: Waiter) -> None:
    server = make_server(crs, waiter, "shape", 2, ["cap-shape"])
    status = server["status"]
    assert status["loadedModels"] == 0  # not omitempty on a Server: written as 0
    assert status["replicas"] == 2 and status["selector"] == "seldon-server-name=shape"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "StatefulSetOrDeploymentReady"]
    ready, sts = status["conditions"]
    assert set(ready) == {"type", "status", "lastTransitionTime"}  # True: no reason, no message
    assert sts["reason"] == "StatefulSet replicas matches desired replicas" and "message" not in sts

    make_model(crs, "shape-two", requirements=["cap-shape"], replicas=2)
    make_model(crs, "shape-one", requirements=["cap-shape"])
    server = until(waiter, crs, "servers", "shape", "loadedModels=3",
                    lambda o: ((o or {}).get("status") or {}).get("loadedModels") == 3)
    model = until(waiter, crs, "models", "shape-two", "available", model_state("ModelAvailable"))
    assert [c["type"] for c in model["status"]["conditions"]] == ["ModelReady", "Ready"]
    model_ready, ready = model["status"]["conditions"]
    assert model_ready == {"type": "ModelReady", "status": "True", "message": "ModelAvailable",
                           "lastTransitionTime": model_ready["lastTransitionTime"]}
    assert set(ready) == {"type", "status", "lastTransitionTime"}


def test_a_model_that_never_scheduled_omits_its_counts(crs: k8s.CustomObjectsApi, waiter: Waiter) -> None:
    make_model(crs, "nowhere", requirements=["cap-nobody-has"])
    model = until(waiter, crs, "models", "nowhere", "ScheduleFailed", model_state("ScheduleFailed"))
    status = model["status"]
    assert "availableReplicas" not in status and status["replicas"] == 1 and status["selector"] == "server="
    assert cond(model, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready", "status": "False", "reason": NO_MATCHING_SERVERS, "message": "ScheduleFailed",
        "lastTransitionTime": None}


# --- requirements are trimmed ---------------------------------------------------------------------------------

# (case, server extraCapabilities, model requirements, expected state)
TRIMMED: list[tuple[str, list[str], list[str], str]] = [
    ("requirement-with-blanks", ["cap-trim-a"], [" cap-trim-a "], "ModelAvailable"),
    ("capability-with-blanks", [" cap-trim-b"], ["cap-trim-b"], "ModelAvailable"),
    ("case-differs", ["cap-trim-c"], ["CAP-TRIM-C"], "ScheduleFailed"),
]


@pytest.mark.parametrize(("case", "caps", "requirements", "state"), TRIMMED, ids=[c[0] for c in TRIMMED])
def test_requirements_are_trimmed_before_matching(crs: k8s.CustomObjectsApi, waiter: Waiter, case: str,
                                                  caps: list[str], requirements: list[str], state: str) -> None:
    make_server(crs, waiter, f"trim-{case}", 1, caps)
    make_model(crs, f"trim-{case}", requirements=requirements)
    until(waiter, crs, "models", f"trim-{case}", state, model_state(state))


# --- the finalizer: a delete waits for the unload ---------------------------------------------------------------

def test_models_carry_seldons_finalizer_and_a_delete_waits_for_the_unload(
        cluster: SimCluster, crs: k8s.CustomObjectsApi, waiter: Waiter) -> None:
    make_server(crs, waiter, "fin", 1, ["cap-fin"])
    make_model(crs, "fin", requirements=["cap-fin"])
    model = until(waiter, crs, "models", "fin", "available", model_state("ModelAvailable"))
    assert model["metadata"]["finalizers"] == [MODEL_FINALIZER]
    rv = model["metadata"]["resourceVersion"]
    events: list[tuple[str, Obj]] = []
    done = threading.Event()

    def watch() -> None:
        for event in k8s_watch.Watch().stream(crs.list_namespaced_custom_object, GROUP, VERSION, NS, "models",
                                              field_selector="metadata.name=fin", resource_version=rv,
                                              timeout_seconds=20):
            events.append((event["type"], event["object"]))
            if event["type"] == "DELETED":
                break
        done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    crs.delete_namespaced_custom_object(GROUP, VERSION, NS, "models", "fin")
    assert done.wait(30), f"no DELETED event; saw {[t for t, _ in events]}"
    types = [t for t, _ in events]
    assert types[-1] == "DELETED" and "MODIFIED" in types
    terminating = next(o for t, o in events if t == "MODIFIED" and o["metadata"].get("deletionTimestamp"))
    assert terminating["metadata"]["finalizers"] == [MODEL_FINALIZER]
    until(waiter, crs, "servers", "fin", "loadedModels=0",
           lambda o: ((o or {}).get("status") or {}).get("loadedModels") == 0)
