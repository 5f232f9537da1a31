"""The run report: one versioned, strictly validated document (`report.json`).

Everything a person or the release gate needs to judge a run lives here: where it ran (and whether
the cluster was simulated), the nodes and GPUs, where each pod landed, every check's verdict, the
NVML probe output, latency per model with the SLOs applied, and how long each lifecycle phase took.
Unknown keys are errors (`extra="forbid"`) so a typo in a producer fails loudly instead of silently
dropping evidence. `docs/report.md` documents every field; `docs/report.schema.json` is generated
from these classes (`python -m harness.report.schema docs/report.schema.json`).

Bump `SCHEMA_VERSION` on any change that an older reader could misread (renamed or re-typed field).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.checks.slo import SloVerdict
from harness.config import Slo
from harness.errors import UsageError
from harness.load.result import LoadResult
from harness.load.sweep import SweepResult
from harness.safeyaml import read_text
from harness.shapes import Record

SCHEMA_VERSION: Literal["1"] = "1"

Status = Literal["pass", "fail", "skip", "error"]
NodeRole = Literal["control-plane", "cpu", "gpu"]
PhaseStatus = Literal["ok", "failed", "running"]


class _Model(Record):
    """The report's own classes. The shapes that producers write (LoadResult, SweepResult, SloVerdict,
    the profile's Slo) are their classes, used here as field types: declared once, they cannot drift."""


class ProfileRef(_Model):
    """Which profile the run used."""

    name: str = Field(description="profile `name`")
    path: str | None = Field(default=None, description="profile file as given on the command line")


class ClusterInfo(_Model):
    """Facts about the cluster that change how the evidence is read."""

    kubernetes_version: str | None = Field(default=None, description="API server gitVersion, e.g. v1.32.2")
    seldon_version: str | None = Field(default=None, description="Seldon Core 2 version installed or found")
    gpu_toleration_admission: bool | None = Field(
        default=None,
        description="true when admission (ExtendedResourceToleration) adds GPU tolerations to GPU pods; "
        "null when unknown. Negative placement checks read differently when true.",
    )
    context: str | None = Field(default=None, description="kubeconfig context (existing clusters)")
    simulated_reason: str | None = Field(
        default=None,
        description="why the run counts as simulated: the profile's provider, or the API server's own marker "
        "(a kubeconfig pointing at `harness sim up`); null on real clusters",
    )


class NodeTaint(_Model):
    key: str
    value: str | None = None
    effect: str


class NodeInfo(_Model):
    """One node as the run saw it."""

    name: str
    role: NodeRole
    taints: list[NodeTaint] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    gpu_count: int = Field(default=0, ge=0, description="allocatable GPUs (nvidia.com/gpu)")
    gpu_product: str | None = Field(default=None, description="nvidia.com/gpu.product label")
    gpu_uuids: list[str] = Field(default_factory=list, description="GPU UUIDs where known (probe or sim)")
    allocatable: dict[str, str] = Field(default_factory=dict, description="status.allocatable as strings")


class PlacementRow(_Model):
    """Where one pod landed and whether that was right."""

    pod: str
    namespace: str
    node: str | None = Field(default=None, description="spec.nodeName; null while Pending")
    gpus_requested: int = Field(default=0, ge=0)
    gpu_uuids: list[str] = Field(default_factory=list, description="GPUs the pod holds where known")
    owner_kind: str | None = Field(default=None, description="Server for Seldon server pods, else the owner kind")
    owner: str | None = None
    verdict: Status
    reason: str = ""


class CheckVerdict(_Model):
    """One check (usually one test) and its outcome."""

    id: str = Field(description="stable identifier, e.g. the pytest node id")
    suite: str = Field(description="category: placement | isolation | scheduling | gpu | latency | seldon | ...")
    name: str
    status: Status
    reason: str = Field(default="", description="why it failed or was skipped; empty on pass")
    details: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = Field(default=0.0, ge=0)


class ProbeEntry(_Model):
    """The NVML probe's raw JSON from one pod and the visibility verdicts drawn from it."""

    pod: str
    namespace: str
    node: str | None = None
    gpus_requested: int = Field(default=0, ge=0)
    probe: dict[str, Any] = Field(description="the probe's JSON document, unchanged")
    verdicts: list[CheckVerdict] = Field(default_factory=list)


