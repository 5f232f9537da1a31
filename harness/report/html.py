"""The HTML report: ONE self-contained file that opens offline.

Inline CSS, no scripts, no fonts or images from elsewhere: the plots are inline SVG written as text
(harness/report/svgplot.py).
Every value from the report is escaped. Artifact links are relative to the report directory.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from harness.k8s.sharing import MIG_STRATEGY_LABEL, gpu_resources, node_replicas
from harness.report import svgplot
from harness.report.model import CapacityEntry, CheckVerdict, LatencyEntry, RunReport
from harness.report.tally import Tally, proved, tally
from harness.report.text import SIMULATED_BANNER, headline

# Percentile plot positions in "nines": 50 % -> 0.3, 90 % -> 1, 99 % -> 2, 99.9 % -> 3.
_POINTS = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999))

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#1b1f24}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#fff3cd;border:2px solid #c69026;padding:.6em 1em;font-weight:bold;font-size:1.1em}
.pass{background:#dafbe1}.fail,.error{background:#ffebe9}.skip{background:#fff8c5}
.muted{color:#656d76}td.reason{white-space:pre-wrap;max-width:60em;font-size:.85em}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f6f8fa;padding:.5em;overflow:auto;max-height:30em}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(value: Any, num: bool = False) -> str:
    return f'<td class="num">{_e(value)}</td>' if num else f"<td>{_e(value)}</td>"


def _short_uuid(uuid: str) -> str:
    return uuid if len(uuid) <= 16 else f"{uuid[:12]}…"


def latency_plot_svg(entries: list[LatencyEntry]) -> str:
    """Latency by percentile (x in nines, log latency when all are above 0) for each measurement, with
    its SLO limits as short bars in the measurement's colour."""
    xs = [-math.log10(1 - q) for _, q in _POINTS]
    series: list[svgplot.Series] = []
    for i, entry in enumerate(entries):
        color = svgplot.PALETTE[i % len(svgplot.PALETTE)]
        lat = entry.result.latency_ms
        series.append(svgplot.Series(entry.load_key, xs, [float(getattr(lat, key)) for key, _ in _POINTS], color))
        if entry.slo is not None:
            limits = [(-math.log10(1 - q), getattr(entry.slo, f"{key}_ms"))
                      for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))]
            kept = [(x, float(limit)) for x, limit in limits if limit is not None]
            series.append(svgplot.Series(f"{entry.load_key} SLO", [x for x, _ in kept], [y for _, y in kept],
                                         color, marker="bar", in_legend=False))
    # Tails span orders of magnitude; a log axis keeps p50 readable next to p99.9.
    log = bool(entries) and all(float(getattr(e.result.latency_ms, k)) > 0 for e in entries for k, _ in _POINTS)
    return svgplot.render(svgplot.Chart(
        title="Latency by percentile (bars: SLO limits)",
        x_label="percentile (client-observed; open loop from the intended send time)", y_label="latency (ms)",
        series=series, x_ticks=list(zip(xs, ["50%", "90%", "95%", "99%", "99.9%"], strict=True)), y_log=log,
        description="latency by percentile"))


def capacity_plot_svg(entry: CapacityEntry) -> str:
    """Latency (p50/p95/p99) and achieved rate against the offered rate of one sweep."""
    steps = sorted(entry.steps, key=lambda s: s.offered_rate_rps)
    xs = [s.offered_rate_rps for s in steps]
    series = [svgplot.Series(f"{key} (ms)", xs, [s.latency_ms.get(key, 0.0) for s in steps], svgplot.PALETTE[i])
              for i, key in enumerate(("p50", "p95", "p99"))]
    series.append(svgplot.Series("achieved (req/s)", xs, [s.achieved_rate_rps for s in steps], svgplot.PALETTE[4],
                                 marker="x", right_axis=True, opacity=0.6))
    lines = []
    limit = entry.slo.get("p99_ms") or entry.slo.get("p95_ms") or entry.slo.get("p50_ms")
    if limit:
        lines.append(svgplot.RefLine(float(limit), f"SLO {limit:g} ms", "#7f7f7f"))
    # A sweep that never missed the SLO found no capacity, only a lower bound: no line marks one.
    if entry.capacity_rps > 0 and entry.bounded:
        lines.append(svgplot.RefLine(entry.capacity_rps, f"capacity {entry.capacity_rps:.1f}/s", "#000",
                                     vertical=True, dash="2 3"))
    return svgplot.render(svgplot.Chart(
        title=f"{entry.model} {entry.protocol}: latency against offered rate",
        x_label="offered rate (req/s, open loop)", y_label="latency (ms)", series=series,
        y_log=bool(steps) and all(s.latency_ms.get("p50", 0.0) > 0 for s in steps),
        right_label="achieved rate (req/s)", lines=lines, legend="upper left",
        description="latency against offered rate"))


