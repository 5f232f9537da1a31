"""The run lifecycle: preflight → provision → nodes → GPU stack → Seldon → deploy → (tests) → cleanup.

`ClusterSession` is what the session fixtures hold. Each phase is timed and recorded (report and
progress line); a failing phase raises `PhaseFailed` naming the phase and the cause, and `down()`
undoes, in reverse order, exactly what `up()` and `deploy()` did, whatever happened in between.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import render
from harness.checks.placement import Snapshot
from harness.checks.pulls import past_pull, pulling_text
from harness.config import Profile
from harness.errors import HarnessError, WaitGaveUp, WaitTimeout
from harness.k8s.conditions import condition, model_failed, model_ready, server_ready, server_refusal
from harness.k8s.seldon_api import SELDON_API, server_pod_selector
from harness.kube import Kube, KubeApiError, NodeGuard
from harness.kube.lease import RunLease
from harness.kube.stuck import StuckPods
from harness.progress import progress
from harness.providers import ClusterHandle, MeshEndpoint, PreflightCheck, ProviderOptions, get_provider
from harness.providers.common import simulated_marker
from harness.render.labels import RUN_ID_KEY
from harness.render.placement import detect_runtime_class

Obj = dict[str, Any]


class PhaseFailed(HarnessError):
    """A lifecycle phase failed; the message names the phase and the cause."""


@dataclass
class PhaseRecord:
    name: str
    started: float
    seconds: float
    status: str  # ok | failed
    detail: str = ""


@dataclass
class RunOptions:
    run_id: str
    workdir: Path
    keep_cluster: bool = False
    kubeconfig: Path | None = None


def resolve_runtime_class(profile: Profile, kube: Kube) -> Profile:
    """`gpu.runtime_class: detect` on a cluster the harness did not build: the cluster's NVIDIA
    RuntimeClass if it has one, else none (the NVIDIA runtime is the node default there). The run
    then renders every GPU pod from the resolved profile (`ClusterSession.profile`)."""
    if profile.gpu.runtime_class != "detect" or profile.cluster.provider == "kind":
        return profile
    try:
        found = detect_runtime_class(kube.list("node.k8s.io/v1", "RuntimeClass"))
    except KubeApiError as exc:
        if exc.status != 404:
            # Not being allowed to look is not "no class": on a cluster that needs one, GPU pods
            # would get no driver and the failure would be blamed on the cluster.
            raise HarnessError(
                f"{profile.source}: gpu.runtime_class: detect could not list RuntimeClasses (node.k8s.io/v1): "
                f"{exc.status or ''} {exc}".replace("  ", " ") + "; grant list on runtimeclasses "
                "(manifests/rbac/harness-rbac.yaml) or name the class in the profile (gpu.runtime_class: "
                "nvidia, or null when the NVIDIA runtime is the nodes' default)") from None
        found = None  # the cluster serves no RuntimeClass API: nothing to name
    return profile.model_copy(update={"gpu": profile.gpu.model_copy(update={"runtime_class": found})})


def diagnose_server(kube: Kube, server: str, namespace: str) -> str:
    """Why a Server is not Ready, in one line: its pods' scheduling and its StatefulSet's refusals."""
    reasons: list[str] = []
    live = kube.get(SELDON_API, "Server", server, namespace)
    for kind in ("StatefulSetOrDeploymentReady", "Ready"):
        cond = condition(live, kind)
        # Seldon's operator writes its errors (e.g. the StatefulSet's refusal) as the reason, not the message
        text = (cond or {}).get("message") or (cond or {}).get("reason")
        if cond and cond.get("status") != "True" and text:
            reasons.append(f"{kind}: {text}")
            break
    for event in kube.events(namespace=namespace, involved_name=server, involved_kind="StatefulSet"):
        if event.get("type") == "Warning":
            reasons.append(f"StatefulSet {event.get('reason')}: {event.get('message')}")
    pods = kube.list("v1", "Pod", namespace, label_selector=server_pod_selector(server))
    if not pods:
        reasons.append("no pods were created")
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase")
        waiting = [
            f"container {c.get('name')} {c['state']['waiting'].get('reason')} (restarts {c.get('restartCount', 0)})"
            for c in status.get("containerStatuses") or [] if (c.get("state") or {}).get("waiting")
        ]
        if waiting:
            reasons.append(f"pod {name} {phase}: {', '.join(waiting)}")
            continue
        if phase == "Running":
            continue
        scheduling = [e.get("message") for e in kube.events(namespace=namespace, involved_name=name,
                                                            involved_kind="Pod")
                      if e.get("reason") == "FailedScheduling"]
        reasons.append(f"pod {name} {phase}" + (f": {scheduling[-1]}" if scheduling else ""))
    return "; ".join(str(r) for r in reasons) or "no cause found in conditions, events or pods"


@dataclass
class ClusterSession:
    profile: Profile
    options: RunOptions
    on_phase: Callable[[PhaseRecord], None] = field(default=lambda record: None)
    kube: Kube | None = None
    guard: NodeGuard | None = None
    handle: ClusterHandle | None = None
    # The route to the mesh, looked up when a test first needs it (`mesh`); why it failed, if it did.
    mesh_found: MeshEndpoint | None = None
    mesh_error: str | None = None
    on_mesh: Callable[[MeshEndpoint], None] = field(default=lambda endpoint: None)
    facts: Any = None
    # Why the cluster counts as simulated, from its own API (`/version`), known right after provisioning.
    simulated_marker: str | None = None
    node_findings: list[str] = field(default_factory=list)
    deployed: list[Obj] = field(default_factory=list)
    deploy_error: str | None = None
    phases: list[PhaseRecord] = field(default_factory=list)
    # What the provider's preflight found; None until it ran (it runs once per session).
    preflight_findings: list[PreflightCheck] | None = None
    run_lease: RunLease | None = None

    def __post_init__(self) -> None:
        self.provider = get_provider(
            self.profile,
            ProviderOptions(
                run_id=self.options.run_id,
                keep_cluster=self.options.keep_cluster,
                workdir=self.options.workdir,
                kubeconfig=self.options.kubeconfig,
                tools=None,
            ),
        )

    # --- phases ------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.time()
        clock = time.monotonic()
        status, detail = "ok", ""
        try:
            with progress(name):
                yield
        except HarnessError as exc:  # UsageError and WaitTimeout included
            status, detail = "failed", str(exc)
            raise PhaseFailed(f"{name} failed: {exc}") from exc
        except Exception as exc:  # an unexpected error still names its phase
            status, detail = "failed", f"{type(exc).__name__}: {exc}"
            raise PhaseFailed(f"{name} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            record = PhaseRecord(name, started, time.monotonic() - clock, status, detail)
            self.phases.append(record)
            self.on_phase(record)

    def preflight(self) -> list[PreflightCheck]:
        """Run the provider's preflight once and return what is missing (empty: the cluster can come up).

        The pytest plugin calls this before collection so that an unusable environment stops the
        session with one checklist; `up()` reuses the result instead of probing again.
        """
        if self.preflight_findings is None:
            found: list[PreflightCheck] = []
            with contextlib.suppress(PhaseFailed), self.phase("preflight"):
                found = self._bounded_preflight()
                self.preflight_findings = found
                missing = [f for f in found if not f.ok]
                if missing:
                    raise HarnessError(f"{len(missing)} problem(s): " + "; ".join(f.message for f in missing))
        return [f for f in self.preflight_findings or [] if not f.ok]

    def _bounded_preflight(self) -> list[PreflightCheck]:
        """The provider's preflight within `timeouts.preflight_s`, whatever it waits on: an API server
        that accepts connections and never answers would otherwise hold each request for
        `request_s` and every retry again. Past the budget the preflight is a finding; its thread
        (reads only) is left to end on its own."""
        budget = self.profile.timeouts.preflight_s
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["found"] = list(self.provider.preflight())
            except Exception as exc:  # a crashing probe is itself a finding, not a traceback
                box["found"] = [PreflightCheck("preflight", False,
                                               f"the preflight itself failed: {type(exc).__name__}: {exc}")]

        worker = threading.Thread(target=run, name="preflight", daemon=True)
        worker.start()
        worker.join(budget)
        if worker.is_alive():
            return [PreflightCheck("preflight", False,
                                   f"the preflight did not finish within timeouts.preflight_s={budget:g} s (an API "
                                   "server or tool that does not answer?); check the cluster and the profile's "
                                   "kubeconfig")]
        found: list[PreflightCheck] = box.get("found", [])
        return found

    def up(self) -> None:
        problems = self.preflight()
        if problems:
            raise PhaseFailed("preflight failed: " + "; ".join(f.message for f in problems))
        with self.phase("provision"):
            self.handle = self.provider.provision()
            self.kube = Kube.from_kubeconfig(self.handle.kubeconfig, self.handle.context, self.profile.timeouts)
            self.guard = NodeGuard(self.kube, owner=self.options.run_id)
            # Ask the API server what it is at once: a run cut short in a later phase must still say
            # that a kubeconfig led it to the simulated cluster.
            self.simulated_marker = simulated_marker(self.kube.version_info())
            self.profile = resolve_runtime_class(self.profile, self.kube)
            self._take_run_lease()
        assert self.kube is not None and self.guard is not None
        with self.phase("prepare nodes"):
            self.node_findings = list(self.provider.prepare_nodes(self.kube, self.guard))
        with self.phase("GPU stack"):
            self.provider.install_gpu_stack(self.kube)
        with self.phase("Seldon"):
            self.provider.install_seldon(self.kube)
            self.facts = self.provider.cluster_facts(self.kube)

    @property
    def mesh(self) -> MeshEndpoint | None:
        """The route to the Seldon mesh, looked up on first use: only tests that send requests need it, so
        the placement and NVML suites run on a cluster the runner cannot reach the mesh of. None when the
        lookup failed (`mesh_error` says why; it is not retried)."""
        if self.mesh_found is None and self.mesh_error is None and self.kube is not None:
            try:
                with self.phase("mesh"):
                    self.mesh_found = self.provider.mesh_endpoint(self.kube)
                self.on_mesh(self.mesh_found)
            except PhaseFailed as exc:
                self.mesh_error = str(exc)
        return self.mesh_found

    def _take_run_lease(self) -> None:
        """Say in the cluster that this run is alive, and renew it on a timer: `harness cleanup` removes
        only runs whose Lease expired (nothing else can tell a dead run from a live one). The Lease
        names the namespaces this run creates objects in, so cleanup finds them without a profile."""
        lease = RunLease(self._kube(), self.options.run_id)
        lease.take([self.profile.seldon.namespace])
        self.run_lease = lease
        lease.start()

    def _release_run_lease(self) -> None:
        if self.run_lease is not None:
            self.run_lease.release()
            self.run_lease = None

    def deploy(self) -> None:
        """Apply the profile's Servers, wait for them, then its Models, and wait for those.

        A deployment failure is kept (not raised) so that every suite can report it as the cause
        while the placement suite still shows where things landed.
        """
        kube = self._kube()
        namespace = self.profile.seldon.namespace
        try:
            with self.phase("servers"):
                for server in self.profile.servers:
                    obj = render.server(self.profile, server, namespace, run_id=self.options.run_id)
                    self._create_owned(obj)
                timeouts = self.profile.timeouts
                for server in self.profile.servers:
                    stuck = StuckPods(kube, timeouts.pod_schedule_s, timeouts.image_pull_s)
                    try:
                        self._wait_server_ready(kube, server.name, namespace, stuck)
                    except WaitTimeout as exc:  # WaitGaveUp included; the type is kept
                        why = diagnose_server(kube, server.name, namespace)
                        raise type(exc)(f"{exc}; why: {why}") from None
            with self.phase("models"):
                for model in self.profile.models:
                    obj = render.model(self.profile, model, namespace, run_id=self.options.run_id)
                    self._create_owned(obj)
                for model in self.profile.models:
                    # Fail fast: waiting out the budget on a model Seldon already failed only delays the verdict.
                    kube.wait_for(
                        SELDON_API, "Model", model.name, namespace, model_ready,
                        timeout=self.profile.timeouts.model_ready_s, what=f"Model {model.name} ModelReady",
                        give_up=model_failed,
                    )
        except PhaseFailed as exc:
            self.deploy_error = str(exc)

    def _wait_server_ready(self, kube: Kube, name: str, namespace: str, stuck: StuckPods) -> None:
        """Server Ready within `server_ready_s`, counted from when its images are on the node: a budget
        that runs out while a pod still pulls (MLServer's images are several GB) is followed by a wait
        for the pull on its own budget (`image_pull_s`, "pulling image X") and a fresh readiness budget.
        Stuck pods (unschedulable, pull errors, crash loops) end either wait early (`StuckPods`)."""
        t = self.profile.timeouts
        selector = server_pod_selector(name)

        def ready() -> None:
            kube.wait_for(SELDON_API, "Server", name, namespace, server_ready,
                          timeout=t.server_ready_s, what=f"Server {name} Ready",
                          give_up=stuck.for_selector(namespace, selector, workload=("StatefulSet", name),
                                                     refused=server_refusal))

        try:
            ready()
            return
        except WaitGaveUp:
            raise
        except WaitTimeout:
            pulling = pulling_text(kube.list("v1", "Pod", namespace, label_selector=selector))
            if not pulling:
                raise
        with progress(f"Server {name}: {pulling}"):
            kube.wait_for_list("v1", "Pod", namespace, lambda items: all(past_pull(p) for p in items),
                               timeout=t.image_pull_s, what=f"Server {name}: {pulling}",
                               label_selector=selector, give_up=stuck.reason)
        ready()

    def _create_owned(self, obj: Obj) -> Obj:
        """Servers and Models are create-only. A create that finds the object already there (409)
        takes it only when it carries this run's id (our own create whose answer was lost);
        anything else is another run's or the cluster owners' object and is never patched. No
        check-then-write: two runs starting together cannot both take it."""
        kube = self._kube()
        meta = obj["metadata"]
        # Recorded before the request is sent: a Ctrl-C or SIGTERM that lands while the answer is on
        # its way must not leave an object that `down()` does not know of. `down()` deletes only what
        # carries this run's id, so an entry whose create never happened (or was refused) is harmless.
        self.deployed.append(obj)
        if self.run_lease is not None and meta.get("namespace"):
            self.run_lease.record_namespace(str(meta["namespace"]))
        try:
            return kube.create_only(obj)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
        live = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        owner = ((live or {}).get("metadata", {}).get("labels") or {}).get(RUN_ID_KEY)
        if live is not None and owner == self.options.run_id:
            return live  # ours already; create-only also means no patch (the RBAC grants none)
        self.deployed.remove(obj)
        held = (f"run {owner!r}" if owner else "no harness run (it was not created by the harness)") \
            if live is not None else "someone else (it was deleted again since)"
        raise HarnessError(
            f"{obj['kind']} {meta.get('namespace')}/{meta['name']} already exists and belongs to {held}; "
            "the harness never changes objects it did not create: rename it in the profile or wait for "
            "the other run to finish"
        )

    def down(self, failed: bool = False) -> list[str]:
        """Undo everything in reverse; never raises. Returns the problems met on the way.

        After a failure (`failed`, a failed phase or deployment) the provider first collects its
        evidence (kind: logs, node runtime configs, device plugin logs), while the cluster still exists."""
        problems: list[str] = []
        failed = failed or self.deploy_error is not None or any(p.status == "failed" for p in self.phases)
        collect = getattr(self.provider, "collect_evidence", None)
        if failed and collect is not None:
            with contextlib.suppress(PhaseFailed), self.phase("evidence"):
                problems.extend(collect())
        with contextlib.suppress(PhaseFailed), self.phase("cleanup"):
            if self.kube is not None:
                for obj in reversed(self.deployed):
                    meta = obj.get("metadata", {})
                    try:
                        live = self.kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
                        if ((live or {}).get("metadata", {}).get("labels") or {}).get(RUN_ID_KEY) != \
                                self.options.run_id:
                            continue  # never created (cut short) or not ours: nothing of this run to delete
                        self.kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"),
                                         wait=True, timeout=self.profile.timeouts.delete_s)
                        if obj["kind"] == "Server":
                            # Dependents go by background cascade: wait for the Server's pods too,
                            # so that "nothing left behind" holds when down() returns.
                            self.kube.wait_for_list(
                                "v1", "Pod", meta.get("namespace"), lambda pods: not pods,
                                timeout=self.profile.timeouts.delete_s,
                                what=f"pods of Server {meta['name']} gone",
                                label_selector=server_pod_selector(meta['name']),
                            )
                    except Exception as exc:  # keep going: nodes are restored regardless
                        problems.append(f"delete {obj['kind']}/{meta.get('name')}: {exc}")
                self.deployed.clear()
            if self.guard is not None:
                problems.extend(self.guard.restore_all())
            if self.run_lease is not None:
                self.run_lease.stop()  # no more renewals: left behind, the Lease expires and cleanup may act
            if not problems:  # with something left behind, the Lease lets `harness cleanup` find this run
                try:
                    self._release_run_lease()
                except Exception as exc:
                    problems.append(f"releasing the run Lease: {exc}")
            try:
                self.provider.teardown()
            except Exception as exc:
                problems.append(f"teardown: {exc}")
        return problems

    # --- views -------------------------------------------------------------------------
    def _kube(self) -> Kube:
        if self.kube is None:
            raise PhaseFailed("the cluster is not provisioned")
        return self.kube

    def client(self) -> Kube:
        """The API client of the provisioned cluster (PhaseFailed before `up()`)."""
        return self._kube()

    def snapshot(self) -> Snapshot:
        kube = self._kube()
        return Snapshot(
            nodes=kube.list("v1", "Node"),
            pods=kube.list("v1", "Pod"),
            servers=kube.list(SELDON_API, "Server", self.profile.seldon.namespace),
            models=kube.list(SELDON_API, "Model", self.profile.seldon.namespace),
        )

    @property
    def simulated(self) -> bool:
        """True for the sim provider and for any cluster whose API server identifies as the sim."""
        return (bool(self.handle and self.handle.simulated) or self.simulated_marker is not None
                or bool(getattr(self.facts, "simulated", False)))
