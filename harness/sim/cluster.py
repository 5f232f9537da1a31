"""`SimCluster`: the simulated cluster as one object (store, controllers, runtime, HTTP API).

Controllers come from colleagues' modules and are wired in lazily and leniently, so this layer runs
with whatever exists: `harness.sim.nodes` (`bootstrap_nodes(store, profile)`, `core_controllers(...)`)
and `harness.sim.seldon` (`bootstrap_seldon(store, profile)` plus a controller factory). A factory's
keyword arguments are matched by name from: profile, workdir, mlserver, faults, store. A controller
with a `register_faults(faults)` method gets the cluster's `Faults` to hook its own faults into.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from pathlib import Path
from types import TracebackType

import yaml

from harness.config import Profile
from harness.fsio import write_atomic
from harness.k8s.seldon_api import SELDON_GROUP, SELDON_VERSION
from harness.sim import nodes, seldon
from harness.sim.api.server import ApiServer
from harness.sim.api.store import MemoryStore
from harness.sim.api.tls import new_identity
from harness.sim.contracts import Controller, Obj
from harness.sim.faults import Faults
from harness.sim.runtime import Runtime

log = logging.getLogger(__name__)

SELDON_CRDS = (("servers", "Server", ("mls",)), ("serverconfigs", "ServerConfig", ("mlsc",)),
               ("models", "Model", ("mlm",)))


def crd_object(plural: str, kind: str, short_names: tuple[str, ...]) -> Obj:
    """A minimal CustomResourceDefinition for a Seldon kind, written from the facts (names, scope, version)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{SELDON_GROUP}"},
        "spec": {
            "group": SELDON_GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List",
                      "shortNames": list(short_names)},
            "versions": [{"name": SELDON_VERSION, "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}],
        },
        "status": {"acceptedNames": {"plural": plural, "kind": kind},
                   "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]},
    }


def kubeconfig_document(api_url: str, token: str = "simulated-cluster-token", ca_pem: bytes | None = None) -> Obj:
    cluster: Obj = {"server": api_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "sim", "cluster": cluster}],
        "users": [{"name": "sim", "user": {"token": token}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim", "namespace": "default"}}],
        "current-context": "sim",
    }


class SimCluster:
    """The simulated cluster. `start()` is fast (< 5 s without MLServer); `stop()` is idempotent."""

    simulated = True

    def __init__(self, profile: Profile, workdir: Path, *, mlserver: bool = True, port: int = 0,
                 kubeconfig: Path | None = None, mesh_ingress: bool = True) -> None:
        self.profile = profile
        self.workdir = Path(workdir)
        self.mlserver = mlserver
        # False: a cluster without a load balancer controller from its first moment (`sim up
        # --no-mesh-ingress`); withholding it only after start() left a window in which the address was
        # published and read.
        self.mesh_ingress = mesh_ingress
        self._port = port
        self.kubeconfig_path = Path(kubeconfig) if kubeconfig else self.workdir / "kubeconfig"
        self.store = MemoryStore()
        self.faults = Faults(self.store)
        self._server: ApiServer | None = None
        self.token: str | None = None  # the API bearer token, set by start()
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self.start_seconds: float | None = None
        self.controllers: list[Controller] = []

    @property
    def api_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated cluster is not started")
        return self._server.url

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    def _bootstrap(self) -> list[Controller]:
        self.store.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                           "metadata": {"name": "standard",
                                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                           "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
                           "volumeBindingMode": "WaitForFirstConsumer"})
        for plural, kind, short in SELDON_CRDS:
            self.store.create(crd_object(plural, kind, short))
        # The node side first (lifecycle, workloads, scheduler, kubelet), then Seldon: the runtime
        # runs controllers in this order.
        nodes.bootstrap_nodes(self.store, self.profile)
        controllers: list[Controller] = list(nodes.core_controllers(workdir=str(self.workdir), store=self.store))
        seldon.bootstrap_seldon(self.store, self.profile)
        controllers.extend(seldon.seldon_controllers(self.profile, str(self.workdir), mlserver=self.mlserver,
                                                     mesh_ingress=self.mesh_ingress))
        for c in controllers:
            register = getattr(c, "register_faults", None)
            if callable(register):
                register(self.faults)
        return controllers

    def start(self) -> SimCluster:
        with self._lock:
            if self._stopped:
                raise RuntimeError("a stopped SimCluster cannot be started again; make a new one")
            if self._started:
                return self
            t0 = time.monotonic()
            self.workdir.mkdir(parents=True, exist_ok=True)
            try:
                self.controllers = self._bootstrap()
                self._runtime = Runtime(self.store, self.controllers)
                self._runtime.start()
                # A fresh bearer token per start, only in the kubeconfig (0600, never through a link):
                # other local users and processes cannot drive the API (and the pods it runs).
                # HTTPS with a fresh self-signed certificate: kubectl sends a token only over TLS.
                self.token = secrets.token_urlsafe(32)
                identity = new_identity()
                self._server = ApiServer(self.store, self.faults, self._port, token=self.token,
                                         tls=identity.server_context())
                self._server.start()
                document = kubeconfig_document(self._server.url, self.token, identity.cert_pem)
                write_atomic(self.kubeconfig_path, yaml.safe_dump(document, sort_keys=False), mode=0o600,
                             credentials=True)
            except BaseException:
                self._started = True
                self._stop_locked()
                raise
            self._started = True
            self.start_seconds = time.monotonic() - t0
            log.info("simulated cluster up at %s in %.2fs", self._server.url, self.start_seconds)
            return self

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        if self._server is not None:
            self._server.stop()
        if self._runtime is not None:
            self._runtime.stop()

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