def _telemetry_text(telemetry: dict[str, Any] | None) -> str:
    if not telemetry:
        return "-"
    parts = [f"{k} {v}" for k, v in sorted(telemetry.items()) if k != "simulated"]
    return ("SIMULATED " if telemetry.get("simulated") else "") + ", ".join(parts)


def _capacity(report: RunReport) -> str:
    if not report.capacity:
        return '<p class="muted">No capacity sweep (profile <code>load.sweep</code>).</p>'
    out = []
    for entry in report.capacity:
        slo = ", ".join(f"{k} {v:g}" for k, v in entry.slo.items() if v is not None)
        capacity = (f"<b>{entry.capacity_rps:.1f} req/s</b>" if entry.bounded else
                    f"&ge; {entry.capacity_rps:.1f} req/s (not bounded within the budget: no step missed the SLO)")
        head = (f"<p><b>{_e(entry.model)}</b> ({_e(entry.protocol)}, server {_e(entry.server or '-')}, node "
                f"{_e(entry.node or '-')}): capacity at SLO ({_e(slo)}) {capacity}; "
                f"{_e(entry.stop_reason)}; {len(entry.steps)} steps in {entry.elapsed_s:.1f} s"
                + ("" if entry.complete else f"; INCOMPLETE: {_e(entry.failure)}") + "</p>")
        rows, classes = [], []
        for i, st in enumerate(entry.steps, 1):
            classes.append("pass" if st.meets_slo else "fail")
            rows.append([
                _td(i, True), _td(st.phase), _td(f"{st.offered_rate_rps:.1f}", True),
                _td(f"{st.achieved_rate_rps:.1f}", True),
                *[_td(f"{st.latency_ms.get(k, 0.0):.2f}", True) for k in ("p50", "p95", "p99")],
                _td(f"{st.error_rate:.2%}", True), _td(f"{st.late_send_fraction:.1%}", True),
                _td(f"{st.goodput_fraction:.1%}", True),
                _td(f"{st.goodput_rps:.1f}", True), _td(_telemetry_text(st.telemetry)),
                _td("meets SLO" if st.meets_slo else "; ".join(st.reasons)),
            ])
        table = _table(["step", "phase", "offered rps", "achieved rps", "p50 ms", "p95 ms", "p99 ms", "errors",
                        "late sends", "goodput", "goodput rps", "GPU telemetry", "verdict"], rows, classes)
        out.append(f"{head}{table}<p>{capacity_plot_svg(entry)}</p>")
    return "".join(out)


