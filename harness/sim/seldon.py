"""The simulated Seldon Core 2: its installed objects (`bootstrap_seldon`) and one controller that
plays the operator (Server -> StatefulSet, statuses) and the scheduler (Model -> Server), driving
the data plane (real MLServer processes) and the mesh.

Behaviour follows Seldon's documented semantics (design B1); no Seldon code is used.

How clients find the mesh: Service `seldon-mesh` (type LoadBalancer, port 80 -> 9000, as Seldon
ships it) gets `status.loadBalancer.ingress[0] = {ip: 127.0.0.1, ports: [MAIN, GRPC]}` once the
mesh listens. `ports[0]` stands for the Service's port 80 and, like Envoy, serves REST and gRPC
on one port (HTTP/2 connections are spliced to the gRPC proxy), so `<ip>:<ports[0]>` is all a
client needs. `ports[1]` is the gRPC proxy's own port (one hop less). Both are also in the
annotations `sim.seldon-gpu-harness/mesh-http-port` and `sim.seldon-gpu-harness/mesh-grpc-port`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.config import Profile
from harness.k8s.conditions import STATEFULSET_NOT_READY, STATEFULSET_READY
from harness.k8s.seldon import model_memory_bytes, model_name_error
from harness.k8s.seldon_api import MODEL_FINALIZER, SELDON_API, server_pod_selector
from harness.sim.api.objcopy import clone
from harness.sim.contracts import ApiError, Obj, Store
from harness.sim.dataplane import DataPlane, PodRef, ReplicaState
from harness.sim.gpus import pod_allocated_gpus
from harness.sim.mesh import HOST, Mesh, MeshProcess, Route, Upstream
from harness.sim.seldon_merge import (
    announced_capabilities,
    build_statefulset,
    default_server_config,
    server_memory_bytes,
    server_selector,
    server_type,
)
from harness.sim.seldon_schedule import NOT_ENOUGH_REPLICAS, ModelRequest, ServerView, scaling_spec, schedule_model

log = logging.getLogger(__name__)

MESH_SERVICE = "seldon-mesh"
ENVOY_PORT = 9000  # seldon-mesh's targetPort (setup chart v2.10.2)
HTTP_PORT_ANNOTATION = "sim.seldon-gpu-harness/mesh-http-port"
GRPC_PORT_ANNOTATION = "sim.seldon-gpu-harness/mesh-grpc-port"
HASH_ANNOTATION = "sim.seldon-gpu-harness/template-hash"
# The Model fields the scheduler's ModelSpec carries (operator/apis/mlops/v1alpha1/model_types.go
# `AsSchedulerModel`): a change to any of them is a new version of the model (scheduler/pkg/store/memory.go
# `updateModelImpl` + equality.go); replicas and the logger are the DeploymentSpec and change it in place.
MODEL_SPEC_FIELDS = ("storageUri", "artifactVersion", "requirements", "modelType", "server", "memory",
                     "parameters", "secretName", "explainer", "llm")
COMPONENT = "seldon-controller-manager"
_POLL_S = 0.1  # how soon to look again while a load or start is in flight
_WATCH_PROCESSES_S = 2.0  # how soon to look again for a dead MLServer (and its new log lines)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the installed objects ---------------------------------------------------------------------

def _component(kind: str, name: str, namespace: str, labels: dict[str, str], image: str,
               ports: list[Obj]) -> Obj:
    template = {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "serviceAccountName": name,
            "securityContext": {"runAsUser": 1000},
            "containers": [
                {
                    "name": name.removeprefix("seldon-").removeprefix("v2-"),
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": ports,
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
    }
    spec: Obj = {"replicas": 1, "selector": {"matchLabels": dict(labels)}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def seldon_objects(profile: Profile) -> list[Obj]:
    """Everything a Seldon install puts into the cluster (besides the CRDs, which the API knows)."""
    ns = profile.seldon.namespace
    version = profile.seldon.version
    objs: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        default_server_config("mlserver", ns, version),
        default_server_config("triton", ns, version),
        _component("Deployment", "seldon-v2-controller-manager", ns, {"control-plane": "v2-controller-manager"},
                   f"seldonio/seldonv2-controller:{version}", [{"name": "metrics", "containerPort": 8080}]),
        _component("StatefulSet", "seldon-scheduler", ns, {"app.kubernetes.io/name": "seldon-scheduler"},
                   f"seldonio/seldon-scheduler:{version}",
                   [{"name": "xds", "containerPort": 9002}, {"name": "scheduler", "containerPort": 9004},
                    {"name": "agent", "containerPort": 9005}]),
        _component("Deployment", "seldon-envoy", ns, {"app.kubernetes.io/name": "seldon-envoy"},
                   f"seldonio/seldon-envoy:{version}",
                   [{"name": "http", "containerPort": 9000}, {"name": "envoy-admin", "containerPort": 9003}]),
    ]
    if profile.seldon.kafka:
        for name in ("seldon-modelgateway", "seldon-pipelinegateway", "seldon-dataflow-engine"):
            objs.append(_component("Deployment", name, ns, {"app.kubernetes.io/name": name},
                                   f"seldonio/{name}:{version}", [{"name": "http", "containerPort": 9010}]))
    objs.append({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "seldon-scheduler", "namespace": ns,
                     "labels": {"app.kubernetes.io/name": "seldon-scheduler"}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "seldon-scheduler"},
            "ports": [{"name": "xds", "port": 9002, "targetPort": 9002, "protocol": "TCP"},
                      {"name": "scheduler", "port": 9004, "targetPort": 9004, "protocol": "TCP"},
                      {"name": "agent", "port": 9005, "targetPort": 9005, "protocol": "TCP"}],
        },
    })
    objs.append({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": MESH_SERVICE, "namespace": ns, "labels": {"app.kubernetes.io/name": "seldon-envoy"}},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app.kubernetes.io/name": "seldon-envoy"},
            "ports": [{"name": "http", "port": 80, "targetPort": 9000, "protocol": "TCP"}],
        },
    })
    return objs


def bootstrap_seldon(store: Store, profile: Profile) -> None:
    """Install Seldon's objects; objects that already exist are left as they are."""
    for obj in seldon_objects(profile):
        try:
            store.create(obj)
        except ApiError as exc:
            if exc.code != 409:
                raise


