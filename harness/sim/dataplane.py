"""The simulated cluster's data plane: one local server process per Running Server pod.

MLServer-type pods run a real MLServer; Triton-type pods run the Triton stand-in
(`harness.sim.triton`), which sees the pod's allocated GPUs through `NVIDIA_VISIBLE_DEVICES` and
records the device memory its GPU instances hold under `<workdir>/gpu-use/` for the simulated NVML.

Processes start lazily (the first model scheduled to a pod), load models under Seldon's served name
`<model>_<version>`, and stop when the pod goes away. Slow work (start, load) runs on one worker
thread per pod so the controller loop never blocks; the controller reads states with `state()` and
asks again while `pending()` is true. A process that dies is restarted by that worker and its models
reloaded (the pod's container restarted); `take_crashes()` tells the controller so it can record
the restart on the pod.

With `enabled=False` (a cluster started without MLServer) every load succeeds at once and there is
no endpoint: the control plane behaves, inference through the mesh is refused.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.localserver import MLServerError, MLServerProcess
from harness.sim.kubelet import GPU_USE_DIR
from harness.sim.models import ModelUnavailable, resolve_storage_uri
from harness.sim.triton_process import RealTritonProcess, TritonStandInProcess

StateName = Literal["Loading", "Available", "Failed"]
# Container ports of Seldon 2.10.2's ServerConfigs: server HTTP, server gRPC, Triton metrics.
SERVER_HTTP_PORT, SERVER_GRPC_PORT, TRITON_METRICS_PORT = 9000, 9500, 8002
DISABLED = "the simulated cluster runs without MLServer (started with mlserver=False)"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    server: str
    server_type: str  # mlserver | triton
    uid: str = ""
    gpus: tuple[str, ...] = ()  # what the device plugin allocated to the pod (the server container's view)


@dataclass(frozen=True)
class ReplicaState:
    state: StateName
    message: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where one loaded replica of a model answers."""

    pod: str
    http_port: int
    grpc_port: int
    served_name: str


@dataclass
class _Backend:
    pod: PodRef
    workdir: Path
    worker: ThreadPoolExecutor
    process: MLServerProcess | None = None
    # served name -> (storageUri, state)
    models: dict[str, tuple[str, ReplicaState]] = field(default_factory=dict)
    restarts: int = 0
    closing: bool = False
    busy: int = 0  # tasks queued or running on the worker
    log_offset: int = 0  # how much of the MLServer log has been copied into the pod log