def _summary(report: RunReport) -> str:
    t = tally(report)
    facts = report.cluster
    admission = {True: "yes", False: "no", None: "unknown"}[facts.gpu_toleration_admission]
    rows = [
        ["run id", report.run_id],
        ["simulated", f"YES: {facts.simulated_reason or 'simulated cluster'}" if report.simulated else "no"],
        ["provider", report.provider if report.rehearsal is None
         else f"{report.provider} (--rehearse of a {report.rehearsal.provider} profile)"],
        ["profile", f"{report.profile.name} ({report.profile.path or '-'})"],
        ["started", report.started.isoformat()],
        ["finished", report.finished.isoformat() if report.finished else "did not finish"],
        ["interrupted", f"YES: {report.interrupted_reason or 'stopped early'}" if report.interrupted else "no"],
        ["kubernetes", facts.kubernetes_version or "unknown"],
        ["seldon core", facts.seldon_version or "unknown"],
        ["GPU tolerations added by admission", admission],
        ["tests (as pytest counts them)", Tally.words(t.tests)],
        ["checks inside tests", Tally.words(t.sub_checks)],
        ["harness checks", Tally.words(t.harness)],
        ["GPUs", str(report.gpu_count)],
    ]
    if report.gpu_layout is not None:
        rows.append(["GPU layout (gpu_workers: auto)", report.gpu_layout.summary])
    if report.mesh is not None:
        rows.append(["mesh route", f"{report.mesh.route} {report.mesh.url}"
                     + (f": {report.mesh.note}" if report.mesh.note else "")])
    return (f'<p class="proved">{_e(proved(report))}</p><table>'
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>")


def _checks(checks: list[CheckVerdict]) -> str:
    if not checks:
        return '<p class="muted">No checks recorded.</p>'
    order = {"fail": 0, "error": 1, "skip": 2, "pass": 3}
    ordered = sorted(checks, key=lambda ch: (order[ch.status], ch.suite, ch.name))
    rows = [[_td(ch.status), _td(ch.suite), _td(ch.name), f'<td class="reason">{_e(ch.reason)}</td>',
             _td(f"{ch.duration_s:.2f}", True)]
            for ch in ordered]
    return _table(["status", "suite", "check", "reason", "seconds"], rows, [ch.status for ch in ordered])


def _placement(report: RunReport) -> str:
    if not report.placement:
        return '<p class="muted">No placement recorded.</p>'
    nodes = [n.name for n in report.nodes]
    for row in report.placement:
        if row.node and row.node not in nodes:
            nodes.append(row.node)
    roles = {n.name: n.role for n in report.nodes}
    header = ["pod", "owner", *[f"{n} ({roles.get(n, '?')})" for n in nodes], "pending", "verdict", "reason"]
    rows = []
    for row in report.placement:
        cells = [_td(f"{row.namespace}/{row.pod}"), _td(f"{row.owner_kind}/{row.owner}" if row.owner else "-")]
        for node in nodes:
            if row.node == node:
                mark = "●" + (f" {row.gpus_requested} GPU" if row.gpus_requested else "")
                uuids = ", ".join(_short_uuid(u) for u in row.gpu_uuids)
                cells.append(f"<td>{_e(mark)}" + (f"<br><code>{_e(uuids)}</code>" if uuids else "") + "</td>")
            else:
                cells.append("<td></td>")
        cells += [_td("●" if row.node is None else ""), _td(row.verdict), _td(row.reason)]
        rows.append(cells)
    return _table(header, rows, [r.verdict for r in report.placement])


def _gpu_inventory(report: RunReport) -> str:
    if not report.nodes:
        return '<p class="muted">No nodes recorded.</p>'
    holders: dict[str, list[str]] = {}
    # Holders at one moment only: the cluster snapshot taken as the run ended, before cleanup (the
    # placement rows). Probe pods held their GPUs earlier and are gone; their GPUs show under
    # "NVML probes", so they are not mixed in here. A time-sliced GPU may have several holders.
    for row in report.placement:
        for uuid in row.gpu_uuids:
            holders.setdefault(uuid, []).append(f"{row.namespace}/{row.pod}")
    rows = []
    for node in report.nodes:
        taints = ", ".join(f"{t.key}={t.value or ''}:{t.effect}" for t in node.taints) or "-"
        uuids = "<br>".join(
            f"<code>{_e(u)}</code>" + (f" → {_e(', '.join(holders[u]))}" if u in holders else "")
            for u in node.gpu_uuids
        ) or "-"
        pool = ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items())
                         if k.startswith("nvidia.com/") or k == "pool") or "-"
        rows.append([_td(node.name), _td(node.role), _td(node.gpu_count, True), _td(node.gpu_product or "-"),
                     _td(_sharing_text(node.labels, node.allocatable)), f"<td>{uuids}</td>", _td(taints), _td(pool)])
    when = report.finished.isoformat() if report.finished else "the end of the run"
    note = (f'<p class="muted">Holders as of the cluster snapshot taken before cleanup (report finished {_e(when)}); '
            "probe pods held GPUs earlier, see NVML probes.</p>")
    return note + _table(["node", "role", "GPUs", "product", "sharing (slices, replicas)", "GPU/MIG UUIDs → holder",
                          "taints", "GPU labels"], rows)


