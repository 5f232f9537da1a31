"""`ReportBuilder`: fills a `RunReport` piece by piece while a run goes on.

The pytest plugin owns one builder per session. It feeds Kubernetes-shaped dicts (nodes, pods) and
plain results (probe JSON, `LoadResult.to_dict()`), and calls `finish()` at the end; `snapshot()`
gives a valid report at any moment, so a run cut short still leaves evidence. Each piece is
validated when it is added, so a bad producer fails at its own call site, not at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from harness.checks.slo import SloVerdict, evaluate_slo
from harness.config import Slo
from harness.k8s.gpu import GPU_RESOURCE, is_gpu_node, node_gpu_count, pod_gpu_request
from harness.k8s.seldon_api import SERVER_NAME_LABEL
from harness.k8s.sharing import PRODUCT_LABEL
from harness.load.result import LoadResult
from harness.report.model import (
    Artifact,
    CapacityEntry,
    CheckVerdict,
    ClusterInfo,
    GpuLayoutInfo,
    LatencyEntry,
    MeshRoute,
    NodeInfo,
    NodeTaint,
    Phase,
    PlacementRow,
    ProbeEntry,
    ProfileRef,
    Rehearsal,
    RunReport,
    Selection,
    Status,
)

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


class _ToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class _ProfileLike(Protocol):
    """What the builder reads from `harness.config.Profile` (kept structural to stay decoupled)."""

    name: str
    source: str

    @property
    def simulated(self) -> bool: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_dict(value: Mapping[str, Any] | _ToDict) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return value.to_dict()


def _int(raw: Any) -> int:
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return 0


def node_info(node: Mapping[str, Any], gpu_uuids: Iterable[str] = (), resource: str = GPU_RESOURCE,
              pool: tuple[str, str] = ("", "")) -> NodeInfo:
    """A `NodeInfo` from a Kubernetes Node dict (as `kubectl get node -o json` shows it); `pool` is the
    profile's GPU pool label (key, value), so a pool node without GPU capacity still counts as GPU."""
    meta = node.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    status = node.get("status") or {}
    allocatable = {str(k): str(v) for k, v in (status.get("allocatable") or {}).items()}
    gpus = node_gpu_count(node, resource)
    taints = [
        NodeTaint(key=str(t.get("key", "")), value=t.get("value"), effect=str(t.get("effect", "")))
        for t in (node.get("spec") or {}).get("taints") or []
    ]
    role: Literal["control-plane", "cpu", "gpu"]
    if any(key in labels for key in CONTROL_PLANE_LABELS):
        role = "control-plane"
    elif is_gpu_node(node, pool[0], pool[1], resource):
        role = "gpu"
    else:
        role = "cpu"
    return NodeInfo(
        name=str(meta.get("name", "")),
        role=role,
        taints=taints,
        labels=labels,
        gpu_count=gpus,
        gpu_product=labels.get(PRODUCT_LABEL),
        gpu_uuids=list(gpu_uuids),
        allocatable=allocatable,
    )


