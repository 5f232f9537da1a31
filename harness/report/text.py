"""Plain-text summary of a run report (terminal, CI step summary). First line flags simulation."""

from __future__ import annotations

import re

from harness.report.model import RunReport
from harness.report.tally import counts_line, proved

SIMULATED_BANNER = "SIMULATED CLUSTER"

# What a terminal would act on: C0 controls but newline and tab, DEL, C1 controls (ESC/CSI/OSC start
# terminal sequences), Unicode bidi overrides that reorder what is shown, lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` safe for a terminal or CI log: every control character shown as a visible escape."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii")
                            if not 0xD800 <= ord(m.group()) <= 0xDFFF else f"\\u{ord(m.group()):04x}", text)


def headline(report: RunReport) -> str:
    """One line: what ran where and how it went; starts with SIMULATED CLUSTER on the sim."""
    c = report.counts()
    verdict = "FAILED" if c["fail"] or c["error"] else "passed"
    if report.interrupted:
        # Never "passed": what ran may all have passed, but the run did not finish.
        verdict = f"INTERRUPTED ({report.interrupted_reason or 'stopped early'})" + (
            ", FAILED" if verdict == "FAILED" else ", not a pass")
    where: str = report.provider
    if report.rehearsal is not None:
        where = f"{report.provider}, rehearsal of the {report.rehearsal.provider} profile"
    # Tests as pytest counts them, the checks recorded inside them apart (harness/report/tally.py).
    text = f"harness run {report.run_id} ({where}, profile {report.profile.name}): {verdict}: {counts_line(report)}"
    if report.simulated:
        return f"{SIMULATED_BANNER}: not evidence about real GPUs: {text}"
    return text


def summary_text(report: RunReport) -> str:
    lines = [headline(report), proved(report)]
    facts = report.cluster
    lines.append(
        f"kubernetes {facts.kubernetes_version or '?'}, seldon {facts.seldon_version or '?'}, "
        f"{len(report.nodes)} nodes, {report.gpu_count} GPUs"
    )
    for check in report.checks:
        if check.status != "pass":
            reason = " ".join(check.reason.split())
            reason = reason if len(reason) <= 200 else reason[:197] + "..."
            lines.append(f"  {check.status.upper():5} {check.suite}: {check.name}: {reason}")
    for entry in report.latency:
        lat = entry.result.latency_ms
        lines.append(
            f"  latency {entry.load_key}: p50 {lat.p50:.2f} ms, p95 {lat.p95:.2f} ms, p99 {lat.p99:.2f} ms, "
            f"achieved {entry.result.achieved_rate_rps:.1f} rps, errors {entry.result.error_rate:.2%}"
        )
    return "\n".join(lines) + "\n"