class LatencyEntry(_Model):
    """Latency of one model at one load."""

    model: str
    server: str | None = None
    node: str | None = None
    gpu_uuids: list[str] = Field(default_factory=list)
    result: LoadResult
    slo: Slo | None = Field(
        default=None, description="the SLO that was applied (the profile's `slo` or `model_slos[model]`)"
    )
    slo_verdicts: list[SloVerdict] = Field(default_factory=list)

    @property
    def load_key(self) -> str:
        """What makes two measurements comparable: model, protocol, loop and the load asked for."""
        r = self.result
        load = f"{r.offered_rate_rps:g} rps" if r.mode == "open" and r.offered_rate_rps is not None else (
            f"concurrency {r.concurrency}"
        )
        return f"{self.model} {r.protocol} {r.mode} {load}"


class CapacityEntry(SweepResult):
    """Capacity at SLO of one model: `SweepResult.to_dict()` plus where it ran."""

    server: str | None = None
    node: str | None = None


class Phase(_Model):
    """One lifecycle phase (cluster create, installs, model loads, load runs, teardown)."""

    name: str
    started: datetime
    seconds: float | None = Field(default=None, ge=0, description="null while running")
    status: PhaseStatus
    error: str | None = Field(default=None, description="exception summary when failed")


class Artifact(_Model):
    """A file the run left behind, relative to the report directory."""

    path: str = Field(description="relative POSIX path from the directory holding report.json")
    description: str = ""


class Selection(_Model):
    """What pytest was asked to run; the gate accepts only whole-suite runs."""

    args: list[str] = Field(default_factory=list, description="the paths and node ids given to pytest")
    keyword: str = Field(default="", description="-k expression, empty when none")
    markers: str = Field(default="", description="-m expression, empty when none")
    deselected: int = Field(default=0, ge=0, description="tests collected but deselected (-k, -m, --deselect, --lf)")
    tests: list[str] = Field(default_factory=list, description="node ids of every test selected to run")
    whole: bool = Field(description="true when the whole suites folder ran: only folder or module paths, "
                        "nothing deselected")


class Rehearsal(_Model):
    """A `--rehearse` run: the profile's shape on the simulated cluster instead of its own provider."""

    provider: Literal["sim", "kind", "existing"] = Field(description="the rehearsed profile's own provider")
    host_gpus_simulated: bool = Field(
        default=False, description="true when the host's GPUs were simulated too (kind profiles)"
    )


class GpuLayoutInfo(_Model):
    """How `cluster.nodes.gpu_workers: auto` laid out the GPU workers for this run (harness/layout.py)."""

    host_gpus: int = Field(ge=0, description="GPUs NVML showed on the host (simulated on --rehearse)")
    product: str = Field(description="nvidia.com/gpu.product of the GPU workers, from NVML")
    memory_mib: int = Field(ge=0)
    workers: int = Field(ge=0)
    gpus_per_worker: int = Field(ge=0)
    source: str = Field(description="where the host GPUs were read: host NVML, simulated host, ...")
    unused_gpus: int = Field(default=0, ge=0)
    left_out_servers: list[str] = Field(default_factory=list, description="GPU Servers the host had no GPUs for")
    left_out_models: list[str] = Field(default_factory=list, description="Models that could only land on those")
    summary: str = ""


class MeshRoute(_Model):
    """How the runner reached the Seldon mesh for the requests it sent (latency includes the route)."""

    route: Literal["loadbalancer", "profile", "nodeport", "tunnel"] = Field(
        description="the Service's LoadBalancer address, seldon.mesh_endpoint, kind's NodePort mapping, or a "
                    "port-forward tunnel through the API server")
    url: str
    note: str = Field(default="", description="for a tunnel: latencies include the API server hop")