def placement_row(
    pod: Mapping[str, Any],
    verdict: Status,
    reason: str = "",
    gpu_uuids: Iterable[str] = (),
    resource: str = GPU_RESOURCE,
) -> PlacementRow:
    """A `PlacementRow` from a Kubernetes Pod dict; the owner is the Seldon Server when labelled."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    owner_kind: str | None = None
    owner: str | None = None
    if labels.get(SERVER_NAME_LABEL):
        owner_kind, owner = "Server", str(labels[SERVER_NAME_LABEL])
    elif meta.get("ownerReferences"):
        ref = meta["ownerReferences"][0]
        owner_kind, owner = ref.get("kind"), ref.get("name")
    return PlacementRow(
        pod=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        node=(pod.get("spec") or {}).get("nodeName") or None,
        gpus_requested=pod_gpu_request(pod, resource),
        gpu_uuids=list(gpu_uuids),
        owner_kind=owner_kind,
        owner=owner,
        verdict=verdict,
        reason=reason,
    )


def _slo(slo: Slo | Mapping[str, Any] | None) -> Slo | None:
    if slo is None or isinstance(slo, Slo):
        return slo
    return Slo.model_validate(dict(slo))


def _slo_verdicts(result: dict[str, Any], slo: Slo | None, given: Iterable[Any] | None) -> list[SloVerdict]:
    if given is not None:
        return [v if isinstance(v, SloVerdict) else SloVerdict.model_validate(_as_dict(v)) for v in given]
    return evaluate_slo(result, slo) if slo is not None else []


class ReportBuilder:
    """Collects a run's evidence; every `add_*` validates its piece and returns the stored object."""

    def __init__(
        self,
        run_id: str,
        *,
        provider: Literal["sim", "kind", "existing"],
        simulated: bool,
        profile_name: str,
        profile_path: str | None = None,
        report_dir: str | Path | None = None,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self._report = RunReport(
            run_id=run_id,
            started=now(),
            simulated=simulated,
            provider=provider,
            profile=ProfileRef(name=profile_name, path=profile_path),
        )

    @classmethod
    def from_profile(
        cls, profile: Any, run_id: str, report_dir: str | Path | None = None, **kwargs: Any
    ) -> ReportBuilder:
        """Start a report for a `harness.config.Profile`."""
        return cls(
            run_id,
            provider=profile.cluster.provider,
            simulated=bool(profile.simulated),
            profile_name=profile.name,
            profile_path=profile.source,
            report_dir=report_dir,
            **kwargs,
        )

    # --- cluster --------------------------------------------------------------------------
    def set_cluster(
        self,
        *,
        kubernetes_version: str | None = None,
        seldon_version: str | None = None,
        gpu_toleration_admission: bool | None = None,
        context: str | None = None,
    ) -> ClusterInfo:
        """Record cluster facts; None keeps what was recorded before."""
        current = self._report.cluster.model_dump()
        update = {
            "kubernetes_version": kubernetes_version,
            "seldon_version": seldon_version,
            "gpu_toleration_admission": gpu_toleration_admission,
            "context": context,
        }
        current.update({k: v for k, v in update.items() if v is not None})
        self._report.cluster = ClusterInfo.model_validate(current)
        return self._report.cluster

    def set_selection(self, selection: Selection) -> None:
        self._report.selection = selection

    def mark_interrupted(self, reason: str) -> None:
        """The run stopped early; the first reason wins (later ones are consequences)."""
        self._report.interrupted = True
        if not self._report.interrupted_reason:
            self._report.interrupted_reason = reason

    def set_rehearsal(self, rehearsal: Rehearsal) -> None:
        self._report.rehearsal = rehearsal
        self.mark_simulated(f"--rehearse: the {rehearsal.provider} profile ran on the simulated cluster")

    def set_gpu_layout(self, layout: Mapping[str, Any]) -> None:
        self._report.gpu_layout = GpuLayoutInfo.model_validate(dict(layout))

    def set_mesh(self, route: str, url: str, note: str = "") -> None:
        self._report.mesh = MeshRoute.model_validate({"route": route, "url": url, "note": note})

    def mark_simulated(self, reason: str) -> None:
        """The evidence comes from a simulated cluster. One way only: nothing marks a run real again."""
        self._report.simulated = True
        if not self._report.cluster.simulated_reason:
            self._report.cluster = self._report.cluster.model_copy(update={"simulated_reason": reason})

    def set_nodes(
        self,
        nodes: Iterable[Mapping[str, Any] | NodeInfo],
        gpu_uuids: Mapping[str, Iterable[str]] | None = None,
        resource: str = GPU_RESOURCE,
        pool: tuple[str, str] = ("", ""),
    ) -> list[NodeInfo]:
        """Replace the node list; Node dicts are converted, `gpu_uuids` maps node name -> UUIDs."""
        uuids = gpu_uuids or {}
        out: list[NodeInfo] = []
        for node in nodes:
            if isinstance(node, NodeInfo):
                out.append(node)
            else:
                name = str((node.get("metadata") or {}).get("name", ""))
                out.append(node_info(node, uuids.get(name, ()), resource, pool))
        self._report.nodes = out
        return out

    # --- placement and checks -------------------------------------------------------------
    def add_placement(
        self,
        pod: Mapping[str, Any] | PlacementRow,
        verdict: Status = "pass",
        reason: str = "",
        gpu_uuids: Iterable[str] = (),
    ) -> PlacementRow:
        row = pod if isinstance(pod, PlacementRow) else placement_row(pod, verdict, reason, gpu_uuids)
        self._report.placement.append(row)
        return row

    def add_placement_table(
        self, rows: Iterable[Any], gpu_uuids: Mapping[str, Iterable[str]] | None = None
    ) -> list[PlacementRow]:
        """Rows of `harness.checks.placement.placement_table` (pod "ns/name", owner "Kind/name",
        verdict ok|WRONG, why); `gpu_uuids` maps "ns/name" -> UUIDs."""
        uuids = gpu_uuids or {}
        added = []
        for row in rows:
            namespace, _, pod = str(row.pod).rpartition("/")
            kind, _, owner = str(row.owner).partition("/")
            why = str(row.why)
            added.append(self.add_placement(PlacementRow(
                pod=pod,
                namespace=namespace,
                node=None if row.node in ("", "<pending>") else str(row.node),
                gpus_requested=_int(row.gpus),
                gpu_uuids=list(uuids.get(str(row.pod), ())),
                owner_kind=kind if owner else None,
                owner=owner or None,
                verdict="pass" if str(row.verdict).lower() == "ok" else "fail",
                reason="" if why == "-" else why,
            )))
        return added

    def add_check(
        self,
        check: CheckVerdict | str,
        name: str | None = None,
        status: Status | None = None,
        *,
        suite: str = "general",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        duration_s: float = 0.0,
    ) -> CheckVerdict:
        """`add_check(CheckVerdict(...))` or `add_check(id, name, status, suite=..., reason=...)`.

        A check id seen before replaces the earlier verdict (a test's call phase can refine setup's).
        """
        if isinstance(check, CheckVerdict):
            verdict = check
        else:
            if status is None:
                raise TypeError("add_check(id, name, status): status is required")
            verdict = CheckVerdict(
                id=check,
                suite=suite,
                name=name or check,
                status=status,
                reason=reason,
                details=dict(details or {}),
                duration_s=max(0.0, duration_s),
            )
        checks = self._report.checks
        for i, existing in enumerate(checks):
            if existing.id == verdict.id:
                checks[i] = verdict
                return verdict
        checks.append(verdict)
        return verdict

    def add_probe(
        self,
        pod: str,
        namespace: str,
        probe: Mapping[str, Any],
        verdicts: Iterable[CheckVerdict] = (),
        *,
        node: str | None = None,
        gpus_requested: int = 0,
    ) -> ProbeEntry:
        result = ProbeEntry(
            pod=pod,
            namespace=namespace,
            node=node,
            gpus_requested=gpus_requested,
            probe=dict(probe),
            verdicts=list(verdicts),
        )
        self._report.probes.append(result)
        return result

    def add_latency(
        self,
        result: Mapping[str, Any] | _ToDict,
        *,
        server: str | None = None,
        node: str | None = None,
        gpu_uuids: Iterable[str] = (),
        slo: Slo | Mapping[str, Any] | None = None,
        slo_verdicts: Iterable[Any] | None = None,
    ) -> LatencyEntry:
        """Record a `LoadResult` (or its `to_dict()`); SLO verdicts are computed when not given.

        `slo` is a `harness.config.Slo` or a mapping with its keys.
        """
        data = _as_dict(result)
        applied = _slo(slo)
        entry = LatencyEntry(
            model=str(data.get("model", "")),
            server=server,
            node=node,
            gpu_uuids=list(gpu_uuids),
            result=LoadResult.model_validate(data),
            slo=applied,
            slo_verdicts=_slo_verdicts(data, applied, slo_verdicts),
        )
        self._report.latency.append(entry)
        return entry

    def add_capacity(self, sweep: Mapping[str, Any] | _ToDict, *, server: str | None = None,
                     node: str | None = None) -> CapacityEntry:
        """Record a capacity sweep (`SweepResult` or its `to_dict()`)."""
        data = dict(_as_dict(sweep))
        entry = CapacityEntry.model_validate({**data, "server": server, "node": node})
        self._report.capacity.append(entry)
        return entry

    # --- phases and artifacts -------------------------------------------------------------
    @contextmanager
    def phase(self, name: str, *, show: bool = False, stream: Any = None) -> Iterator[Phase]:
        """Time a lifecycle phase; its status is `failed` (and the exception re-raised) on error.

        `show=True` also reports it through `harness.progress.progress` (spinner or log lines).
        """
        record = Phase(name=name, started=self._now(), status="running")
        self._report.phases.append(record)
        started = self._monotonic()
        try:
            if show:
                from harness.progress import progress

                with progress(name, stream=stream):
                    yield record
            else:
                yield record
        except BaseException as exc:
            record.seconds = max(0.0, self._monotonic() - started)
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            raise
        record.seconds = max(0.0, self._monotonic() - started)
        record.status = "ok"

    def add_phase(
        self,
        name: str,
        started: datetime,
        seconds: float | None,
        status: Literal["ok", "failed", "running"],
        error: str | None = None,
    ) -> Phase:
        """Record a phase timed elsewhere (e.g. the lifecycle's own phase records)."""
        record = Phase(name=name, started=started, seconds=None if seconds is None else max(0.0, seconds),
                       status=status, error=error)
        self._report.phases.append(record)
        return record

    def add_artifact(self, path: str | Path, description: str = "") -> Artifact:
        """Index a file; absolute paths must lie under `report_dir` and are stored relative to it."""
        p = Path(path)
        if p.is_absolute():
            if self.report_dir is None:
                raise ValueError(f"artifact {p} is absolute and the builder has no report_dir to relate it to")
            try:
                p = p.relative_to(self.report_dir.resolve() if not self.report_dir.is_absolute() else self.report_dir)
            except ValueError:
                raise ValueError(f"artifact {p} is not under the report directory {self.report_dir}") from None
        rel = PurePosixPath(p.as_posix())
        if ".." in rel.parts:
            raise ValueError(f"artifact path {rel} leaves the report directory")
        artifact = Artifact(path=str(rel), description=description)
        self._report.artifacts.append(artifact)
        return artifact

    # --- result ---------------------------------------------------------------------------
    def snapshot(self) -> RunReport:
        """A validated deep copy of the report so far (`finished` stays null)."""
        return RunReport.model_validate(self._report.model_dump())

    def finish(self, finished: datetime | None = None) -> RunReport:
        """Stamp the end time and return the validated report."""
        self._report.finished = finished or self._now()
        return self.snapshot()
