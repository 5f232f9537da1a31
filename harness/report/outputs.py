"""Write a report's files: report.json, junit.xml and report.html, side by side."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.redact import redact_tree
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.model import RunReport, dump_report


def write_text(path: Path, text: str) -> Path:
    """Write atomically, never through a symlink (`harness.fsio`): no half reports, no planted links."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    return path


def write_outputs(
    report: RunReport, out_dir: str | Path, *, html: bool = True, junit: bool = True
) -> dict[str, Path]:
    """Write report.json (always), junit.xml and report.html; returns kind -> path."""
    out = Path(out_dir)
    # Every string of the report passes through redaction: failure messages quote objects, URIs and
    # environment values, and a report travels further (CI artifacts, release records) than a log.
    report = RunReport.model_validate(redact_tree(report.model_dump(mode="json")))
    written = {"json": write_text(out / "report.json", dump_report(report))}
    if junit:
        written["junit"] = write_text(out / "junit.xml", render_junit(report))
    if html:
        written["html"] = write_text(out / "report.html", render_html(report))
    return written
