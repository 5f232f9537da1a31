"""Counting a report the way a reader counts: tests (as pytest counts them) apart from the checks
inside them, and a one-paragraph account of what the run proved.

A report's `checks` hold three kinds, told apart by their ids (no schema field is needed):
- a **test**: a pytest node id (`suites/test_x.py::test_y[param]`), one per test pytest ran;
- a **sub-check**: `<test id>::<rule>`, a verdict a test recorded inside itself (for example one
  GPU visibility rule per probe); its parent test is in the report;
- a **harness check**: anything else (`harness::cleanup`, `harness::evidence`), about the run itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from harness.report.model import CheckVerdict, RunReport

STATUSES = ("pass", "fail", "error", "skip")


def kind_of(check: CheckVerdict, ids: set[str]) -> str:
    """"test", "sub-check" or "harness" (see the module docstring)."""
    parent, sep, _ = check.id.rpartition("::")
    if sep and parent in ids:
        return "sub-check"
    if ".py::" in check.id:
        return "test"
    return "harness"


@dataclass(frozen=True)
class Tally:
    tests: Counter[str]
    sub_checks: Counter[str]
    harness: Counter[str]

    @staticmethod
    def words(counts: Counter[str]) -> str:
        parts = [f"{counts[s]} {label}" for s, label in
                 (("pass", "passed"), ("fail", "failed"), ("error", "errors"), ("skip", "skipped")) if counts[s]]
        return ", ".join(parts) or "none"


def tally(report: RunReport) -> Tally:
    ids = {c.id for c in report.checks}
    kinds: dict[str, Counter[str]] = {"test": Counter(), "sub-check": Counter(), "harness": Counter()}
    for check in report.checks:
        kinds[kind_of(check, ids)][check.status] += 1
    return Tally(kinds["test"], kinds["sub-check"], kinds["harness"])


def counts_line(report: RunReport) -> str:
    """`tests: 25 passed, 1 skipped; checks inside them: 14 passed` (the tests count equals pytest's)."""
    t = tally(report)
    line = f"tests: {Tally.words(t.tests)}"
    if sum(t.sub_checks.values()):
        line += f"; checks inside them: {Tally.words(t.sub_checks)}"
    if sum(t.harness.values()):
        line += f"; harness checks: {Tally.words(t.harness)}"
    return line


def _suite_status(report: RunReport, suites: tuple[str, ...]) -> tuple[int, int, int]:
    ids = {c.id for c in report.checks}
    tests = [c for c in report.checks if c.suite in suites and kind_of(c, ids) == "test"]
    return (sum(c.status == "pass" for c in tests), sum(c.status in ("fail", "error") for c in tests),
            sum(c.status == "skip" for c in tests))


def proved(report: RunReport) -> str:
    """One paragraph: what this run showed, what it did not, and on what kind of cluster."""
    where = ("on the built-in SIMULATED cluster (real Kubernetes semantics and a real MLServer; no real GPU, "
             "so nothing here is evidence about GPUs)") if report.simulated else f"on a {report.provider} cluster"
    sentences = [f"This run checked the profile {report.profile.name} {where}."]
    topics = (
        (("placement", "isolation", "scheduling"), "GPU Servers landing on the tainted GPU pool, nothing else "
                                                   "landing there, and every Model on the Server meant for it"),
        (("gpu",), "each pod seeing exactly the GPUs it was given, through NVML"),
        (("latency",), "inference latency through the Seldon mesh against the SLOs"),
    )
    for suites, what in topics:
        passed, failed, skipped = _suite_status(report, suites)
        if failed:
            sentences.append(f"It found problems with {what}: {failed} test(s) failed, {passed} passed.")
        elif passed:
            tail = f" ({skipped} skipped)" if skipped else ""
            sentences.append(f"It showed {what}: {passed} test(s) passed{tail}.")
        elif skipped:
            sentences.append(f"It did not show {what}: all {skipped} test(s) were skipped.")
        else:
            sentences.append(f"It did not test {what}.")
    if report.finished is None:
        sentences.append("The run did not finish, so its evidence is partial.")
    return " ".join(sentences)