def _sharing_text(labels: dict[str, str], allocatable: dict[str, str]) -> str:
    """How a node shares its GPUs, from what it advertises and GFD's labels: MIG slices and replicas."""
    resources = gpu_resources(allocatable)
    if not resources:
        return "-"
    parts = []
    for name, units in sorted(resources.items()):
        base = name.removesuffix(".shared")
        devices = labels.get(f"{base}.count")
        replicas = node_replicas(labels, name)
        detail = [f"{devices} device(s)"] if devices else []
        if replicas is not None and replicas > 1:
            detail.append(f"x {replicas} replicas")
        parts.append(f"{name}={int(units)}" + (f" ({' '.join(detail)})" if detail else ""))
    strategy = labels.get(MIG_STRATEGY_LABEL)
    if strategy:
        parts.append(f"MIG {strategy}")
    return "; ".join(parts)


def _latency(report: RunReport) -> str:
    if not report.latency:
        return '<p class="muted">No latency measured.</p>'
    rows = []
    classes = []
    for entry in report.latency:
        r = entry.result
        lat = r.latency_ms
        slo_text = "; ".join(("ok: " if v.ok else "FAIL: ") + v.reason for v in entry.slo_verdicts) or "-"
        ok = all(v.ok for v in entry.slo_verdicts) and r.complete
        classes.append("pass" if ok else "fail")
        rows.append([
            _td(entry.model), _td(entry.server or "-"), _td(entry.node or "-"),
            _td(f"{r.protocol} {r.mode}, {_load_source(r)}"),
            _td("-" if r.offered_rate_rps is None else f"{r.offered_rate_rps:g}", True),
            _td(f"{r.achieved_rate_rps:.1f}", True), _td(f"{r.throughput_rps:.1f}", True),
            *[_td(f"{getattr(lat, k):.2f}", True) for k in ("p50", "p90", "p95", "p99", "p99_9", "max")],
            _td(f"{r.error_rate:.2%}", True), _td(r.late_sends, True), _td(_stable(r)),
            _td(f"{r.client_cpu_ms_per_request:.2f}", True),
            _td("complete" if r.complete else f"INCOMPLETE: {r.failure}"), _td(slo_text),
        ])
    table = _table(
        ["model", "server", "node", "load", "offered rps", "achieved rps", "throughput rps", "p50 ms", "p90 ms",
         "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "late sends", "stable", "client cpu ms/req",
         "run", "SLO verdicts"],
        rows, classes,
    )
    legend = ('<p class="muted">stable: the last three measurement windows agree within the stability '
              "tolerance (default ±10 %) on throughput and on p99, as perf_analyzer judges it; the windows "
              "that decided are listed. \"no\" does not fail a run (the SLO verdicts do); it says the figures "
              "moved while measured, so compare them with care (the gate widens p99's uncertainty to cover "
              "every window).</p>")
    return f"{table}{legend}<p>{latency_plot_svg(report.latency)}</p>"


def _load_source(result: Any) -> str:
    """Where the load came from: the runner, or generator pods (per pod: node, requests, late sends)."""
    source = result.source
    if source is None or source.where == "runner":
        return f"from the runner ({result.workers} process(es))"
    pods = "; ".join(f"pod {g.index} on {g.node or '?'}: {g.requests} req, {g.late_sends} late, "
                     f"cpu {g.client_cpu_ms_per_request:.3f} ms/req" + (f", FAILED: {g.failure}" if g.failure else "")
                     for g in source.generators)
    return f"from {source.pods} generator pod(s) of Job {source.namespace}/{source.job} ({pods})"


def _stable(result: Any) -> str:
    windows = "; ".join(f"{w.throughput_rps:g} rps p99 {w.p99_ms:.1f} ms" for w in result.windows[-3:])
    return ("yes" if result.stable else "no") + (f" (last windows: {windows}; {result.trials} trial(s))"
                                                 if windows else " (no complete window)")


