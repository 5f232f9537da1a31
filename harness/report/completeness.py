"""Is the evidence complete? Pure rules over a report, used by the release gate.

A release must rest on a whole, uninterrupted run: every suite ran, every selected test has a
verdict, nothing was deselected, the run was not stopped early, and the run id is intact. Each
problem is `(kind, subject, detail)`; the gate turns them into refusals.
"""

from __future__ import annotations

import re

from harness.report.model import RunReport

# The suites a release needs (the categories `harness.testkit.recording.suite_of` gives the suite modules).
REQUIRED_SUITES = ("placement", "isolation", "scheduling", "gpu", "latency")
# The pytest plugin's run id rule (`--run-id`).
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")

Problem = tuple[str, str, str]


def completeness_problems(report: RunReport) -> list[Problem]:
    subject = f"run {report.run_id}"
    problems: list[Problem] = []
    if not _RUN_ID.match(report.run_id):
        problems.append(("tampered", subject, f"run id {report.run_id!r} is not one the harness makes"))
    if report.interrupted:
        problems.append(("interrupted", subject,
                         f"the run was stopped early ({report.interrupted_reason or 'no reason recorded'}); "
                         "its evidence is partial"))
    sel = report.selection
    if sel is None:
        problems.append(("partial", subject, "the report does not record which tests were selected, "
                                             "so it cannot show that every check ran"))
    else:
        if not sel.whole:
            how = []
            if sel.deselected:
                how.append(f"{sel.deselected} test(s) deselected")
            if sel.keyword:
                how.append(f"-k {sel.keyword!r}")
            if sel.markers:
                how.append(f"-m {sel.markers!r}")
            node_ids = [a for a in sel.args if "::" in a]
            if node_ids:
                how.append(f"single tests named: {', '.join(node_ids[:3])}")
            problems.append(("partial", subject,
                             f"only part of the suites was selected ({'; '.join(how) or ' '.join(sel.args)}); "
                             "a release needs `pytest suites/` whole"))
        judged = {c.id for c in report.checks}
        never = [t for t in sel.tests if t not in judged]
        if never:
            problems.append(("partial", subject,
                             f"{len(never)} selected test(s) have no verdict, e.g. {never[0]}"))
    ran = {c.suite for c in report.checks}
    missing = [s for s in REQUIRED_SUITES if s not in ran]
    if missing and report.checks:
        problems.append(("partial", subject,
                         f"suite(s) {', '.join(missing)} did not run; a release needs all of "
                         f"{', '.join(REQUIRED_SUITES)}"))
    return problems
