"""Report schema: the committed JSON schema is current, and reports built the way the pytest plugin
builds them (ReportBuilder fed Kubernetes dicts and `LoadResult.to_dict()`) validate against it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from harness.checks.placement import TableRow
from harness.config import load_profile
from harness.errors import UsageError
from harness.report import ReportBuilder, RunReport, dump_report, load_report, node_info, parse_report, schema_json

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "report.schema.json"
DATA = ROOT / "tests" / "data" / "reports"
GPU = "GPU-4f6a1c2e-8b0d-4e57-9a3c-1d2e3f405162"


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def load_result(model: str = "iris", p99: float = 12.0, **over: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "engine": "harness", "mode": "open", "protocol": "http", "endpoint": "http://127.0.0.1:30080",
        "model": model, "offered_rate_rps": 50.0, "concurrency": None, "poisson": False, "duration_s": 10.0,
        "warmup_s": 2.0, "workers": 1, "requests": 500, "ok": 500, "errors": {}, "error_rate": 0.0,
        "achieved_rate_rps": 49.9, "throughput_rps": 49.9, "late_sends": 0, "late_send_fraction": 0.0,
        "latency_ms": {"min": 1.0, "mean": 3.1, "p50": 3.0, "p90": 5.0, "p95": 6.0, "p99": p99, "p99_9": 20.0,
                       "max": 31.0},
        "stable": True, "trials": 1, "windows": [{"throughput_rps": 49.9, "p99_ms": p99}],
        "client_cpu_ms_per_request": 0.6, "complete": True, "failure": None,
    }
    result.update(over)
    return result


class _Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
        self.m = 100.0

    def now(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t

    def monotonic(self) -> float:
        self.m += 2.5
        return self.m


def plugin_style_report() -> RunReport:
    """What a sim session does: profile -> builder, phases, nodes, pods, checks, probe, load, finish."""
    profile = load_profile(ROOT / "profiles" / "sim.yaml")
    clock = _Clock()
    b = ReportBuilder.from_profile(
        profile, "sim-abc123", report_dir="reports", now=clock.now, monotonic=clock.monotonic
    )
    with b.phase("provision"):
        b.set_cluster(kubernetes_version="v1.32.0-sim", seldon_version=profile.seldon.version,
                      gpu_toleration_admission=False)
    b.set_nodes(
        [
            {"metadata": {"name": "cp", "labels": {"node-role.kubernetes.io/control-plane": ""}},
             "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
             "status": {"allocatable": {"cpu": "4"}}},
            {"metadata": {"name": "gpu-0", "labels": {"pool": "infer-srv", "nvidia.com/gpu.product": "NVIDIA-H200"}},
             "spec": {"taints": [{"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}]},
             "status": {"allocatable": {"cpu": "16", "nvidia.com/gpu": "2"}}},
        ],
        gpu_uuids={"gpu-0": [GPU, "GPU-2"]},
    )
    b.add_placement(
        {"metadata": {"name": "mlserver-gpu-0", "namespace": "seldon-mesh",
                      "labels": {"seldon-server-name": "mlserver-gpu"}},
         "spec": {"nodeName": "gpu-0", "containers": [{"name": "mlserver",
                                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
        "pass", gpu_uuids=[GPU],
    )
    b.add_placement_table([TableRow(
        pod="t-1/intruder", node="<pending>", node_taints="-", node_labels="-", gpus=0, owner="-",
        verdict="ok", why="-",
    )])
    b.add_check("suites/test_placement.py::test_a", "GPU server on pool", "pass", suite="placement", duration_s=0.5)
    b.add_check("suites/test_gpu.py::test_b", "probe", "skip", suite="gpu", reason="NVML unavailable")
    b.add_probe("probe-0", "t-2", {"schema_version": 1, "nvml_available": True, "devices": [{"uuid": GPU}]},
                [b.add_check("suites/test_gpu.py::test_c", "count", "pass", suite="gpu")], node="gpu-0",
                gpus_requested=1)
    with b.phase("load iris"):
        b.add_latency(load_result(), server="mlserver-gpu", node="gpu-0", gpu_uuids=[GPU], slo=profile.slo)
    b.add_artifact("evidence/t-1/events.txt", "events")
    return b.finish()


def test_committed_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_json(), (
        "docs/report.schema.json is stale: run `python -m harness.report.schema docs/report.schema.json`"
    )


def test_plugin_style_report_validates_against_committed_schema() -> None:
    report = plugin_style_report()
    data = json.loads(dump_report(report))
    validator().validate(data)
    assert data["simulated"] is True and data["provider"] == "sim" and data["schema_version"] == "1"
    assert [p["status"] for p in data["phases"]] == ["ok", "ok"]
    assert data["phases"][0]["seconds"] == pytest.approx(2.5)
    assert data["nodes"][1]["role"] == "gpu" and data["nodes"][1]["gpu_count"] == 2
    assert data["placement"][0]["owner_kind"] == "Server" and data["placement"][0]["gpus_requested"] == 1
    assert data["placement"][1] == {
        "pod": "intruder", "namespace": "t-1", "node": None, "gpus_requested": 0, "gpu_uuids": [],
        "owner_kind": None, "owner": None, "verdict": "pass", "reason": "",
    }
    assert {v["name"] for v in data["latency"][0]["slo_verdicts"]} >= {"max_error_rate"}


@pytest.mark.parametrize("name", ["pass.json", "baseline.json", "failed-check.json", "simulated.json"])
def test_crafted_reports_validate(name: str) -> None:
    validator().validate(json.loads((DATA / name).read_text(encoding="utf-8")))
    assert isinstance(load_report(DATA / name), RunReport)


def test_schema_rejects_what_the_model_rejects() -> None:
    data = json.loads((DATA / "pass.json").read_text(encoding="utf-8"))
    data["checks"][0]["status"] = "passed"
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(data)
    with pytest.raises(UsageError, match=r"checks\[0\]\.status"):
        parse_report(data, "r.json")


def test_json_round_trip_is_lossless() -> None:
    report = plugin_style_report()
    again = parse_report(json.loads(dump_report(report)), "x")
    assert again == report


BAD_INPUT = {
    "not-json.json": "not valid JSON at line 2",
    "wrong-version.json": "schema_version: expected '1'",
    "missing-field.json": "latency[0].result.latency_ms.p99: field required",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_unusable_reports_are_one_line_usage_errors(name: str) -> None:
    with pytest.raises(UsageError) as info:
        load_report(DATA / name)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(DATA / name))
    assert BAD_INPUT[name] in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "expected a JSON object at the top level, got list"),
        ({**json.loads((DATA / "pass.json").read_text(encoding="utf-8")), "bogus": 1}, "r.json: bogus: unknown field"),
        ({"schema_version": "1", "run_id": "x"}, "r.json: started: field required (and 3 more problems)"),
        ({"schema_version": 1}, "schema_version: expected '1'"),
    ],
)
def test_parse_errors_name_the_field(data: Any, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_report(data, "r.json")
    assert expected in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="report file not found"):
        load_report(tmp_path / "nope.json")
    with pytest.raises(UsageError, match="got a directory"):
        load_report(tmp_path)


def test_builder_replaces_a_check_with_the_same_id() -> None:
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p")
    b.add_check("t::x", "x", "pass", suite="gpu")
    b.add_check("t::x", "x", "fail", suite="gpu", reason="teardown found a leaked pod")
    assert [(c.id, c.status) for c in b.snapshot().checks] == [("t::x", "fail")]


def test_failed_phase_is_recorded_and_reraised() -> None:
    clock = _Clock()
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p", now=clock.now,
                      monotonic=clock.monotonic)
    with pytest.raises(TimeoutError), b.phase("seldon install"):
        raise TimeoutError("seldon-scheduler not Ready after 900s:\n last state Pending")
    phase = b.snapshot().phases[0]
    assert phase.status == "failed" and phase.seconds == pytest.approx(2.5)
    assert phase.error == "TimeoutError: seldon-scheduler not Ready after 900s: last state Pending"
    assert b.snapshot().finished is None


def test_artifacts_are_stored_relative(tmp_path: Path) -> None:
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p", report_dir=tmp_path)
    assert b.add_artifact(tmp_path / "evidence" / "a.log").path == "evidence/a.log"
    with pytest.raises(ValueError, match="not under the report directory"):
        b.add_artifact(tmp_path.parent / "elsewhere.log")
    with pytest.raises(ValueError, match="leaves the report directory"):
        b.add_artifact("../x.log")


def test_latency_slo_verdicts_come_from_the_slo_checks() -> None:
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p")
    entry = b.add_latency(load_result(p99=25.0), slo={"p99_ms": 20.0})
    bad = [v for v in entry.slo_verdicts if not v.ok]
    assert [v.name for v in bad] == ["p99_ms"]
    assert bad[0].reason == "p99 25.00 ms > SLO 20 ms"

    class Result:
        def to_dict(self) -> dict[str, Any]:
            return load_result(model="m2")

    assert b.add_latency(Result()).model == "m2"


def test_latency_result_must_match_the_contract() -> None:
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p")
    with pytest.raises(ValidationError):
        b.add_latency({**load_result(), "surprise": 1})
    broken = load_result()
    del broken["late_sends"]
    with pytest.raises(ValidationError):
        b.add_latency(broken)


def test_node_roles() -> None:
    assert node_info({"metadata": {"name": "a", "labels": {"node-role.kubernetes.io/control-plane": ""}}}).role == (
        "control-plane"
    )
    assert node_info({"metadata": {"name": "b", "labels": {"nvidia.com/gpu.present": "true"}}}).role == "gpu"
    assert node_info({"metadata": {"name": "c"}, "status": {"capacity": {"nvidia.com/gpu": "4"}}}).gpu_count == 4
    assert node_info({"metadata": {"name": "d"}, "status": {"allocatable": {"cpu": "2"}}}).role == "cpu"


def _field_names(schema: dict[str, Any]) -> set[str]:
    names = set(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        names |= set(definition.get("properties", {}))
    return names


def test_every_field_is_documented() -> None:
    doc = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    undocumented = sorted(n for n in _field_names(RunReport.model_json_schema()) if f"`{n}`" not in doc
                          and not re.search(rf"[{{,]\s*{re.escape(n)}\s*[,}}]", doc))
    assert not undocumented, f"docs/report.md does not mention: {undocumented}"


def test_crafted_reports_are_current(tmp_path: Path) -> None:
    """The committed crafted reports are what generate.py makes from the current model."""
    import runpy

    main = runpy.run_path(str(DATA / "generate.py"))["main"]
    main(tmp_path)
    for made in sorted(tmp_path.iterdir()):
        assert made.read_text(encoding="utf-8") == (DATA / made.name).read_text(encoding="utf-8"), (
            f"tests/data/reports/{made.name} is stale: run .venv/bin/python tests/data/reports/generate.py"
        )


def test_add_phase_records_phases_timed_elsewhere() -> None:
    b = ReportBuilder("r", provider="kind", simulated=False, profile_name="p")
    started = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    b.add_phase("models", started, 60.9, "ok")
    b.add_phase("cleanup", started, -0.0001, "failed", "RuntimeError: namespace stuck Terminating")
    phases = b.snapshot().phases
    assert [(p.name, p.status, p.seconds) for p in phases] == [("models", "ok", 60.9), ("cleanup", "failed", 0.0)]
    assert phases[1].error == "RuntimeError: namespace stuck Terminating"