def _probes(report: RunReport) -> str:
    if not report.probes:
        return '<p class="muted">No NVML probes recorded.</p>'
    parts = []
    for probe in report.probes:
        verdicts = ", ".join(f"{v.name}: {v.status}" for v in probe.verdicts) or "no verdicts"
        doc = json.dumps(probe.probe, indent=2, sort_keys=True)
        seen = _probe_sees(probe.probe)
        parts.append(
            f"<details><summary>{_e(probe.namespace)}/{_e(probe.pod)} on {_e(probe.node or '?')}: "
            f"{probe.gpus_requested} GPU requested; sees {_e(', '.join(seen) or 'none')}; {_e(verdicts)}"
            f"</summary><pre>{_e(doc)}</pre></details>"
        )
    shared: dict[str, list[str]] = {}
    for probe in report.probes:
        for uuid in _probe_sees(probe.probe, parents=False):
            shared.setdefault(uuid, []).append(f"{probe.namespace}/{probe.pod}")
    lines = [f"<li><code>{_e(u)}</code>: {_e(', '.join(p))}</li>" for u, p in sorted(shared.items()) if len(p) > 1]
    if lines:
        parts.append("<p>GPUs seen by more than one probe pod (time-slicing, or probes one after another):</p>"
                     f"<ul>{''.join(lines)}</ul>")
    return "".join(parts)


def _probe_sees(doc: dict[str, Any], parents: bool = True) -> list[str]:
    """The GPU or MIG UUIDs a probe document shows the pod (MIG devices with their parent GPU)."""
    out: list[str] = []
    for device in doc.get("devices") or []:
        if not isinstance(device, dict):
            continue
        migs = [m for m in device.get("mig_devices") or [] if isinstance(m, dict) and m.get("uuid")]
        if migs:
            out += [f"{m['uuid']} (on {device.get('uuid')})" if parents else str(m["uuid"]) for m in migs]
        elif device.get("uuid"):
            out.append(str(device["uuid"]))
    return out


def _phases(report: RunReport) -> str:
    if not report.phases:
        return '<p class="muted">No phases recorded.</p>'
    rows = [[_td(p.name), _td(p.started.isoformat()), _td("-" if p.seconds is None else f"{p.seconds:.1f}", True),
             _td(p.status), _td(p.error or "")] for p in report.phases]
    return _table(["phase", "started", "seconds", "status", "error"], rows,
                  ["pass" if p.status == "ok" else "fail" if p.status == "failed" else "" for p in report.phases])


def _artifacts(report: RunReport) -> str:
    if not report.artifacts:
        return '<p class="muted">No artifacts recorded.</p>'
    items = "".join(
        f'<li><a href="{_e(a.path)}">{_e(a.path)}</a> {_e(a.description)}</li>' for a in report.artifacts
    )
    return f"<ul>{items}</ul>"


def render_html(report: RunReport) -> str:
    line = headline(report)
    title = f"{SIMULATED_BANNER}: harness report {report.run_id}" if report.simulated else (
        f"harness report {report.run_id}"
    )
    banner = (
        f'<div class="banner">{SIMULATED_BANNER}: this run used the built-in simulated cluster. Placement and '
        "scheduling follow Kubernetes rules and latency is real MLServer on this machine, but no real GPU "
        "was involved. The release gate refuses this evidence.</div>"
        if report.simulated else ""
    )
    first = f"<!-- {line.replace('--', '- -')} -->\n"
    sections = [
        ("Summary", _summary(report)),
        ("Checks", _checks(report.checks)),
        ("Placement matrix", _placement(report)),
        ("GPU inventory", _gpu_inventory(report)),
        ("Latency", _latency(report)),
        ("Capacity at SLO", _capacity(report)),
        ("NVML probes", _probes(report)),
        ("Lifecycle phases", _phases(report)),
        ("Artifacts", _artifacts(report)),
    ]
    body = "".join(f"<h2>{_e(name)}</h2>{content}" for name, content in sections)
    return (
        f"{first}<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{banner}<h1>{_e(line)}</h1>{body}</body></html>\n"
    )
