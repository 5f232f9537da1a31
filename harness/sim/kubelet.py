"""The simulated kubelet (one for every node) with the NVIDIA device plugin's allocation built in.

- Bound pods start: devices of their node for pods that request GPUs (whole GPUs, MIG devices or time-sliced
  replicas as the simulated device plugin advertises them, harness/sim/deviceplugin.py; never one device to
  two live pods; terminated or deleted pods free theirs), recorded in the pod annotation
  `sim.harness.dev/allocated-gpus`; a unique loopback pod IP; containerStatuses and conditions as a
  real kubelet reports them. Pods whose ConfigMap volumes are missing stay ContainerCreating with a
  `FailedMount` event, as on a real node.
- What a container sees of the GPUs follows the device plugin's envvar strategy and the NVIDIA
  container runtime: `NVIDIA_VISIBLE_DEVICES` is the container's allocated UUID list; a container
  that requested none keeps its own value (unset: no GPU; `all` on a GPU node: every GPU of the
  node, the leak the visibility suite must catch). Where the real runtime would inject the driver
  (a GPU node, NVIDIA_VISIBLE_DEVICES set and not `void`), the container gets the simulated driver
  library (harness/gpu/simnvml.py: a C libnvidia-ml.so.1 built with gcc, with the node's inventory
  beside it) on LD_LIBRARY_PATH; nothing is put on its Python path.
- One-shot pods (restartPolicy Never/OnFailure) whose container runs `python3 <script>` (or
  `python3 -c CODE`) really run it with this machine's Python and the container's own flags (the NVML
  probe runs `python3 -I -S`: standard library and its ConfigMap files only), off the reconcile
  thread, with the pod's ConfigMap volumes materialised into a temp dir;
  stdout+stderr become the container log, the exit code decides Succeeded/Failed (OnFailure reruns
  a failed container after a back-off, rotating its log; activeDeadlineSeconds bounds a run). One-shot
  pods with no Python container (a `pause` intruder) run until deleted, as `pause` does; inside a
  Python pod, a container that is not Python completes with exit code 0 and an empty log.
- Cluster DNS and kube-proxy, as far as one-shot Python pods need them: a Service named in the
  container's arguments or environment (`<svc>.<ns>.svc[.cluster.local][:port]`) is rewritten to
  where the sim serves it on loopback (the mesh's LoadBalancer ingress); other Service names are left
  as they are and do not resolve (`resolve_services`).
- Nodes whose Ready condition is not True start nothing; hostNetwork pods get the node's address.
- Long-running containers just run. Crash faults (`crash_container`) restart a container once or
  keep it in CrashLoopBackOff, rotating its log so `--previous` shows the crashed run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.gpu.simnvml import build_library, prepare_driver_dir, runtime_injects_driver
from harness.k8s.quantity import quantity_or_zero
from harness.k8s.sharing import MEMORY_LABEL, PRODUCT_LABEL
from harness.localserver import USER_CACHE
from harness.sim.admission import rejection
from harness.sim.contracts import ApiError, Obj, Store
from harness.sim.deviceplugin import (
    ALLOCATED_DEVICES_ANNOTATION,
    AllocationError,
    allocate,
    container_gpu_requests,
    device_uuid,
    fail_requests_greater_than_one,
    inventory,
    node_devices,
    node_mig_devices,
)
from harness.sim.gpus import (
    ALLOCATED_GPUS_ANNOTATION,
    node_gpu_uuids,
    pod_allocated_gpus,
)
from harness.sim.node_lifecycle import ready_status
from harness.sim.scheduler import container_requests, is_terminated, node_name_of, now_rfc3339
from harness.sim.termination import Terminator

log = logging.getLogger(__name__)

# The simulated driver library is compiled once per source version and user, not once per run.
DEFAULT_DRIVER_CACHE = USER_CACHE
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_BACKOFF_CAP = 8
_MAX_ONE_SHOT_RESTARTS = 6


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _uid(pod: Obj) -> str:
    return str(_meta(pod).get("uid") or f"{_meta(pod).get('namespace')}/{_meta(pod).get('name')}")


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def image_id(image: str) -> str:
    """`docker.io/library/busybox@sha256:...`: the resolved reference a real kubelet reports."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    return f"{ref}@sha256:{_digest(image)}"