class RunReport(_Model):
    """The whole run. Top-level document of report.json."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    run_id: str
    started: datetime
    finished: datetime | None = Field(default=None, description="null when the run was cut short")
    interrupted: bool = Field(
        default=False, description="true when the run was stopped early (a signal, -x or --maxfail)"
    )
    interrupted_reason: str | None = Field(default=None, description="what stopped the run early")
    selection: Selection | None = Field(default=None, description="what pytest was asked to run; null when unknown")
    rehearsal: Rehearsal | None = Field(
        default=None, description="set on `--rehearse` runs: the profile ran on the simulated cluster"
    )
    simulated: bool = Field(description="true when the evidence comes from the built-in simulated cluster")
    provider: Literal["sim", "kind", "existing"]
    profile: ProfileRef
    cluster: ClusterInfo = Field(default_factory=ClusterInfo)
    nodes: list[NodeInfo] = Field(default_factory=list)
    placement: list[PlacementRow] = Field(default_factory=list)
    checks: list[CheckVerdict] = Field(default_factory=list)
    probes: list[ProbeEntry] = Field(default_factory=list)
    latency: list[LatencyEntry] = Field(default_factory=list)
    capacity: list[CapacityEntry] = Field(
        default_factory=list, description="capacity at SLO per model (profile `load.sweep`)"
    )
    phases: list[Phase] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    gpu_layout: GpuLayoutInfo | None = Field(
        default=None, description="set when the profile's GPU workers were laid out from the host (`auto`)")
    mesh: MeshRoute | None = Field(default=None, description="how the runner reached the mesh; null when no "
                                   "test needed it")

    @property
    def gpu_count(self) -> int:
        return sum(n.gpu_count for n in self.nodes)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "skip": 0, "error": 0}
        for check in self.checks:
            out[check.status] += 1
        return out


def schema_json() -> str:
    """The JSON schema of `RunReport` as committed in docs/report.schema.json."""
    schema = RunReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"report.schema.v{SCHEMA_VERSION}.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _loc(error: Any) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error["loc"]).replace(".[", "[")


def parse_report(data: Any, source: str) -> RunReport:
    """Validate parsed JSON. Any problem is one `UsageError` line naming `source` and the field."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{source}: schema_version: expected {SCHEMA_VERSION!r} (this harness reads report schema "
            f"v{SCHEMA_VERSION}), got {version!r}"
        )
    try:
        return RunReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        got = first.get("input")
        shown = "" if first["type"] in ("missing", "extra_forbidden") else f", got {json.dumps(got, default=str)[:80]}"
        what = "unknown field" if first["type"] == "extra_forbidden" else first["msg"].lower()
        raise UsageError(f"{source}: {_loc(first)}: {what}{shown}{suffix}") from None


# Reports carry latency curves and per-check details: tens of MB at most, a dozen levels of nesting.
# Reading one costs memory in proportion to its values, not its bytes (a Python dict for `{}` is 30x
# its two bytes): the value count is capped as well, before parsing, so reading stays within a bound
# proportional to these caps (docs/report.md, "Reading reports": about 1 GiB at both caps).
MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_REPORT_VALUES = 4_000_000
MAX_REPORT_DEPTH = 32


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity, which JSON itself does not have.
    raise _NonFinite(name)


class _NonFinite(ValueError):
    pass


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: an edit could hide a verdict behind another one.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def value_count_bound(text: str) -> int:
    """An upper bound on the number of JSON values in `text`, counted without parsing it: every value
    but the first follows a ',' or ':' or opens with '[' / '{' (these characters inside strings only
    make the bound larger)."""
    return 1 + sum(text.count(c) for c in ",:[{")


def _surrogate(data: Any) -> str | None:
    """The first string (or key) holding a lone surrogate (`\\ud800` escapes decode to one): such text
    cannot be printed or written as UTF-8."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("ascii")[:60]
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def json_depth(data: Any) -> int:
    """Nesting depth of a JSON value, iteratively (deep input must not exhaust Python's stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_REPORT_DEPTH:
            return depth
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def load_report(path: str | Path) -> RunReport:
    """Read and validate a report.json; unusable input raises one `UsageError` line."""
    p = Path(path)
    # A regular UTF-8 file of bounded size (a FIFO or /dev/zero as --report must not hang the gate).
    text = read_text(p, "report file", limit=MAX_REPORT_BYTES)
    values = value_count_bound(text)
    if values > MAX_REPORT_VALUES:
        raise UsageError(f"{p}: holds up to {values} JSON values; a report has at most {MAX_REPORT_VALUES} "
                         "(reading more would take memory out of proportion to the file)")
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise UsageError(f"{p}: duplicate key {json.dumps(str(exc))} in one JSON object; a report names "
                         "each field once (JSON readers disagree on which copy counts)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except _NonFinite as exc:
        raise UsageError(f"{p}: {exc} is not a JSON number; every number in a report must be finite") from None
    except RecursionError:
        raise UsageError(f"{p}: JSON nested deeper than this reader allows; a report is at most "
                         f"{MAX_REPORT_DEPTH} levels deep") from None
    depth = json_depth(data)
    if depth > MAX_REPORT_DEPTH:
        raise UsageError(f"{p}: JSON nested {depth} levels deep; a report is at most {MAX_REPORT_DEPTH} levels deep")
    if "\\u" in text and (bad := _surrogate(data)) is not None:
        raise UsageError(f"{p}: a string holds a lone UTF-16 surrogate ({json.dumps(bad)}); a report is Unicode "
                         "text, and this cannot be printed or written")
    return parse_report(data, str(p))


def dump_report(report: RunReport) -> str:
    return report.model_dump_json(indent=2) + "\n"