# --- status helpers ------------------------------------------------------------------------------

def _conditions(previous: list[Obj], dependent: str, ok: bool, reason: str = "", message: str = "") -> list[Obj]:
    """The conditions Seldon's knative LivingConditionSet writes for its one dependent condition
    (knative.dev/pkg apis/condition_set.go at efddeac3ec35, the version Seldon 2.10.2 pins):
    `MarkTrueWithReason` sets the dependent True with reason/message and `Ready` True with neither;
    `MarkFalse` sets both False with the same reason/message. Empty fields are omitted (omitempty);
    `SetCondition` keeps lastTransitionTime only when nothing else changed; the list is sorted by type."""
    def one(ctype: str, with_text: bool) -> Obj:
        cond: Obj = {"type": ctype, "status": "True" if ok else "False"}
        if with_text and reason:
            cond["reason"] = reason
        if with_text and message:
            cond["message"] = message
        old = next((c for c in previous if c.get("type") == ctype), None)
        same = old is not None and {k: v for k, v in old.items() if k != "lastTransitionTime"} == cond
        cond["lastTransitionTime"] = old.get("lastTransitionTime", _now()) if same and old is not None else _now()
        return cond
    return sorted([one(dependent, True), one("Ready", not ok)], key=lambda c: str(c["type"]))


def _omit_empty(status: Obj) -> Obj:
    """Seldon's ModelStatus fields are `omitempty`: zero counts and empty strings are not written."""
    return {k: v for k, v in status.items() if v not in (0, "", None)}