def container_gpu_count(container: dict[str, Any]) -> int:
    """GPU devices a container asked for: whole GPUs, MIG devices or shared replicas."""
    return sum(container_gpu_requests(container_requests(container)).values())


def pod_allocated_devices(pod: Obj) -> list[str]:
    """The plugin devices a pod holds (replica ids under time-slicing); older pods: their GPU UUIDs."""
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(ALLOCATED_DEVICES_ANNOTATION)
    if text is None:
        return pod_allocated_gpus(pod)
    return [d for d in str(text).split(",") if d]


def split_allocation(pod: Obj, uuids: list[str]) -> dict[str, list[str]]:
    """Which allocated UUIDs each app container got (in container order, as the pod asked)."""
    out: dict[str, list[str]] = {}
    cursor = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        n = container_gpu_count(c)
        out[str(c.get("name"))] = uuids[cursor: cursor + n]
        cursor += n
    return out


def node_gpu_inventory(node: Obj) -> list[dict[str, Any]]:
    """The node's GPUs (and their MIG devices) in the shape harness.gpu.simnvml writes into the simulated
    driver's inventory. Nodes built by the sim carry their NVML name; others fall back to the label."""
    labels = _meta(node).get("labels") or {}
    product = str(labels.get(PRODUCT_LABEL, "NVIDIA-GPU")).replace("-", " ")
    memory_mib = int(quantity_or_zero(labels.get(MEMORY_LABEL, "0")))
    return inventory(node, node_gpu_uuids(node), product, memory_mib)


