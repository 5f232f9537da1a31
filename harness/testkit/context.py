"""The test API the suites use, without pytest: the run context and the per-test `Scope`.

`harness.testkit.plugin` is a thin layer over this module (as pytest-kind's fixture is over its
`KindCluster`): it builds one `RunContext` from the command line, hands each test a `Scope`, and turns
`Scope.close()` errors into test failures. Anything else (a script, a notebook, another runner) can
drive a run the same way:

    ctx = RunContext(profile, profile_path, run_id, report_dir, keep_cluster=False, require_gpu=False,
                     kubeconfig=None, recorder=Recorder(...))
    session = cluster_session(ctx); session.up()
    scope = Scope(session, ctx, "my-check")
    try: scope.apply({...})
    finally: scope.close(); session.down()
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import Profile
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.kube import Kube, NodeGuard
    from harness.lifecycle import ClusterSession
    from harness.testkit.recording import Recorder

Obj = dict[str, Any]


@dataclass
class RunContext:
    """One run: the profile, where its outputs go, its id, and the cluster session once created."""

    profile: Profile
    profile_path: Path
    run_id: str
    report_dir: Path
    keep_cluster: bool
    require_gpu: bool
    kubeconfig: Path | None
    recorder: Recorder | None = None
    session: ClusterSession | None = None  # created by `cluster_session()`
    tests_started: int = 0  # tests whose setup began: a session that started none writes no report
    # --rehearse: the rehearsed profile's own provider (the run itself uses the simulated cluster).
    rehearsed_provider: str | None = None
    # `gpu_workers: auto`: the layout this run used (harness.layout.GpuLayout.describe()).
    gpu_layout: str | None = None
    # The `cluster` fixture's teardown while it holds a cluster that nothing has cleaned up yet; the
    # session finish runs it when pytest did not (testkit/plugin.py).
    cluster_teardown: Callable[[], None] | None = None

    @property
    def target_provider(self) -> str:
        """The provider the profile was written for: what provider-specific tests must follow."""
        return self.rehearsed_provider or self.profile.cluster.provider

    @property
    def records(self) -> Recorder:
        """The run's recorder (the report being built); a context without one is a programming error."""
        if self.recorder is None:
            raise HarnessError("this run context has no recorder")
        return self.recorder


def cluster_session(ctx: RunContext) -> ClusterSession:
    """The run's one `ClusterSession` (created on first use: the preflight and the cluster share it)."""
    if ctx.session is None:
        from harness.lifecycle import ClusterSession, RunOptions

        workdir = ctx.report_dir / "work"
        ctx.session = ClusterSession(
            ctx.profile,
            RunOptions(run_id=ctx.run_id, workdir=workdir.resolve(), keep_cluster=ctx.keep_cluster,
                       kubeconfig=ctx.kubeconfig),
            on_phase=ctx.records.phase,
            on_mesh=lambda mesh: ctx.records.builder.set_mesh(mesh.route, mesh.http_url, mesh.note),
        )
    return ctx.session


def namespace_name(run_id: str, nodeid: str) -> str:
    """`h-<run id>-<test name slug>-<hash>`: readable, unique per test, a valid DNS-1123 label."""
    digest = hashlib.sha256(nodeid.encode()).hexdigest()[:6]
    test = nodeid.split("::")[-1]
    slug = re.sub(r"[^a-z0-9]+", "-", test.lower()).strip("-")
    prefix = f"h-{run_id}-"
    room = 63 - len(prefix) - len(digest) - 1
    slug = slug[:room].strip("-") or "t"
    return f"{prefix}{slug}-{digest}"


@dataclass
class Cleanup:
    description: str
    action: Callable[[], None]


@dataclass
class Scope:
    """Objects one test creates; removed in reverse order of creation by `close()`."""

    session: ClusterSession
    run_context: RunContext
    nodeid: str
    cleanups: list[Cleanup] = field(default_factory=list)
    # Set by `harness.testkit.helpers.start_probe` once the NVML probe ConfigMap exists in the namespace.
    probe_configmap_ready: bool = False
    _namespace: str | None = None
    _guard: NodeGuard | None = None

    @property
    def kube(self) -> Kube:
        return self.session.client()

    @property
    def profile(self) -> Profile:
        # The session's: the run's profile with what the cluster decided resolved (gpu.runtime_class).
        resolved = getattr(self.session, "profile", None)
        return resolved if isinstance(resolved, Profile) else self.run_context.profile

    @property
    def run_id(self) -> str:
        return self.run_context.run_id

    @property
    def namespace(self) -> str:
        """The test's own namespace, created on first use and deleted (and waited on) afterwards."""
        if self._namespace is None:
            name = namespace_name(self.run_context.run_id, self.nodeid)
            self.apply({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": self.labels()},
            })
            self._namespace = name
            self._grant_namespace(name)
        return self._namespace

    def _grant_namespace(self, name: str) -> None:
        """Pods, pod logs and ConfigMaps are the run's only in its own namespaces: bind the run role
        there (manifests/rbac/README.md), and wait until the API server's authorizer sees it."""
        from harness.kube import KubeApiError
        from harness.render.rbac import access_review, run_namespace_binding

        self.apply(run_namespace_binding(name, self.run_context.run_id))

        def allowed() -> None:
            try:
                answer = self.kube.create(access_review(name, "create", "pods"))
            except KubeApiError as exc:
                if exc.status == 404:
                    return  # no SelfSubjectAccessReview API to ask (the sim has no authorizer)
                raise
            if not (answer.get("status") or {}).get("allowed"):
                raise KubeApiError(f"pods in {name} are not allowed yet (RoleBinding not yet seen)", 503)

        self.kube.retrier.call(f"RoleBinding in namespace {name}", allowed, idempotent=True)

    @property
    def created_namespace(self) -> str | None:
        """The test's namespace if it was created (evidence is collected from it), else None."""
        return self._namespace

    def labels(self) -> dict[str, str]:
        from harness import render

        return dict(render.labels_for_run(self.run_context.run_id))

    def add_cleanup(self, description: str, action: Callable[[], None]) -> None:
        self.cleanups.append(Cleanup(description, action))

    def apply(self, obj: Obj) -> Obj:
        """Create `obj` (labelled with the run id) and register its deletion."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(self.labels())
        kube = self.kube
        api_version, kind = obj["apiVersion"], obj["kind"]
        name, ns = meta["name"], meta.get("namespace")
        timeout = self.profile.timeouts.delete_s
        # Registered before the request: an interrupt while the answer is on its way must not leave
        # the object behind (a delete of one that was never made is a 404, which counts as done).
        self.add_cleanup(
            f"delete {kind}/{name}",
            lambda: kube.delete(api_version, kind, name, ns, wait=True, timeout=timeout),
        )
        created: Obj = kube.apply(obj)
        return created

    def node_guard(self) -> NodeGuard:
        """A node guard owned by this test: its changes are restored when the test ends."""
        if self._guard is None:
            from harness.kube import NodeGuard

            guard = NodeGuard(self.kube, owner=f"{self.run_context.run_id}")
            self._guard = guard

            def restore() -> None:
                problems = guard.restore_all()
                if problems:
                    raise HarnessError("; ".join(problems))

            self.add_cleanup("restore node changes", restore)
        return self._guard

    def close(self) -> list[str]:
        """Run the cleanups, newest first; returns the errors (never raises)."""
        errors = []
        while self.cleanups:
            cleanup = self.cleanups.pop()
            try:
                cleanup.action()
            except Exception as exc:
                errors.append(f"{cleanup.description}: {type(exc).__name__}: {exc}")
        return errors
