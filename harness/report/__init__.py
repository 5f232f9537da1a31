"""Run reports (report.json, JUnit, HTML) and the release gate. Schema: docs/report.md."""

from harness.report.builder import ReportBuilder, node_info, placement_row
from harness.report.gate import Comparison, GateFailure, GateVerdict, format_verdict, gate
from harness.report.model import (
    SCHEMA_VERSION,
    CheckVerdict,
    LatencyEntry,
    RunReport,
    dump_report,
    load_report,
    parse_report,
    schema_json,
)
from harness.report.outputs import write_outputs
from harness.report.text import summary_text

__all__ = [
    "SCHEMA_VERSION",
    "CheckVerdict",
    "Comparison",
    "GateFailure",
    "GateVerdict",
    "LatencyEntry",
    "ReportBuilder",
    "RunReport",
    "dump_report",
    "format_verdict",
    "gate",
    "load_report",
    "node_info",
    "parse_report",
    "placement_row",
    "schema_json",
    "summary_text",
    "write_outputs",
]
