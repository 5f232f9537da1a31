"""A simulated cluster of node-side controllers only (scheduler, kubelet, taint manager; no Seldon), driven with
the real kubernetes client: the scheduler, eviction, deletion, kubelet and workload tests share it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from harness.sim.api.server import ApiServer
from harness.sim.api.store import MemoryStore
from harness.sim.faults import Faults
from harness.sim.nodes import core_controllers, make_node
from harness.sim.runtime import Runtime

Obj = dict[str, Any]


NS = "sched"


WAIT_S = 10.0


@dataclass
class Sim:
    store: MemoryStore
    faults: Faults
    core: client.CoreV1Api
    apps: client.AppsV1Api
    controllers: list[Any]

    def to_dict(self, model: Any) -> Obj:
        return dict(self.core.api_client.sanitize_for_serialization(model))


def start_sim(workdir: Path) -> tuple[Sim, Callable[[], None]]:
    store = MemoryStore()
    faults = Faults(store)
    controllers = core_controllers(workdir=str(workdir), store=store)
    for c in controllers:
        register = getattr(c, "register_faults", None)
        if callable(register):
            register(faults)
    runtime = Runtime(store, controllers)
    runtime.start()
    server = ApiServer(store, faults, 0)
    server.start()
    cfg = client.Configuration()
    cfg.host = server.url
    api_client = client.ApiClient(cfg)
    sim = Sim(store, faults, client.CoreV1Api(api_client), client.AppsV1Api(api_client), controllers)

    def stop() -> None:
        api_client.close()
        server.stop()
        runtime.stop()

    return sim, stop


def _changes(list_fn: Callable[..., Any], ns: str, selector: str, rv: str, deadline: float) -> Iterator[dict[str, Any]]:
    """The watch changes of `list_fn` from resourceVersion `rv` until `deadline`; a watch the server ends
    before then is started again from the last version seen.

    When that version has left the server's history (410 Expired: a real API server sends it as an
    ERROR event after compaction, and the client raises it as an ApiException once its own retry from
    the same version failed), the objects are listed again, as client-go's reflector does, and yielded
    as one change of type RELISTED whose "object" is the list; watching resumes from its version."""
    for _ in range(1000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        w = watch.Watch()
        try:
            for change in w.stream(list_fn, ns, field_selector=selector, resource_version=rv,
                                   timeout_seconds=max(1, int(remaining))):
                rv = change["raw_object"]["metadata"].get("resourceVersion", rv)
                yield change
                if time.monotonic() > deadline:
                    return
        except client.exceptions.ApiException as exc:
            if exc.status != 410:
                raise
            listed = list_fn(ns, field_selector=selector)
            rv = listed.metadata.resource_version
            yield {"type": "RELISTED", "object": listed}
        finally:
            w.stop()


def wait_pod(
    sim: Sim, name: str, done: Callable[[Obj | None], bool], ns: str = NS, timeout: float = WAIT_S
) -> Obj | None:
    """Watch one pod until `done(pod)` (None once deleted); the timeout names the last state seen."""
    deadline = time.monotonic() + timeout
    selector = f"metadata.name={name}"
    listed = sim.core.list_namespaced_pod(ns, field_selector=selector)
    last: Obj | None = sim.to_dict(listed.items[0]) if listed.items else None
    if done(last):
        return last
    for change in _changes(sim.core.list_namespaced_pod, ns, selector, listed.metadata.resource_version, deadline):
        if change["type"] == "RELISTED":
            items = change["object"].items
            last = sim.to_dict(items[0]) if items else None
        else:
            last = None if change["type"] == "DELETED" else change["raw_object"]
        if done(last):
            return last
    raise AssertionError(f"pod {ns}/{name} did not reach the expected state in {timeout}s; last seen: "
                         f"{(last or {}).get('spec', {}).get('nodeName')} {(last or {}).get('status')}")


def wait_event(sim: Sim, name: str, match: Callable[[Any], bool], ns: str = NS, timeout: float = WAIT_S) -> list[Any]:
    """The events about object `name` that satisfy `match` (CoreV1Events of the client), once there is one.

    An event reaches the API after the state change it reports: the kube-scheduler and the kubelet
    write the pod's status and hand the event to a recorder that sends it on its own (client-go's
    event broadcaster), and the sim's controllers write the status first too. So a test that has
    seen the state waits for the event; listing once right after raced the controller's thread
    (seen in a fresh clone: Unschedulable on the pod, no FailedScheduling event yet)."""
    deadline = time.monotonic() + timeout
    selector = f"involvedObject.name={name}"
    listed = sim.core.list_namespaced_event(ns, field_selector=selector)
    seen: list[Any] = list(listed.items)
    if matching := [e for e in seen if match(e)]:
        return matching
    for change in _changes(sim.core.list_namespaced_event, ns, selector, listed.metadata.resource_version, deadline):
        if change["type"] == "RELISTED":
            seen = list(change["object"].items)
            if matching := [e for e in seen if match(e)]:
                return matching
        elif change["type"] != "DELETED":
            seen.append(change["object"])
            if match(change["object"]):
                return [change["object"]]
    raise AssertionError(f"no matching event about {ns}/{name} in {timeout}s; seen: "
                         f"{[(e.reason, e.message) for e in seen]}")


def scheduled_or_failed(pod: Obj | None) -> bool:
    if pod is None:
        return False
    if (pod.get("spec") or {}).get("nodeName"):
        return True
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in (pod.get("status") or {}).get("conditions") or [])


def running(pod: Obj | None) -> bool:
    return pod is not None and (pod.get("status") or {}).get("phase") == "Running"


def gone(pod: Obj | None) -> bool:
    return pod is None


def pod_body(name: str, *, tolerations: list[Obj] | None = None, node_selector: dict[str, str] | None = None,
             affinity: Obj | None = None, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
             init_requests: dict[str, str] | None = None, node_name: str | None = None,
             labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    container: Obj = {"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    if requests or limits:
        container["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                 "spec": {"containers": [container], **spec}}
    if init_requests:
        body["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1.36",
                                           "resources": {"requests": init_requests}}]
    if tolerations is not None:
        body["spec"]["tolerations"] = tolerations
    if node_selector:
        body["spec"]["nodeSelector"] = node_selector
    if affinity:
        body["spec"]["affinity"] = affinity
    if node_name:
        body["spec"]["nodeName"] = node_name
    if labels:
        body["metadata"]["labels"] = labels
    return body


def reset(sim: Sim) -> None:
    for p in sim.core.list_namespaced_pod(NS).items:
        try:  # force (grace 0): the next case reuses the names
            sim.core.delete_namespaced_pod(p.metadata.name, NS, grace_period_seconds=0)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:  # a Terminating pod its kubelet removed meanwhile
                raise
    for n in sim.core.list_node().items:
        sim.core.delete_node(n.metadata.name)


def node(name: str, **kw: Any) -> Obj:
    unschedulable = kw.pop("unschedulable", False)
    obj = make_node(name, **kw)
    obj["metadata"]["annotations"].pop("node.alpha.kubernetes.io/ttl", None)
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def affinity(*terms: list[Obj], fields: list[Obj] | None = None) -> Obj:
    node_terms: list[Obj] = [{"matchExpressions": exprs} for exprs in terms]
    if fields:
        node_terms.append({"matchFields": fields})
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": node_terms}}}


def expr(key: str, op: str, *values: str) -> Obj:
    e: Obj = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


def pod_affinity(kind: str, match: dict[str, str], key: str = "kubernetes.io/hostname") -> Obj:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": match}, "topologyKey": key}]}}


def spread(key: str, match: dict[str, str], max_skew: int = 1) -> Obj:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": match}}


GPU_TAINT = {"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}


CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


GPU_TOL = {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