def _write_status(store: Store, obj: Obj, status: Obj) -> None:
    """Write `status` unless it is what the object already says (keeps the loop from spinning)."""
    if obj.get("status") == status:
        return
    fresh = {k: v for k, v in obj.items() if k != "status"}
    fresh["status"] = status
    fresh["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    try:
        store.update_status(fresh)
    except ApiError as exc:
        if exc.code != 404:  # deleted meanwhile: nothing to report on
            raise


def _server_scaling(spec: Obj) -> int | str:
    """The replicas a Server runs, or the scaling-spec error (operator/internal/utils.go)."""
    def count(field: str) -> int | None:
        value = spec.get(field)
        return None if value is None else int(value)
    try:
        checked = scaling_spec(count("replicas"), count("minReplicas"), count("maxReplicas"))
    except (TypeError, ValueError) as exc:  # a malformed stored Server fails alone, on its status
        return f"the simulated Seldon controller cannot read this Server's replicas: {exc}"
    return checked if isinstance(checked, str) else checked[0]


def _pod_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _ordinal(pod: Obj) -> tuple[int, str]:
    name = pod["metadata"]["name"]
    match = re.search(r"-(\d+)$", name)
    return (int(match.group(1)) if match else 1 << 30, name)


def _spec_hash(sts: Obj) -> str:
    return hashlib.sha256(json.dumps(sts["spec"], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _ServerInfo:
    name: str
    namespace: str
    kind: str | None  # mlserver | triton
    capabilities: tuple[str, ...]
    memory_bytes: int
    ready_pods: list[Obj]  # Running and Ready, and with an agent that connects to the scheduler
    has_rclone: bool = True


# --- the controller ------------------------------------------------------------------------------

class SeldonController:
    """Seldon's operator and scheduler in one reconcile loop, plus the data plane and the mesh."""

    name = "seldon"

    def __init__(
        self,
        profile: Profile,
        workdir: Path,
        *,
        mlserver: bool = True,
        notify: Callable[[], None] | None = None,
        mesh_process: bool = True,
        mesh_ingress: bool = True,
    ) -> None:
        self.profile = profile
        self.namespace = profile.seldon.namespace
        # False (`mesh_ingress=False` from the start, or the fault `mesh_without_ingress` later): no load
        # balancer ever publishes the mesh Service's address.
        self.publish_ingress = mesh_ingress
        self.dataplane = DataPlane(Path(workdir), enabled=mlserver, notify=notify)
        # The mesh runs in a child process by default so that it does not share the GIL with the test
        # process (the load generator lives there in the sim provider); in-process is for debugging.
        self.mesh: Mesh | MeshProcess = (MeshProcess(log_path=str(Path(workdir) / "mesh.log")) if mesh_process
                                         else Mesh(self.route))
        self._routes: dict[str, Route] = {}
        self._mesh_ok = True
        self._assigned: dict[tuple[str, str], str] = {}  # (namespace, model) -> server
        # (namespace, server) -> models with at least one available replica, from the previous pass;
        # a change writes a Model status, which triggers the pass that reports it on the Server.
        self._loaded: dict[tuple[str, str], int] = {}
        # Server uid -> ((its resourceVersion, ServerConfig uid and resourceVersion), the StatefulSet built)
        self._built: dict[str, tuple[tuple[Any, Any, Any], Obj]] = {}
        self._placed: dict[tuple[str, str], set[PodRef]] = {}  # (namespace, model) -> pods asked to load it
        self._memory: dict[tuple[str, str], int] = {}  # (namespace, model) -> spec.memory in bytes, once placed
        self._served: dict[tuple[str, str], str] = {}  # (namespace, model) -> the served name on those pods
        self._versions: dict[tuple[str, str], tuple[int, str]] = {}  # -> (version, model spec fingerprint)
        self._retiring: dict[tuple[str, str], tuple[str, set[PodRef]]] = {}  # previous version still serving
        # Models whose latest version became available in this pass: their previous version is unloaded
        # only once the mesh routes to the new one (see `_reconcile_model`).
        self._handed_over: set[tuple[str, str]] = set()
        self._reported: dict[str, str] = {}  # event memo: key -> last message recorded
        self._slowdown: dict[str, float] = {}  # model -> factor, set by the `slow_model` fault
        self._closed = False

    # --- routing (called from the mesh's threads) ------------------------------------------
    def route(self, model: str) -> Route | None:
        return self._routes.get(model)

    @property
    def mesh_ports(self) -> tuple[int, int]:
        return self.mesh.http_port, self.mesh.grpc_port

    # --- faults ------------------------------------------------------------------------------
    def slow_model(self, model: str, factor: float) -> None:
        """Make `model` answer `factor` times slower through the mesh (1.0 restores it)."""
        if not factor >= 1.0:
            raise ValueError(f"slow_model: factor must be >= 1, got {factor!r}")
        self._slowdown[model] = factor
        routes = {name: dataclasses.replace(route, slowdown=self._slowdown.get(name, 1.0))
                  for name, route in self._routes.items()}
        self._routes = routes
        if isinstance(self.mesh, MeshProcess) and not self.mesh.update(routes):
            raise RuntimeError("slow_model: the mesh process did not take the new routes")

    def fail_model_load(self, model: str, message: str = "injected fault: the model failed to load") -> None:
        self.dataplane.fail_model_load(model, message)

    def kill_mlserver(self, namespace: str, pod: str) -> bool:
        return self.dataplane.kill_server(namespace, pod)

    # --- reconcile ---------------------------------------------------------------------------
    def reconcile(self, store: Store, now: float) -> float | None:
        if self._closed:
            return None
        if self.mesh.http_port == 0 or (isinstance(self.mesh, MeshProcess) and not self.mesh.alive()):
            if self.mesh.http_port:
                log.warning("the mesh process exited; starting a new one")
                self.mesh.stop()
            self.mesh.start()
        self._publish_mesh(store)
        servers = self._reconcile_servers(store)
        self._reconcile_models(store, servers)
        if not self._mesh_ok:
            return now + _POLL_S
        # MLServer output first, so a crash's last lines land in the log that the restart rotates away.
        for pod_ref, text in self.dataplane.drain_logs():
            store.append_log(pod_ref.namespace, pod_ref.name, pod_ref.server_type, text)
        self._report_crashes(store)
        self.dataplane.check_processes()
        if self.dataplane.pending():
            return now + _POLL_S
        if any(s.ready_pods for s in servers.values()) and self.dataplane.enabled:
            return now + _WATCH_PROCESSES_S
        return None

    def close(self) -> None:
        self._closed = True
        self.mesh.stop()
        self.dataplane.close()

    # --- the mesh Service --------------------------------------------------------------------
    def _publish_mesh(self, store: Store) -> None:
        svc = store.get("v1", "Service", MESH_SERVICE, self.namespace)
        if svc is None:
            return
        http_port, grpc_port = self.mesh_ports
        # Envoy's container port 9000 is the mesh (Service port 80 -> 9000): what a port-forward to an Envoy
        # pod reaches (harness/sim/api/portforward.py), with or without a load balancer.
        for pod in store.list("v1", "Pod", self.namespace, "app.kubernetes.io/name=seldon-envoy"):
            store.set_pod_ports(self.namespace, pod["metadata"]["name"], {ENVOY_PORT: http_port})
        if not self.publish_ingress:  # fault `mesh_without_ingress`: a cluster with no load balancer controller
            if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
                store.patch("v1", "Service", MESH_SERVICE, self.namespace, {"status": {"loadBalancer": {}}},
                            "merge", subresource="status")
            return
        ingress = [{"ip": HOST, "ports": [{"port": http_port, "protocol": "TCP"},
                                           {"port": grpc_port, "protocol": "TCP"}]}]
        annotations = (svc["metadata"].get("annotations") or {})
        if annotations.get(HTTP_PORT_ANNOTATION) != str(http_port) or \
                annotations.get(GRPC_PORT_ANNOTATION) != str(grpc_port):
            store.patch("v1", "Service", MESH_SERVICE, self.namespace,
                        {"metadata": {"annotations": {HTTP_PORT_ANNOTATION: str(http_port),
                                                      GRPC_PORT_ANNOTATION: str(grpc_port)}}}, "merge")
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") != ingress:
            store.patch("v1", "Service", MESH_SERVICE, self.namespace,
                        {"status": {"loadBalancer": {"ingress": ingress}}}, "merge", subresource="status")

    # --- Servers -----------------------------------------------------------------------------
    def _event_once(self, store: Store, obj: Obj, key: str, reason: str, message: str, warning: bool) -> None:
        if self._reported.get(key) == message:
            return
        self._reported[key] = message
        store.record_event(obj, reason, message, "Warning" if warning else "Normal", component=COMPONENT)

    def _reconcile_servers(self, store: Store) -> dict[tuple[str, str], _ServerInfo]:
        infos: dict[tuple[str, str], _ServerInfo] = {}
        models_by_server = dict(self._loaded)
        servers = store.list(SELDON_API, "Server")
        live = {server["metadata"].get("uid", "") for server in servers}
        self._built = {uid: built for uid, built in self._built.items() if uid in live}
        for server in servers:
            meta = server["metadata"]
            ns, name = meta.get("namespace", "default"), meta["name"]
            spec = server.get("spec") or {}
            previous = list((server.get("status") or {}).get("conditions") or [])
            # server_controller.go: GetValidatedScalingSpec(replicas, minReplicas, maxReplicas) first; an
            # invalid spec is written to the status (updateStatusFromError) and nothing is deployed; a
            # Server with minReplicas and no replicas runs minReplicas replicas.
            scaling = _server_scaling(spec)
            desired_replicas = scaling if isinstance(scaling, int) else 1
            base_status: Obj = {"replicas": desired_replicas, "selector": server_selector(name),
                                "loadedModels": models_by_server.get((ns, name), 0)}
            if isinstance(scaling, str):
                self._event_once(store, server, f"server/{meta.get('uid')}", "ScalingSpecInvalid", scaling, True)
                _write_status(store, server, {**base_status, "conditions": _conditions(
                    previous, "StatefulSetOrDeploymentReady", False, scaling)})
                continue
            server = {**server, "spec": {**spec, "replicas": desired_replicas}}
            config_name = spec.get("serverConfig") or ""
            config = store.get(SELDON_API, "ServerConfig", config_name, self.namespace) if config_name else None
            if config is None:
                # operator/apis/mlops/v1alpha1/serverconfig_types.go GetServerConfigForServer's errors, written
                # by the server controller's updateStatusFromError as the condition's reason
                message = (f'failed to get ServerConfig: serverconfigs.mlops.seldon.io "{config_name}" not found'
                           if config_name else "ServerType not specified and is required")
                self._event_once(store, server, f"server/{meta.get('uid')}", "ServerConfigNotFound", message, True)
                _write_status(store, server, {**base_status, "conditions": _conditions(
                    previous, "StatefulSetOrDeploymentReady", False, message)})
                continue
            sts = self._statefulset_for(server, config)
            pod_spec = sts["spec"]["template"]["spec"]
            problem = self._apply_statefulset(store, sts)
            pods = store.list("v1", "Pod", ns, label_selector=server_pod_selector(name))
            ready_pods = sorted((p for p in pods if _pod_ready(p)), key=_ordinal)
            containers = {c.get("name") for c in pod_spec.get("containers") or []}
            # A ServerConfig replaces the default one: without an `agent` container no replica ever
            # connects to the scheduler, so the Server can run but no Model is scheduled onto it.
            connected = ready_pods if problem is None and "agent" in containers else []
            infos[(ns, name)] = _ServerInfo(name, ns, server_type(pod_spec),
                                            tuple(announced_capabilities(server, pod_spec)),
                                            server_memory_bytes(pod_spec), connected, "rclone" in containers)
            if problem is not None:
                self._event_once(store, server, f"server/{meta.get('uid')}", "StatefulSetFailed", problem, True)
                _write_status(store, server, {**base_status, "conditions": _conditions(
                    previous, "StatefulSetOrDeploymentReady", False, problem)})
                continue
            self._reported.pop(f"server/{meta.get('uid')}", None)
            current = store.get("apps/v1", "StatefulSet", name, ns) or {}
            sts_status = current.get("status") or {}
            ready = int(sts_status.get("readyReplicas", len(ready_pods)) or 0)
            ok = ready >= desired_replicas
            _write_status(store, server, {**base_status, "conditions": _conditions(
                previous, "StatefulSetOrDeploymentReady", ok, STATEFULSET_READY if ok else STATEFULSET_NOT_READY)})
        return infos

    def _statefulset_for(self, server: Obj, config: Obj) -> Obj:
        """The Server's StatefulSet with its spec hash, built again only when the Server or its
        ServerConfig changed (their resourceVersions): building and hashing it was most of a pass."""
        meta, config_meta = server["metadata"], config["metadata"]
        key = (meta.get("resourceVersion"), config_meta.get("uid"), config_meta.get("resourceVersion"))
        built = self._built.get(meta.get("uid", ""))
        if built is None or built[0] != key:
            sts = build_statefulset(server, config)
            sts["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = _spec_hash(sts)
            built = self._built[meta.get("uid", "")] = (key, sts)
        return clone(built[1])

    def _apply_statefulset(self, store: Store, sts: Obj) -> str | None:
        """Create or update the Server's StatefulSet; the API server's refusal text, if any."""
        meta = sts["metadata"]
        try:
            current = store.get("apps/v1", "StatefulSet", meta["name"], meta["namespace"])
            if current is None:
                store.create(sts)
            elif (current["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) != \
                    meta["annotations"][HASH_ANNOTATION]:
                store.update(sts)
        except ApiError as exc:
            if exc.code in (400, 422):
                return f"StatefulSet.apps \"{meta['name']}\" is invalid: {exc.message}" \
                    if "is invalid" not in exc.message else exc.message
            if exc.code in (404, 409):
                return None  # a race with a delete or another writer: the next pass settles it
            raise
        return None

    # --- Models ------------------------------------------------------------------------------
    def _reconcile_models(self, store: Store, servers: dict[tuple[str, str], _ServerInfo]) -> None:
        live_pods: list[PodRef] = []
        pod_refs: dict[tuple[str, str], list[PodRef]] = {}
        for key, info in servers.items():
            refs = [PodRef(info.namespace, p["metadata"]["name"], info.name, info.kind or "unknown",
                           p["metadata"].get("uid", ""), tuple(pod_allocated_gpus(p))) for p in info.ready_pods]
            pod_refs[key] = refs
            live_pods.extend(r for r in refs if r.server_type in ("mlserver", "triton"))
        self.dataplane.sync_pods(live_pods)
        for ref in live_pods:
            store.set_pod_ports(ref.namespace, ref.name, self.dataplane.pod_ports(ref.namespace, ref.name))

        routes: dict[str, Route] = {}
        statuses: list[tuple[Obj, Obj]] = []
        seen: set[tuple[str, str]] = set()
        self._loaded = {}
        self._handed_over = set()
        for model in store.list(SELDON_API, "Model"):
            meta = model["metadata"]
            ns, name = meta.get("namespace", "default"), meta["name"]
            key = (ns, name)
            if meta.get("deletionTimestamp"):
                self._finalize_model(store, model)
                continue
            seen.add(key)
            if MODEL_FINALIZER not in (meta.get("finalizers") or []):
                # operator/controllers/mlops/model_controller.go handleFinalizer: added before the first load
                self._add_finalizer(store, model)
                continue  # the write brings this Model round again
            try:
                route, status = self._reconcile_model(store, model, servers, pod_refs)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # A malformed stored Model (a field of the wrong shape) fails that Model alone, on its
                # status and in an event, as the operator's reconcile error does; the others go on.
                route, status = None, self._malformed(store, model, exc)
            statuses.append((model, status))
            # One mesh per Seldon namespace in real Seldon; here one mesh, the Seldon namespace wins a clash.
            if route is not None and (name not in routes or ns == self.namespace):
                routes[name] = dataclasses.replace(route, slowdown=self._slowdown.get(name, 1.0))
        for key in list(self._placed):
            if key not in seen:
                self._unplace(key, set())
        for key in list(self._assigned):
            if key not in seen:
                self._assigned.pop(key, None)
        # Routes first, statuses second: a Model reported available is routable by then.
        # One assignment replaces the whole table: the mesh threads only ever read a complete one.
        self._routes = routes
        self._mesh_ok = self.mesh.update(routes) if isinstance(self.mesh, MeshProcess) else True
        if not self._mesh_ok:
            return  # statuses wait for a mesh that has the routes (and old versions keep serving meanwhile)
        # Only now, with the mesh routing to the new versions, the previous ones go (as Seldon unloads
        # a replica only after Envoy has the new routes: UnloadEnvoyRequested -> UnloadRequested).
        for key in self._handed_over:
            self._retire(key)
        for model, status in statuses:
            _write_status(store, model, status)

    def _malformed(self, store: Store, model: Obj, exc: Exception) -> Obj:
        message = f"the simulated Seldon controller cannot read this Model: {type(exc).__name__}: {exc}"
        self._event_once(store, model, f"model/{model['metadata'].get('uid')}", "ModelFailed", message, True)
        previous = list((model.get("status") or {}).get("conditions") or [])
        kept = {k: v for k, v in (model.get("status") or {}).items() if k != "conditions"}
        return {**kept, "conditions": _conditions(previous, "ModelReady", False, message, "ModelFailed")}

    def _add_finalizer(self, store: Store, model: Obj) -> None:
        meta = model["metadata"]
        finalizers = [*(meta.get("finalizers") or []), MODEL_FINALIZER]
        try:
            store.patch(SELDON_API, "Model", meta["name"], meta.get("namespace"),
                        {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}},
                        "merge")
        except ApiError as exc:
            if exc.code not in (404, 409, 422):  # gone, changed or being deleted meanwhile: the next pass sees it
                raise

    def _finalize_model(self, store: Store, model: Obj) -> None:
        """A deleted Model: unload it everywhere first, then let it go (remove Seldon's finalizer)."""
        meta = model["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        self._unplace(key, set())
        self._assigned.pop(key, None)
        self._versions.pop(key, None)
        if MODEL_FINALIZER not in (meta.get("finalizers") or []):
            return
        rest = [f for f in meta.get("finalizers") or [] if f != MODEL_FINALIZER]
        try:
            store.patch(SELDON_API, "Model", meta["name"], meta.get("namespace"),
                        {"metadata": {"finalizers": rest or None, "resourceVersion": meta.get("resourceVersion")}},
                        "merge")
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    def _request(self, model: Obj) -> ModelRequest | str:
        spec = model.get("spec") or {}
        refused = model_name_error(str(model["metadata"]["name"]))
        if refused is not None:
            return refused
        memory = model_memory_bytes(spec.get("memory"))
        if isinstance(memory, str):
            return memory

        def count(field: str) -> int | None:
            value = spec.get(field)
            return None if value is None else int(value)
        scaling = scaling_spec(count("replicas"), count("minReplicas"), count("maxReplicas"))
        if isinstance(scaling, str):
            return scaling
        requirements = [str(r) for r in spec.get("requirements") or []]
        if spec.get("modelType"):
            requirements.append(str(spec["modelType"]))  # AsSchedulerModel appends modelType to requirements
        return ModelRequest(
            name=model["metadata"]["name"],
            requirements=tuple(requirements),
            server=spec.get("server") or None,
            memory_bytes=memory,
            replicas=scaling[0],
            min_replicas=scaling[1],
        )

    def _served_name(self, key: tuple[str, str], spec: Obj) -> str:
        """`<model>_<version>`: the version goes up by one whenever the model spec changes."""
        fingerprint = json.dumps({f: spec.get(f) for f in MODEL_SPEC_FIELDS}, sort_keys=True, default=str)
        version, known = self._versions.get(key, (0, ""))
        if known != fingerprint:
            if version and key in self._served:
                # The old version keeps serving until the new one is available (then it is unloaded).
                current = (self._served.pop(key), self._placed.pop(key, set()))
                if key in self._retiring:
                    # A version that never became available is dropped: the last available one keeps
                    # the traffic (GetLastAvailableModel) until the newest is available.
                    for pod in current[1]:
                        self.dataplane.unload(pod, current[0])
                else:
                    self._retiring[key] = current
            version += 1
            self._versions[key] = (version, fingerprint)
        return f"{key[1]}_{version}"

    def _view(self, key: tuple[str, str], info: _ServerInfo, pods: list[PodRef]) -> ServerView:
        """What the scheduler sees of one Server for this model: per replica, the memory the other
        models loaded there take, and whether this model is loaded there already."""
        used = tuple(sum(self._memory.get(other, 0) for other, placed in self._placed.items()
                         if other != key and pod in placed) for pod in pods)
        holds = tuple(pod in self._placed.get(key, set()) for pod in pods)
        return ServerView(info.name, info.capabilities, len(info.ready_pods), info.memory_bytes, used, holds)

    def _retire(self, key: tuple[str, str]) -> None:
        """Unload the previous version of a model, if one is still loaded beside the latest."""
        served, pods = self._retiring.pop(key, ("", set()))
        for pod in pods:
            self.dataplane.unload(pod, served)

    def _unplace(self, key: tuple[str, str], keep: set[PodRef]) -> None:
        if not keep:
            self._retire(key)
        served = self._served.get(key)
        for pod in self._placed.get(key, set()) - keep:
            if served is not None:
                self.dataplane.unload(pod, served)
        if keep:
            self._placed[key] = set(keep)
        else:
            self._placed.pop(key, None)
            self._served.pop(key, None)

    def _reconcile_model(self, store: Store, model: Obj, servers: dict[tuple[str, str], _ServerInfo],
                         pod_refs: dict[tuple[str, str], list[PodRef]]) -> tuple[Route | None, Obj]:
        """Schedule and load one Model; its mesh route and the status to write once routes are live."""
        meta = model["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        key = (ns, name)
        spec = model.get("spec") or {}
        previous = list((model.get("status") or {}).get("conditions") or [])
        request = self._request(model)
        if isinstance(request, str):
            # AsSchedulerModel refused the spec: the model controller writes ModelFailed with the error
            self._unplace(key, set())
            self._assigned.pop(key, None)
            self._event_once(store, model, f"model/{meta.get('uid')}", "ModelFailed", request, True)
            kept = {k: v for k, v in (model.get("status") or {}).items() if k != "conditions"}
            return None, {**kept, "conditions": _conditions(previous, "ModelReady", False, request, "ModelFailed")}
        served = self._served_name(key, spec)
        current = self._assigned.get(key)
        views = [self._view(key, i, pod_refs.get((ns, i.name), []))
                 for (sns, _), i in servers.items() if sns == ns]
        placement = schedule_model(request, views, current=current)
        schedule_failed: str | None = None
        if placement.server is not None:
            server = servers[(ns, placement.server)]
            ready = pod_refs.get((ns, server.name), [])
            targets = [ready[i] for i in placement.indexes if i < len(ready)] if placement.indexes \
                else ready[:placement.replicas]
            self._memory[key] = request.memory_bytes
        else:
            schedule_failed = placement.reason or NOT_ENOUGH_REPLICAS
            held = [p for p in pod_refs.get((ns, current), []) if p in self._placed.get(key, set())] \
                if current is not None and (ns, current) in servers else []
            if schedule_failed != NOT_ENOUGH_REPLICAS or not held:
                # scheduler.go: FailedScheduling resets the model's server when it has no live replicas
                self._unplace(key, set())
                self._assigned.pop(key, None)
                self._event_once(store, model, f"model/{meta.get('uid')}", "ScheduleFailed", schedule_failed, True)
                return None, _omit_empty({
                    "conditions": _conditions(previous, "ModelReady", False, schedule_failed, "ScheduleFailed"),
                    "replicas": request.replicas,
                    "selector": "server=",  # operator/scheduler/model.go: "server=" + the (reset, empty) server
                })
            # A failed scale-up keeps the replicas that are loaded serving (FailedScheduling without reset)
            assert current is not None  # `held` is empty otherwise
            server, targets = servers[(ns, current)], held
        self._assigned[key] = server.name
        self._unplace(key, set(targets))
        self._served[key] = served
        if targets:
            self._placed[key] = set(targets)
        if server.has_rclone:
            states: list[ReplicaState] = [
                self.dataplane.ensure_model(pod, served, str(spec.get("storageUri") or "")) for pod in targets
            ]
        else:
            # The agent downloads artifacts through the pod's rclone container.
            states = [ReplicaState("Failed", f"failed to download {spec.get('storageUri')}: server {server.name} "
                                   "has no rclone container (its ServerConfig replaces the default, it does not "
                                   "merge)")] * len(targets)
        available = sum(1 for s in states if s.state == "Available")
        if available:
            # Server status.loadedModels counts model replicas (scheduler/pkg/server/server.go)
            self._loaded[(ns, server.name)] = self._loaded.get((ns, server.name), 0) + available
        failed = [s for s in states if s.state == "Failed"]
        # scheduler/pkg/store/memory_status.go updateModelState (and FailedScheduling)
        if schedule_failed is not None:
            state, reason = "ScheduleFailed", schedule_failed
            replicas = request.replicas
        else:
            replicas = len(targets)  # available + unavailable (loading or failed) replicas
            if failed:
                state, reason = "ModelFailed", failed[0].message
            elif request.replicas == 0 and request.min_replicas == 0 and available == 0:
                state, reason = "ModelScaledDown", ""
            elif available == request.replicas or (request.min_replicas > 0 and available >= request.min_replicas):
                state, reason = "ModelAvailable", ""
            else:
                state, reason = "ModelProgressing", ""
        ok = state == "ModelAvailable"
        self._event_once(store, model, f"model/{meta.get('uid')}", state, reason or state,
                         state in ("ModelFailed", "ScheduleFailed"))
        status = _omit_empty({
            "conditions": _conditions(previous, "ModelReady", ok, reason, state),
            "replicas": replicas,
            "availableReplicas": available,
            "selector": f"server={server.name}",
        })
        if key in self._retiring:
            if ok:
                self._handed_over.add(key)  # retired after the mesh has this pass's routes
            else:
                # memory_status.go: the latest version is what the status shows; the previous one serves
                old_served, old_pods = self._retiring[key]
                old = [self.dataplane.endpoints(pod, old_served) for pod in sorted(old_pods, key=lambda p: p.name)]
                live = tuple(Upstream(HOST, e.http_port, e.grpc_port) for e in old if e is not None)
                if live:
                    return Route(old_served, live), status
        upstreams = []
        for pod in targets:
            endpoint = self.dataplane.endpoints(pod, served)
            if endpoint is not None:
                upstreams.append(Upstream(HOST, endpoint.http_port, endpoint.grpc_port))
        if not upstreams:
            if not self.dataplane.enabled and available:
                return Route(served, refusal=f"model {name} is available but the data plane is disabled"), status
            return None, status
        return Route(served, tuple(upstreams)), status

    # --- crashes -----------------------------------------------------------------------------
    def _report_crashes(self, store: Store) -> None:
        for pod_ref, message, _tail in self.dataplane.take_crashes():
            pod = store.get("v1", "Pod", pod_ref.name, pod_ref.namespace)
            if pod is None:
                continue
            status = dict(pod.get("status") or {})
            statuses = [dict(c) for c in status.get("containerStatuses") or []]
            for container in statuses:
                if container.get("name") == pod_ref.server_type:
                    container["restartCount"] = int(container.get("restartCount", 0)) + 1
                    container["lastState"] = {"terminated": {"exitCode": 137, "reason": "Error",
                                                             "finishedAt": _now(), "message": message}}
            if statuses:
                status["containerStatuses"] = statuses
                _write_status(store, pod, status)
            # The dead process's output becomes the `--previous` log, as after a real restart.
            cname = pod_ref.server_type
            store.append_log(pod_ref.namespace, pod_ref.name, cname, f"sim: {message}\n")
            store.rotate_log(pod_ref.namespace, pod_ref.name, cname)
            store.append_log(pod_ref.namespace, pod_ref.name, cname, "sim: MLServer restarted; reloading models\n")
            store.record_event(pod, "Started", f"Started container {pod_ref.server_type} after a crash: {message}",
                               "Normal", component="kubelet")


    # --- fault hooks -------------------------------------------------------------------------
    def withhold_mesh_ingress(self) -> None:
        """From now on the seldon-mesh Service has no LoadBalancer ingress (a cluster without a load balancer
        controller); the next reconcile removes an address already published. Port-forwards to Envoy still
        reach the mesh."""
        self.publish_ingress = False

    def register_faults(self, faults: Any) -> None:
        """Hook this controller's faults into `SimCluster.faults` (see harness/sim/faults.py)."""
        faults.register("model_load_failure", lambda namespace, model: self.fail_model_load(model))
        faults.register("slow_model", lambda namespace, model, factor: self.slow_model(model, factor))
        faults.register("clear_model_load_failure", lambda namespace, model: self.dataplane.clear_model_fault(model))
        faults.register("kill_mlserver", self.kill_mlserver)
        faults.register("mesh_without_ingress", self.withhold_mesh_ingress)
        faults.register("kill_mlserver_mid_load", lambda namespace, model: self.dataplane.kill_during_load(model))


def seldon_controllers(profile: Profile, workdir: str, mlserver: bool = True,
                       mesh_ingress: bool = True) -> list[SeldonController]:
    """The factory `SimCluster` calls: the one Seldon controller (operator, scheduler, data plane, mesh)."""
    return [SeldonController(profile, Path(workdir), mlserver=mlserver, mesh_ingress=mesh_ingress)]