class DataPlane:
    """MLServer processes behind Server pods, and the loaded-model table the mesh routes by."""

    def __init__(
        self,
        workdir: Path,
        *,
        enabled: bool = True,
        notify: Callable[[], None] | None = None,
        start_timeout_s: float = 120.0,
        load_timeout_s: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._notify = notify
        self._start_timeout = start_timeout_s
        self._load_timeout = load_timeout_s
        self._lock = threading.RLock()
        self._backends: dict[tuple[str, str], _Backend] = {}
        self._crashes: list[tuple[PodRef, str, str]] = []
        self._fail_loads: dict[str, str] = {}  # model name -> injected failure message
        self._die_on_load: set[str] = set()  # model names whose next load kills the server mid-load
        self._closed = False

    # --- the controller's view --------------------------------------------------------------
    def sync_pods(self, pods: Iterable[PodRef]) -> None:
        """Stop the processes of pods that are gone (or were replaced under the same name)."""
        live = {(p.namespace, p.name): p for p in pods}
        with self._lock:
            gone = [key for key, b in self._backends.items() if key not in live or live[key].uid != b.pod.uid]
            backends = [self._backends.pop(key) for key in gone]
        for backend in backends:
            self._retire(backend)

    def ensure_model(self, pod: PodRef, served_name: str, storage_uri: str) -> ReplicaState:
        """Make sure `served_name` is (being) loaded on `pod`; return its current state."""
        if pod.server_type not in ("mlserver", "triton"):
            return ReplicaState("Failed", f"server {pod.server} has neither an mlserver nor a triton container")
        if not self.enabled:
            # No process to load into, but an unreachable storageUri or an injected fault still fails.
            try:
                resolve_storage_uri(storage_uri, self.workdir, train=False)
            except ModelUnavailable as exc:
                return ReplicaState("Failed", str(exc))
            with self._lock:
                injected = self._fail_loads.get(served_name.rsplit("_", 1)[0])
            return ReplicaState("Failed", injected) if injected else ReplicaState("Available", "ModelAvailable")
        with self._lock:
            if self._closed:
                return ReplicaState("Failed", "the data plane is shut down")
            backend = self._backend(pod)
            known = backend.models.get(served_name)
            if known is not None and known[0] == storage_uri:
                return known[1]
            state = ReplicaState("Loading", "ModelProgressing")
            backend.models[served_name] = (storage_uri, state)
            self._submit(backend, lambda: self._load(backend, served_name, storage_uri))
            return state

    def unload(self, pod: PodRef, served_name: str) -> None:
        with self._lock:
            backend = self._backends.get((pod.namespace, pod.name))
            if backend is None or served_name not in backend.models:
                return
            del backend.models[served_name]
            self._submit(backend, lambda: self._unload(backend, served_name))

    def loaded(self, pod: PodRef) -> list[str]:
        with self._lock:
            backend = self._backends.get((pod.namespace, pod.name))
            return sorted(backend.models) if backend is not None else []

    def endpoints(self, pod: PodRef, served_name: str) -> Endpoint | None:
        """The live endpoint of an available replica, or None."""
        with self._lock:
            backend = self._backends.get((pod.namespace, pod.name))
            if backend is None or backend.process is None or not self.enabled:
                return None
            known = backend.models.get(served_name)
            if known is None or known[1].state != "Available":
                return None
            proc = backend.process
            return Endpoint(pod.name, proc.http_port, proc.grpc_port, served_name)

    def pod_ports(self, namespace: str, pod: str) -> dict[int, int]:
        """Container port -> local port of the server process behind `pod` (for the API's pod proxy)."""
        with self._lock:
            backend = self._backends.get((namespace, pod))
            proc = backend.process if backend is not None else None
            if proc is None or not proc.is_alive():
                return {}
            ports = {SERVER_HTTP_PORT: proc.http_port, SERVER_GRPC_PORT: proc.grpc_port}
            if isinstance(proc, TritonStandInProcess):
                ports[TRITON_METRICS_PORT] = proc.metrics_port
            return ports

    def pending(self) -> bool:
        with self._lock:
            return any(b.busy for b in self._backends.values())

    def drain_logs(self, limit: int = 64 * 1024) -> list[tuple[PodRef, str]]:
        """New MLServer output per pod since the last call (at most `limit` bytes each), so the pod's
        container log shows what the real server printed."""
        with self._lock:
            backends = [b for b in self._backends.values() if b.process is not None and not b.closing]
        out: list[tuple[PodRef, str]] = []
        for backend in backends:
            assert backend.process is not None
            try:
                with backend.process.log_path.open("rb") as fh:
                    fh.seek(backend.log_offset)
                    chunk = fh.read(limit)
            except OSError:
                continue
            if chunk:
                backend.log_offset += len(chunk)
                out.append((backend.pod, chunk.decode("utf-8", "replace")))
        return out

    def take_crashes(self) -> list[tuple[PodRef, str, str]]:
        """Crashes seen since the last call: (pod, message, MLServer log tail). Each restarted the container."""
        with self._lock:
            crashes, self._crashes = self._crashes, []
            return crashes

    def check_processes(self) -> None:
        """Notice processes that died while idle and restart them on their worker."""
        with self._lock:
            for backend in self._backends.values():
                proc = backend.process
                if backend.closing or backend.busy or proc is None or proc.is_alive():
                    continue
                self._submit(backend, functools.partial(self._recover, backend))

    # --- faults -----------------------------------------------------------------------------
    def fail_model_load(self, model: str, message: str = "injected fault: the model failed to load") -> None:
        """Every later load of `model` (Seldon name, not the served name) fails with `message`."""
        with self._lock:
            self._fail_loads[model] = message

    def clear_model_fault(self, model: str) -> None:
        with self._lock:
            self._fail_loads.pop(model, None)
            self._die_on_load.discard(model)

    def kill_during_load(self, model: str) -> None:
        """The MLServer dies while loading the next load of `model` (Seldon name): the container
        restarts and the load is retried once on the new process."""
        with self._lock:
            self._die_on_load.add(model)

    def kill_server(self, namespace: str, pod: str) -> bool:
        """SIGKILL the MLServer behind `pod` (mid-load or mid-run). True when there was one."""
        with self._lock:
            backend = self._backends.get((namespace, pod))
            proc = backend.process if backend is not None else None
            pid = proc.pid if proc is not None else None
        if pid is None or proc is None:
            return False
        self._kill(proc)
        self.check_processes()
        return True

    @staticmethod
    def _kill(proc: MLServerProcess) -> None:
        # SIGKILL to the whole process group, reaped, so `is_alive()` is False from here on.
        proc.kill(timeout=10)

    def pid(self, namespace: str, pod: str) -> int | None:
        """PID of the MLServer behind `pod`, if one runs (for tests and diagnostics)."""
        with self._lock:
            backend = self._backends.get((namespace, pod))
            proc = backend.process if backend is not None else None
            return proc.pid if proc is not None and proc.is_alive() else None

    def restarts(self, namespace: str, pod: str) -> int:
        with self._lock:
            backend = self._backends.get((namespace, pod))
            return backend.restarts if backend is not None else 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backends = list(self._backends.values())
            self._backends.clear()
        for backend in backends:
            self._retire(backend, wait=True)

    # --- internals --------------------------------------------------------------------------
    def _backend(self, pod: PodRef) -> _Backend:
        key = (pod.namespace, pod.name)
        backend = self._backends.get(key)
        if backend is None:
            workdir = self.workdir / "mlserver" / f"{pod.namespace}.{pod.name}.{pod.uid[:8] or 'pod'}"
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mlserver-{pod.name}")
            backend = _Backend(pod, workdir, worker)
            # A pod that comes back (same uid) reuses its folder: copy only what the new process logs.
            with contextlib.suppress(OSError):
                backend.log_offset = (workdir / "mlserver.log").stat().st_size
            self._backends[key] = backend
        return backend

    def _submit(self, backend: _Backend, task: Callable[[], None]) -> None:
        backend.busy += 1

        def run() -> None:
            try:
                if not backend.closing:
                    task()
            finally:
                with self._lock:
                    backend.busy -= 1
                self._changed()

        backend.worker.submit(run)

    def _changed(self) -> None:
        if self._notify is not None:
            with contextlib.suppress(Exception):
                self._notify()

    def _set(self, backend: _Backend, served_name: str, uri: str, state: ReplicaState) -> None:
        with self._lock:
            known = backend.models.get(served_name)
            # A later ensure/unload changed what is wanted; this result is stale.
            if known is None or known[0] != uri:
                return
            backend.models[served_name] = (uri, state)

    def _start(self, backend: _Backend) -> str | None:
        """Start the pod's MLServer if needed; an error message when it cannot run."""
        if backend.process is not None and backend.process.is_alive():
            return None
        if backend.process is None:
            pod = backend.pod
            if pod.server_type == "triton" and not pod.gpus:
                # No GPU: the real tritonserver runs its models on the CPU, as a GPU-less pod's Triton would.
                backend.process = RealTritonProcess(backend.workdir)
            elif pod.server_type == "triton":
                state = self.workdir / GPU_USE_DIR / f"{pod.namespace}.{pod.name}.{pod.uid[:8] or 'pod'}.json"
                backend.process = TritonStandInProcess(backend.workdir, gpus=pod.gpus, gpu_state=state)
            else:
                backend.process = MLServerProcess(backend.workdir, parallel_workers=0)
        try:
            backend.process.start(timeout=self._start_timeout)
        except MLServerError as exc:
            what = "Triton" if backend.pod.server_type == "triton" else "MLServer"
            return f"{what} for pod {backend.pod.name} failed to start: {str(exc).splitlines()[0]}"
        return None

    def _load(self, backend: _Backend, served_name: str, uri: str, *, may_recover: bool = True) -> None:
        model = served_name.rsplit("_", 1)[0]
        try:
            source = resolve_storage_uri(uri, self.workdir)
        except ModelUnavailable as exc:
            self._set(backend, served_name, uri, ReplicaState("Failed", str(exc)))
            return
        with self._lock:
            injected = self._fail_loads.get(model)
        if injected is not None:
            self._set(backend, served_name, uri, ReplicaState("Failed", injected))
            return
        problem = self._start(backend)
        if problem is not None:
            self._set(backend, served_name, uri, ReplicaState("Failed", problem))
            return
        assert backend.process is not None
        with self._lock:
            die = model in self._die_on_load
            self._die_on_load.discard(model)
        try:
            if die:
                self._kill(backend.process)
            backend.process.load_model(served_name, source.path, timeout=self._load_timeout)
        except MLServerError as exc:
            if may_recover and not backend.process.is_alive():
                # The server died mid-load: the container restarts and every model is loaded again.
                self._recover(backend, f"MLServer died while loading {served_name}; container restarted")
                return
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._set(backend, served_name, uri, ReplicaState("Failed", f"failed to load {served_name}: {first}"))
            return
        self._set(backend, served_name, uri, ReplicaState("Available", "ModelAvailable"))

    def _record_crash(self, backend: _Backend, message: str) -> None:
        tail = backend.process.log_tail(20) if backend.process is not None else ""
        with self._lock:
            backend.restarts += 1
            self._crashes.append((backend.pod, message, tail))

    def _recover(self, backend: _Backend, message: str = "MLServer process exited; container restarted") -> None:
        """The process died: restart it and reload every model it should hold (one try each, so a
        server that keeps dying fails its models instead of looping)."""
        proc = backend.process
        if proc is None or proc.is_alive():
            return
        self._record_crash(backend, message)
        with contextlib.suppress(MLServerError):
            proc.stop(timeout=5)
        with self._lock:
            wanted = dict(backend.models)
            for name, (uri, _) in wanted.items():
                backend.models[name] = (uri, ReplicaState("Loading", "ModelProgressing"))
        for name, (uri, _) in wanted.items():
            self._load(backend, name, uri, may_recover=False)

    def _unload(self, backend: _Backend, served_name: str) -> None:
        proc = backend.process
        if proc is None or not proc.is_alive():
            return
        with contextlib.suppress(MLServerError):
            proc.unload_model(served_name, timeout=30)

    def _retire(self, backend: _Backend, wait: bool = False) -> None:
        backend.closing = True

        def stop() -> None:
            if backend.process is not None:
                with contextlib.suppress(MLServerError):
                    backend.process.stop(timeout=5)

        if wait:
            # Kill first so an in-flight start or load fails fast, then once more for one that raced it.
            stop()
            backend.worker.shutdown(wait=True, cancel_futures=True)
            stop()
            return
        # Stopping takes a moment; do it on the pod's own worker so the controller loop goes on.
        backend.worker.submit(stop)
        backend.worker.shutdown(wait=False)
