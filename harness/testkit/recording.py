"""What a suite run records for its report: test verdicts, placement, probes, latency, phases, evidence.

The pytest plugin owns one `Recorder` per session and hands each test a `TestRecorder`. Everything
ends in a `harness.report.ReportBuilder`; `write()` produces report.json, junit.xml and report.html.
Recording never fails a test: a recording error is kept as a note in the report instead.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.config import Profile
from harness.report.model import Status

SUITES = {
    "test_placement": "placement",
    "test_isolation": "isolation",
    "test_model_scheduling": "scheduling",
    "test_gpu_visibility": "gpu",
    "test_inference_latency": "latency",
}


def selection_of(args: list[str], keyword: str, markers: str, deselected: int, tests: list[str]) -> Any:
    """What pytest was asked to run. Whole: folders or modules only (no `::` node ids), no -k/-m
    that dropped anything, nothing deselected; the gate then also checks that every suite is there."""
    from harness.report.model import Selection

    whole = deselected == 0 and not any("::" in a for a in args)
    return Selection(args=args, keyword=keyword, markers=markers, deselected=deselected, tests=tests, whole=whole)


def suite_of(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return SUITES.get(module, module.removeprefix("test_") or "general")


def _safe_dir_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@dataclass
class TestRecorder:
    __test__ = False  # suites import it for their annotations: not a test class to collect

    recorder: Recorder
    nodeid: str
    details: dict[str, Any] = field(default_factory=dict)
    probes: list[Any] = field(default_factory=list)  # ProbeResults this test recorded
    seen: dict[str, int] = field(default_factory=dict)  # check id -> times recorded

    def note(self, key: str, value: Any) -> None:
        self.details[key] = value

    def check(self, check_id: str, ok: bool, reason: str) -> None:
        """A sub-verdict of this test (e.g. one GPU visibility rule), reported as a check of its own,
        and attached to the probes of this test that it judged (their pod or node is named in its
        reason; all of the test's probes when none is), so every probe row shows its verdicts."""
        # The probes it judged: those it names by pod, else by node, else all of this test's.
        named = ([p for p in self.probes if _names(reason, p.pod)]
                 or [p for p in self.probes if p.node and _names(reason, p.node)])
        # One rule checked for two probes is two checks: a repeated id would replace the first one.
        self.seen[check_id] = self.seen.get(check_id, 0) + 1
        if self.seen[check_id] > 1:
            check_id = f"{check_id}[{named[0].pod}]" if len(named) == 1 else f"{check_id}#{self.seen[check_id]}"
        verdict = self.recorder.builder.add_check(
            f"{self.nodeid}::{check_id}", f"{self.nodeid.split('::')[-1]} / {check_id}", "pass" if ok else "fail",
            suite=suite_of(self.nodeid), reason="" if ok else reason, details={"reason": reason},
        )
        for probe in named or self.probes:
            probe.verdicts.append(verdict)

    def placement(self, snapshot: Any) -> None:
        self.recorder.last_snapshot = snapshot

    def probe(self, pod: dict[str, Any], result: Any, requested: int) -> None:
        meta = pod.get("metadata", {})
        raw = getattr(result, "raw", None)
        self.probes.append(self.recorder.builder.add_probe(
            str(meta.get("name")), str(meta.get("namespace")), raw if isinstance(raw, dict) else _probe_dict(result),
            node=(pod.get("spec") or {}).get("nodeName"), gpus_requested=requested,
        ))

    def latency(self, model: str, result: dict[str, Any], slo: Any, verdicts: list[Any], *,
                server: str | None, node: str | None, gpu_uuids: list[str]) -> None:
        self.recorder.builder.add_latency(result, server=server, node=node, gpu_uuids=gpu_uuids, slo=slo,
                                          slo_verdicts=verdicts)

    def capacity(self, sweep: Any, *, server: str | None, node: str | None) -> None:
        self.recorder.builder.add_capacity(sweep, server=server, node=node)


def _names(text: str, name: str) -> bool:
    """`name` appears in `text` as a whole name (worker2 is not worker)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", text) is not None


def _probe_dict(result: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return {"repr": repr(result)}


class Recorder:
    def __init__(self, profile: Profile, run_id: str, profile_path: str, report_dir: Path) -> None:
        from harness.report.builder import ReportBuilder

        self.profile = profile
        self.run_id = run_id
        self.report_dir = report_dir
        self.builder = ReportBuilder.from_profile(profile, run_id, report_dir=report_dir)
        self.tests: dict[str, TestRecorder] = {}
        self.session: Any = None
        self.last_snapshot: Any = None
        self.problems: list[str] = []
        self.evidence_problems: list[str] = []

    # --- wiring ------------------------------------------------------------------------
    def attach(self, session: Any) -> None:
        self.session = session

    def cluster_identified(self, session: Any) -> None:
        """Record as soon as the cluster is known whether it is simulated, whichever provider reached it,
        so that even a run cut short right after provisioning leaves a report that says so."""
        facts = getattr(session, "facts", None)
        if getattr(facts, "simulated", False) or getattr(session, "simulated", False):
            self.builder.mark_simulated(getattr(facts, "simulated_reason", None)
                                        or getattr(session, "simulated_marker", None)
                                        or "the profile's provider is the simulated cluster")

    def for_test(self, nodeid: str) -> TestRecorder:
        return self.tests.setdefault(nodeid, TestRecorder(self, nodeid))

    def phase(self, record: Any) -> None:
        self.builder.add_phase(record.name, datetime.fromtimestamp(record.started, UTC), record.seconds,
                               "ok" if record.status == "ok" else "failed", record.detail or None)

    def cleanup_problems(self, problems: list[str]) -> None:
        self.problems.extend(problems)

    # --- pytest outcomes ---------------------------------------------------------------
    def test_outcome(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if report.when == "call" or report.failed or report.skipped:
            if report.passed and report.when != "call":
                return
            status: Status = "pass" if report.passed else "skip" if report.skipped else (
                "fail" if report.when == "call" else "error")
            reason = ""
            if report.skipped and isinstance(report.longrepr, tuple):
                reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            elif report.failed:
                # The crash line ("AssertionError: ...", "Failed: ...") reads well in a table; the
                # whole longrepr starts with fixture reprs.
                crash = getattr(report.longrepr, "reprcrash", None)
                reason = _first_lines(str(crash.message) if crash is not None else report.longreprtext)
            details = dict(self.tests.get(nodeid, TestRecorder(self, nodeid)).details)
            if report.when != "call":
                details["phase"] = report.when
            self.builder.add_check(nodeid, nodeid.split("::")[-1], status, suite=suite_of(nodeid), reason=reason,
                                   details=_jsonable(details), duration_s=report.duration)

    # --- cluster state and evidence ----------------------------------------------------
    def capture_cluster(self, session: Any) -> None:
        """Nodes, facts and the placement table as the run ends (before cleanup)."""
        try:
            self.cluster_identified(session)
            facts = session.facts
            if facts is not None:
                self.builder.set_cluster(
                    kubernetes_version=getattr(facts, "kubernetes_version", None),
                    seldon_version=getattr(facts, "seldon_version", None),
                    gpu_toleration_admission=getattr(facts, "gpu_toleration_admission", None),
                )
            snapshot = session.snapshot()
            uuids = {}
            for node in snapshot.nodes:
                notes = node["metadata"].get("annotations") or {}
                raw = notes.get("sim.harness.dev/gpu-uuids")
                if raw:
                    uuids[node["metadata"]["name"]] = [u for u in raw.split(",") if u]
                    # MIG devices of the simulated GPUs, so the inventory lists the slices too.
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        uuids[node["metadata"]["name"]] += [
                            str(m["uuid"]) for m in json.loads(notes.get("sim.harness.dev/mig-devices") or "[]")]
            pool = self.profile.gpu.pool_label
            self.builder.set_nodes(snapshot.nodes, uuids, self.profile.gpu.resource_name, (pool.key, pool.value))
            from harness.checks.placement import placement_table

            self.builder.add_placement_table(placement_table(snapshot, self.profile))
        except Exception as exc:  # evidence is best effort; the run's verdicts stand on their own
            self.evidence_problems.append(f"capturing the cluster state failed: {type(exc).__name__}: {exc}")

    def collect_evidence(self, session: Any, nodeid: str, namespaces: list[str]) -> None:
        if session.kube is None:
            return
        out = self.report_dir / "evidence" / _safe_dir_name(nodeid)
        try:
            from harness.kube.evidence import collect_evidence

            # On a cluster the harness did not create, and whose Seldon it did not install, the Seldon
            # namespace is shared: copy only this run's objects from it.
            shared = self.profile.cluster.provider == "existing" and not self.profile.seldon.install
            paths = collect_evidence(session.kube, out, namespaces, seldon_namespace=self.profile.seldon.namespace,
                                     only_run=self.run_id if shared else None)
            for path in paths:
                try:
                    self.builder.add_artifact(Path(path).resolve().relative_to(self.report_dir.resolve()),
                                              f"evidence for {nodeid}")
                except ValueError:
                    continue
        except Exception as exc:
            self.evidence_problems.append(f"evidence for {nodeid} failed: {type(exc).__name__}: {exc}")

    # --- output ------------------------------------------------------------------------
    def write(self) -> dict[str, Path]:
        from harness.report import write_outputs

        if self.problems:
            # Something the run created may have been left behind: that fails the run.
            self.builder.add_check("harness::cleanup", "cleanup left nothing behind", "fail", suite="harness",
                                   reason="; ".join(self.problems)[:2000])
        if self.evidence_problems:
            self.builder.add_check("harness::evidence", "evidence collected", "pass", suite="harness",
                                   details={"problems": self.evidence_problems})
        if self.session is not None:  # also when a signal cut the lifecycle short
            self.cluster_identified(self.session)
        report = self.builder.finish()
        paths: dict[str, Path] = write_outputs(report, self.report_dir)
        return paths


def _first_lines(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