def qos_class(pod: Obj) -> str:
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits or quantity_or_zero(requests.get(r, limits[r])) != quantity_or_zero(limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _field_ref(path: str, pod: Obj, node_name: str, ip: str) -> str:
    meta = _meta(pod)
    values = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": node_name,
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
        "status.podIP": ip, "status.hostIP": "127.0.0.1",
    }
    # The downward API's `metadata.annotations['key']` / `metadata.labels['key']` (how an indexed Job's
    # pods read their completion index).
    keyed = _KEYED_FIELD.match(path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    return str(values.get(path, ""))


_KEYED_FIELD = re.compile(r"^metadata\.(annotations|labels)\['([^']+)'\]$")
_SERVICE_NAME = re.compile(
    r"(?<![\w.-])([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?"
    r"(?::(\d+))?(?![\w.-])")


def service_address(svc: Obj, port: int | None) -> str | None:
    """Where the sim serves `svc`'s `port` on this machine: its loopback LoadBalancer ingress (the mesh;
    ingress ports in the order of the Service's ports). None for every other Service: nothing serves it."""
    ports = [p.get("port") for p in (svc.get("spec") or {}).get("ports") or []]
    ingress = (((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}])[0]
    ip = str(ingress.get("ip") or "")
    served = [p.get("port") for p in ingress.get("ports") or []]
    if not ip.startswith("127.") or not ports:
        return None
    slot = 0 if port is None else (ports.index(port) if port in ports else -1)
    if slot < 0 or slot >= len(served):
        return None
    return f"{ip}:{served[slot]}"


def resolve_services(store: Store, text: str) -> str:
    """Cluster DNS and kube-proxy for a container's arguments and environment: a Service named as
    `<service>.<namespace>.svc[.cluster.local][:port]` becomes the loopback address where the sim
    serves it. Names of Services the sim does not serve stay as they are and do not resolve here."""
    def swap(m: re.Match[str]) -> str:
        svc = store.get("v1", "Service", m.group(1), m.group(2))
        address = service_address(svc, int(m.group(3)) if m.group(3) else None) if svc else None
        return address or m.group(0)

    return _SERVICE_NAME.sub(swap, text)


def container_environment(store: Store, pod: Obj, container: dict[str, Any], node: Obj | None,
                          allocated: list[str], ip: str = "") -> dict[str, str]:
    """The environment a container would see: its env, plus what the device plugin injects."""
    env: dict[str, str] = {}
    ns = _meta(pod).get("namespace")
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item:
            env[name] = str(item.get("value") or "")
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = _field_ref(str(source["fieldRef"].get("fieldPath", "")), pod,
                                   str((pod.get("spec") or {}).get("nodeName", "")), ip)
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = store.get("v1", "ConfigMap", str(ref.get("name", "")), ns)
            value = ((cm or {}).get("data") or {}).get(str(ref.get("key", "")))
            if value is not None:
                env[name] = str(value)
    if allocated:
        # The device plugin's Allocate response wins over the image's and the pod's own value.
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(allocated)
    return env


# Where processes that hold simulated GPU memory (the Triton stand-in) say how much, one JSON file
# each: {"pid": <host pid>, "gpus": {"<uuid>": <bytes>}}. Relative to the kubelet's work directory.
GPU_USE_DIR = "gpu-use"


def gpu_processes(node: Obj, gpu_use_dir: Path | None) -> dict[str, list[dict[str, int]]]:
    """Compute processes per GPU of `node`, as NVML would list them (host PIDs, memory used).

    Only processes that really hold device memory appear: the Triton stand-in once it has loaded a
    GPU instance. A CPU-only server (MLServer running sklearn) holds none, as on a real node.
    """
    out: dict[str, list[dict[str, int]]] = {}
    if gpu_use_dir is None or not gpu_use_dir.is_dir():
        return out
    mine = set(node_gpu_uuids(node)) | {m.uuid for m in node_mig_devices(node)}
    for path in sorted(gpu_use_dir.glob("*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            pid = int(state["pid"])
            held = {str(k): int(v) for k, v in dict(state.get("gpus") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _pid_alive(pid):
            continue  # a process that died without cleaning up holds nothing any more
        for uuid, used in held.items():
            if uuid in mine and used > 0:
                out.setdefault(uuid, []).append({"pid": pid, "used_memory_bytes": used})
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class _Crash:
    namespace: str
    pod: str
    container: str
    loop: bool
    due: float
    restarts: int = 1


class KubeletController:
    name = "kubelet"

    def __init__(self, workdir: str | Path | None = None, driver_cache: str | Path | None = None,
                 script_timeout_s: float = 120.0, crash_backoff_s: float = 0.5, max_workers: int = 4,
                 store: Store | None = None) -> None:
        self._store = store
        self._workdir = Path(workdir) if workdir else None
        self._driver_cache = Path(driver_cache) if driver_cache else DEFAULT_DRIVER_CACHE
        self._driver_lock = threading.Lock()
        self._script_timeout = script_timeout_s
        self._backoff = crash_backoff_s
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sim-kubelet")
        self._lock = threading.Lock()
        self._ips: dict[str, str] = {}
        self._jobs: dict[str, Future[None]] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._crashes: dict[str, _Crash] = {}
        self._mount_reported: dict[str, str] = {}
        self._closed = False
        self._closing = threading.Event()
        self._terminator = Terminator()

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, store: Store, now: float) -> float | None:
        nodes = {node_name_of(n): n for n in store.list("v1", "Node")}
        pods = sorted(store.list("v1", "Pod"), key=lambda p: (_meta(p).get("creationTimestamp") or "", _uid(p)))
        in_use: dict[str, set[str]] = {}
        admitted: dict[str, list[Obj]] = {}  # per node: pods its kubelet runs (admission counts them)
        for p in pods:
            node_name = str((p.get("spec") or {}).get("nodeName") or "")
            if node_name and not is_terminated(p):
                in_use.setdefault(node_name, set()).update(pod_allocated_devices(p))
                if (p.get("status") or {}).get("startTime"):
                    admitted.setdefault(node_name, []).append(p)
        live: set[str] = set()
        wake: float | None = None
        for pod in pods:
            uid = _uid(pod)
            live.add(uid)
            node = nodes.get(str((pod.get("spec") or {}).get("nodeName") or ""))
            if node is not None and _meta(pod).get("deletionTimestamp") and ready_status(node) == "True":
                # graceful deletion (harness/sim/termination.py): stop its containers, then remove it
                with self._lock:
                    proc = self._procs.get(uid)
                    job = self._jobs.get(uid)
                again = self._terminator.step(store, pod, now, proc, starting=job is not None and not job.done())
                wake = again if wake is None or (again is not None and again < wake) else wake
                continue
            if node is None or is_terminated(pod) or (pod.get("status") or {}).get("startTime"):
                continue
            if ready_status(node) != "True":
                continue  # a NotReady node's kubelet is not starting anything
            refused = rejection(pod, node, admitted.setdefault(node_name_of(node), []))
            if refused is not None:
                # kubelet.go rejectPod (harness/sim/admission.py): Failed, never started
                store.record_event(pod, refused[0], refused[1], "Warning", component="kubelet")
                self._write_status(store, pod, {"phase": "Failed", "reason": refused[0],
                                                "message": f"Pod was rejected: {refused[1]}"})
                continue
            admitted[node_name_of(node)].append(pod)
            try:
                self._start(store, pod, node, in_use.setdefault(node_name_of(node), set()))
            except ApiError as exc:
                if exc.code != 404:
                    raise
        with self._lock:
            known = set(self._ips) | set(self._jobs) | set(self._crashes) | set(self._mount_reported)
        self._forget(known - live)
        self._terminator.forget(live)
        crash_wake = self._advance_crashes(store, now, live)
        return crash_wake if wake is None or (crash_wake is not None and crash_wake < wake) else wake

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ starting pods
    def _allocate_ip(self, uid: str) -> str:
        with self._lock:
            if uid in self._ips:
                return self._ips[uid]
            used = set(self._ips.values())
            for n in range(2, 250 * 256):
                ip = f"127.0.{n // 250}.{n % 250 + 2}" if n >= 250 else f"127.0.0.{n}"
                if ip not in used:
                    self._ips[uid] = ip
                    return ip
        raise RuntimeError("simulated pod IP range exhausted")

    def _forget(self, uids: set[str]) -> None:
        with self._lock:
            for uid in uids:
                self._ips.pop(uid, None)
                self._jobs.pop(uid, None)
                proc = self._procs.pop(uid, None)
                if proc is not None and proc.poll() is None:
                    proc.kill()
                self._crashes.pop(uid, None)
                self._mount_reported.pop(uid, None)

    def _missing_volume(self, store: Store, pod: Obj) -> str | None:
        ns = _meta(pod).get("namespace")
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            cm = vol.get("configMap")
            if cm and not cm.get("optional") and store.get("v1", "ConfigMap", str(cm.get("name", "")), ns) is None:
                return (f'MountVolume.SetUp failed for volume "{vol.get("name")}" : '
                        f'configmap "{cm.get("name")}" not found')
        return None

    def _start(self, store: Store, pod: Obj, node: Obj, in_use: set[str]) -> None:
        meta = _meta(pod)
        ns, name = str(meta.get("namespace")), str(meta["name"])
        missing = self._missing_volume(store, pod)
        if missing:
            # Reported once per pod and message: an event bump is a write, and writes wake the loop.
            with self._lock:
                first = self._mount_reported.get(_uid(pod)) != missing
                self._mount_reported[_uid(pod)] = missing
            if first:
                store.record_event(pod, "FailedMount", missing, "Warning", component="kubelet")
            self._write_status(store, pod, self._creating_status(pod, node))
            return
        spec = pod.get("spec") or {}
        wanted = sum(container_gpu_count(c) for c in spec.get("containers") or [])
        if wanted and not pod_allocated_gpus(pod):
            # The device plugin's Allocate, container by container (harness/sim/deviceplugin.py).
            devices = node_devices(node, node_gpu_uuids(node))
            chosen: list[str] = []
            try:
                for c in spec.get("containers") or []:
                    chosen += allocate(devices, in_use | set(chosen), container_gpu_requests(container_requests(c)),
                                       fail_requests_greater_than_one(node))
            except AllocationError as exc:
                self._reject(store, pod, str(exc))
                return
            in_use.update(chosen)
            pod = store.patch("v1", "Pod", name, ns, {"metadata": {"annotations": {
                ALLOCATED_DEVICES_ANNOTATION: ",".join(chosen),
                ALLOCATED_GPUS_ANNOTATION: ",".join(device_uuid(d) for d in chosen)}}}, "merge")
        # hostNetwork pods share the node's address, as on a real node.
        ip = _host_ip(node) if spec.get("hostNetwork") else self._allocate_ip(_uid(pod))
        for c in spec.get("containers") or []:
            store.record_event(pod, "Pulled", f'Container image "{c.get("image")}" already present on machine',
                               "Normal", component="kubelet")
            store.record_event(pod, "Created", f"Created container: {c.get('name')}", "Normal", component="kubelet")
            store.record_event(pod, "Started", f"Started container {c.get('name')}", "Normal", component="kubelet")
        status = self._running_status(pod, node, ip)
        pod = self._write_status(store, pod, status)
        if spec.get("restartPolicy") in ("Never", "OnFailure") and any(
            _runs_python(c) for c in spec.get("containers") or []
        ):
            with self._lock:
                if self._closed:
                    return
                self._jobs[_uid(pod)] = self._pool.submit(self._run_one_shot, store, copy.deepcopy(pod), node, ip)

    def _write_status(self, store: Store, pod: Obj, status: dict[str, Any]) -> Obj:
        meta = _meta(pod)
        return store.patch("v1", "Pod", str(meta["name"]), meta.get("namespace"), {"status": status}, "merge",
                           subresource="status")

    def _conditions(self, pod: Obj, ready: bool, reason: str | None = None, message: str | None = None) -> list[Obj]:
        stamp = now_rfc3339()
        previous = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
        out: list[Obj] = []
        for ctype, ok in (("PodReadyToStartContainers", True), ("Initialized", True), ("Ready", ready),
                          ("ContainersReady", ready), ("PodScheduled", True)):
            old = previous.get(ctype) or {}
            status = "True" if ok else "False"
            cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None,
                         "lastTransitionTime": old.get("lastTransitionTime", stamp) if old.get("status") == status
                         else stamp}
            if not ok and reason:
                cond["reason"] = reason
                if message:
                    cond["message"] = message
            out.append(cond)
        return out

    def _container_status(self, pod: Obj, c: dict[str, Any], state: Obj, ready: bool, restarts: int = 0) -> Obj:
        image = str(c.get("image", ""))
        return {
            "name": c.get("name"), "image": image, "imageID": image_id(image),
            "containerID": f"containerd://{_digest(_uid(pod), str(c.get('name')), str(restarts))}",
            "ready": ready, "started": "running" in state, "restartCount": restarts,
            "state": state, "lastState": {},
        }

    def _running_status(self, pod: Obj, node: Obj, ip: str) -> Obj:
        spec = pod.get("spec") or {}
        stamp = now_rfc3339()
        host_ip = _host_ip(node)
        init_statuses = []
        for c in spec.get("initContainers") or []:
            st = self._container_status(pod, c, {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                "startedAt": stamp, "finishedAt": stamp}}, True)
            st["started"] = False
            init_statuses.append(st)
        status: Obj = {
            "phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": stamp, "qosClass": qos_class(pod), "conditions": self._conditions(pod, True),
            "containerStatuses": [self._container_status(pod, c, {"running": {"startedAt": stamp}}, True)
                                  for c in spec.get("containers") or []],
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    def _creating_status(self, pod: Obj, node: Obj) -> Obj:
        spec = pod.get("spec") or {}
        names = [str(c.get("name")) for c in spec.get("containers") or []]
        message = f"containers with unready status: [{' '.join(names)}]"
        return {
            "phase": "Pending", "hostIP": "127.0.0.1", "qosClass": qos_class(pod),
            "conditions": [c for c in self._conditions(pod, False, "ContainersNotReady", message)
                           if c["type"] != "PodReadyToStartContainers"],
            "containerStatuses": [
                self._container_status(pod, c, {"waiting": {"reason": "ContainerCreating"}}, False)
                for c in spec.get("containers") or []
            ],
        }

    def _reject(self, store: Store, pod: Obj, message: str) -> None:
        store.record_event(pod, "UnexpectedAdmissionError", message, "Warning", component="kubelet")
        self._write_status(store, pod, {"phase": "Failed", "reason": "UnexpectedAdmissionError", "message": message,
                                        "startTime": now_rfc3339()})

    # ------------------------------------------------------------------ one-shot pods
    def _run_one_shot(self, store: Store, pod: Obj, node: Obj, ip: str) -> None:
        """Run the pod's containers to completion. restartPolicy OnFailure reruns failed containers
        after a back-off (phase stays Running, state CrashLoopBackOff, log rotated), as kubelet does;
        after `_MAX_ONE_SHOT_RESTARTS` it leaves the pod in CrashLoopBackOff instead of running forever."""
        meta = _meta(pod)
        ns, name, uid = str(meta.get("namespace")), str(meta["name"]), _uid(pod)
        per_container = split_allocation(pod, pod_allocated_gpus(pod))
        on_failure = (pod.get("spec") or {}).get("restartPolicy") == "OnFailure"
        todo = list((pod.get("spec") or {}).get("containers") or [])
        done: dict[str, Obj] = {}
        restarts: dict[str, int] = {}
        for attempt in range(_MAX_ONE_SHOT_RESTARTS + 1):
            failed: list[dict[str, Any]] = []
            for c in todo:
                cname = str(c.get("name"))
                started = now_rfc3339()
                env = container_environment(store, pod, c, node, per_container.get(cname, []), ip)
                try:
                    code, output = self._execute(store, pod, c, env, uid, node)
                except Exception as exc:  # a broken script must fail the pod, never the worker
                    code, output = 128, f"sim kubelet: cannot run container: {exc}\n"
                if output:
                    store.append_log(ns, name, cname, output)
                terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                              "startedAt": started, "finishedAt": now_rfc3339(),
                              "containerID": f"containerd://{_digest(uid, cname, str(restarts.get(cname, 0)))}"}
                if code != 0 and on_failure:
                    failed.append(c)
                status = self._container_status(pod, c, {"terminated": terminated}, False, restarts.get(cname, 0))
                if cname in done:
                    status["lastState"] = done[cname].get("lastState", {})
                done[cname] = status
            with self._lock:
                if self._closed:
                    return
            current = store.get("v1", "Pod", name, ns)
            if current is None or _uid(current) != uid:
                return
            if failed and attempt < _MAX_ONE_SHOT_RESTARTS and not _meta(current).get("deletionTimestamp"):
                for c in failed:
                    cname = str(c.get("name"))
                    restarts[cname] = restarts.get(cname, 0) + 1
                    store.rotate_log(ns, name, cname)
                    last = done[cname]["state"]
                    done[cname] = {**done[cname], "restartCount": restarts[cname], "lastState": last,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": (
                                       f"back-off {10 * 2 ** (restarts[cname] - 1)}s restarting failed "
                                       f"container={cname} pod={name}_{ns}({uid})")}}}
                self._write_one_shot(store, current, "Running", list(done.values()), "ContainersNotReady")
                todo = failed
                # Pacing the restart back-off (interrupted by close()), not waiting for a condition.
                if self._closing.wait(self._backoff * min(2 ** attempt, _BACKOFF_CAP)):
                    return
                continue
            if failed and not _meta(current).get("deletionTimestamp"):
                return  # restart budget spent: stay in CrashLoopBackOff, as a real pod would keep trying
            phase = "Failed" if any(s["state"].get("terminated", {}).get("exitCode") for s in done.values()) \
                else "Succeeded"
            self._write_one_shot(store, current, phase, list(done.values()), "PodCompleted")
            return

    def _write_one_shot(self, store: Store, pod: Obj, phase: str, statuses: list[Obj], reason: str) -> None:
        try:
            self._write_status(store, pod, {"phase": phase, "conditions": self._conditions(pod, False, reason),
                                            "containerStatuses": statuses})
        except ApiError as exc:
            if exc.code != 404:
                raise

    def _driver_dir(self, store: Store, node: Obj | None, env: dict[str, str], base: Path) -> Path | None:
        """The simulated driver injected into this container, or None where the real runtime injects none."""
        if node is None or not node_gpu_uuids(node) or not runtime_injects_driver(env.get("NVIDIA_VISIBLE_DEVICES")):
            return None
        with self._driver_lock:  # one gcc run, however many probes start at once
            library = build_library(self._driver_cache)
        return prepare_driver_dir(base / "nvidia-driver", library, node_gpu_inventory(node),
                                   gpu_processes(node, self._workdir / GPU_USE_DIR if self._workdir else None))

    def _execute(self, store: Store, pod: Obj, c: dict[str, Any], env: dict[str, str], uid: str,
                 node: Obj | None = None) -> tuple[int, str]:
        argv = [str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
        if not _runs_python(c):
            return 0, ""
        base = Path(tempfile.mkdtemp(prefix="pod-", dir=str(self._workdir) if self._workdir else None))
        try:
            mounts = self._materialise(store, pod, c, base)
            args = [resolve_services(store, self._translate(a, mounts)) for a in argv[1:]]
            full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LANG": "C.UTF-8",
                        "HOSTNAME": str(_meta(pod).get("name")),
                        **{k: resolve_services(store, v) for k, v in env.items()}}
            driver = self._driver_dir(store, node, env, base)
            if driver is not None:
                full_env["LD_LIBRARY_PATH"] = str(driver)
            proc = subprocess.Popen([sys.executable, *args], cwd=str(base), env=full_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            with self._lock:
                self._procs[uid] = proc
            deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
            limit = min(self._script_timeout, float(deadline)) if deadline else self._script_timeout
            try:
                out, _ = proc.communicate(timeout=limit)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate(timeout=10)
                out += f"\nsim kubelet: killed after {limit:.0f}s\n".encode()
                code = 137
            finally:
                with self._lock:
                    self._procs.pop(uid, None)
            return (code if code >= 0 else 128 - code), out.decode("utf-8", "replace")
        finally:
            shutil.rmtree(base, ignore_errors=True)

    @staticmethod
    def _translate(arg: str, mounts: dict[str, Path]) -> str:
        for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if arg == mount or arg.startswith(mount.rstrip("/") + "/"):
                return str(local) + arg[len(mount.rstrip("/")):]
        return arg

    def _materialise(self, store: Store, pod: Obj, c: dict[str, Any], base: Path) -> dict[str, Path]:
        """Write the container's ConfigMap volumes under `base`; return mountPath -> local dir."""
        ns = _meta(pod).get("namespace")
        volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or []}
        mounts: dict[str, Path] = {}
        for i, vm in enumerate(c.get("volumeMounts") or []):
            vol = volumes.get(str(vm.get("name"))) or {}
            source = vol.get("configMap")
            if not source:
                continue
            cm = store.get("v1", "ConfigMap", str(source.get("name", "")), ns) or {}
            data = {**(cm.get("data") or {})}
            items = source.get("items")
            files = {str(it["path"]): data.get(str(it["key"]), "") for it in items} if items else data
            local = base / f"vol{i}"
            sub = str(vm.get("subPath") or "")
            for rel, text in files.items():
                target = (local / rel).resolve()
                if local.resolve() not in target.parents:
                    continue  # a path escaping the volume is rejected by the real API server too
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(str(text), encoding="utf-8")
            mounts[str(vm.get("mountPath", ""))] = local / sub if sub else local
        return mounts

    # ------------------------------------------------------------------ crash faults
    def register_faults(self, faults: Any) -> None:
        """Hooks: `pod_crash(ns, pod, container=None)` (once), `pod_crash_loop(ns, pod, container=None)`,
        `end_crash_loop(ns, pod)`."""
        store = self._store
        if store is None:
            return
        faults.register("pod_crash", lambda ns, pod, container=None: self.crash_container(store, ns, pod, container))
        faults.register("pod_crash_loop", lambda ns, pod, container=None: self.crash_container(
            store, ns, pod, container, loop=True))
        faults.register("end_crash_loop", self.end_crash_loop)

    def crash_container(self, store: Store, namespace: str, pod: str, container: str | None = None, *,
                        loop: bool = False, exit_code: int = 1) -> Obj:
        """Fault: the container exits; it restarts after a back-off (once) or keeps crashing (loop)."""
        current = store.get("v1", "Pod", pod, namespace)
        if current is None:
            raise ApiError(404, "NotFound", f'pods "{pod}" not found')
        names = [str(c.get("name")) for c in (current.get("spec") or {}).get("containers") or []]
        target = container or names[0]
        if target not in names:
            raise ApiError(400, "BadRequest", f"container {target} is not valid for pod {pod}")
        uid = _uid(current)
        with self._lock:
            previous = self._crashes.get(uid)
            restarts = self._restart_count(current, target) + 1
            self._crashes[uid] = _Crash(namespace, pod, target, loop, time.monotonic() + self._backoff,
                                        (previous.restarts + 1) if previous else 1)
        return self._apply_crash(store, current, target, restarts, exit_code)

    def end_crash_loop(self, namespace: str, pod: str) -> None:
        """Let a crash-looping container come back at its next restart."""
        with self._lock:
            for crash in self._crashes.values():
                if crash.namespace == namespace and crash.pod == pod:
                    crash.loop = False

    @staticmethod
    def _restart_count(pod: Obj, container: str) -> int:
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("name") == container:
                return int(st.get("restartCount", 0))
        return 0

    def _apply_crash(self, store: Store, pod: Obj, container: str, restarts: int, exit_code: int) -> Obj:
        meta = _meta(pod)
        ns, name = str(meta.get("namespace")), str(meta["name"])
        stamp = now_rfc3339()
        backoff = min(10 * 2 ** max(restarts - 1, 0), 300)
        message = f"back-off {backoff}s restarting failed container={container} pod={name}_{ns}({meta.get('uid')})"
        statuses = []
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("name") == container:
                started = ((st.get("state") or {}).get("running") or {}).get("startedAt", stamp)
                st = {**st, "ready": False, "started": False, "restartCount": restarts,
                      "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "startedAt": started,
                                                   "finishedAt": stamp, "containerID": st.get("containerID")}},
                      "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}}}
            statuses.append(st)
        store.append_log(ns, name, container, f"sim: container {container} exited with code {exit_code}\n")
        store.rotate_log(ns, name, container)
        store.record_event(pod, "BackOff", f"Back-off restarting failed container {container} in pod "
                           f"{name}_{ns}({meta.get('uid')})", "Warning", component="kubelet")
        return self._write_status(store, pod, {
            "conditions": self._conditions(pod, False, "ContainersNotReady",
                                           f"containers with unready status: [{container}]"),
            "containerStatuses": statuses,
        })

    def _advance_crashes(self, store: Store, now: float, live: set[str]) -> float | None:
        with self._lock:
            crashes = {uid: c for uid, c in self._crashes.items() if uid in live}
        wake: float | None = None
        for uid, crash in crashes.items():
            if crash.due > now:
                wake = crash.due if wake is None else min(wake, crash.due)
                continue
            pod = store.get("v1", "Pod", crash.pod, crash.namespace)
            if pod is None or _uid(pod) != uid:
                continue
            restarts = self._restart_count(pod, crash.container)
            if crash.loop:
                with self._lock:
                    crash.restarts += 1
                    crash.due = now + self._backoff * min(2 ** (crash.restarts - 1), _BACKOFF_CAP)
                self._apply_crash(store, pod, crash.container, restarts + 1, 1)
                wake = crash.due if wake is None else min(wake, crash.due)
                continue
            with self._lock:
                self._crashes.pop(uid, None)
            self._recover(store, pod, crash.container, restarts)
        return wake

    def _recover(self, store: Store, pod: Obj, container: str, restarts: int) -> None:
        stamp = now_rfc3339()
        statuses = []
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("name") == container:
                st = {**st, "ready": True, "started": True, "state": {"running": {"startedAt": stamp}},
                      "containerID": f"containerd://{_digest(_uid(pod), container, str(restarts))}"}
            statuses.append(st)
        all_ready = all(st.get("ready") for st in statuses)
        self._write_status(store, pod, {"conditions": self._conditions(pod, all_ready, "ContainersNotReady"),
                                        "containerStatuses": statuses})


def _host_ip(node: Obj) -> str:
    return str(next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                     if a.get("type") == "InternalIP"), "127.0.0.1"))


def _runs_python(container: dict[str, Any]) -> bool:
    argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    return bool(argv) and bool(_PYTHON.match(os.path.basename(argv[0])))
