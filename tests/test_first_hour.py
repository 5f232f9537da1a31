"""What a new user meets first: one preflight stop with a checklist, reports only from runs that ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.providers import Finding
from harness.pytest_plugin import PREREQUISITES_SECTION, RUN_OUTPUTS, preflight_checklist

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]

# A session stand-in: the plugin's own fixtures run, the cluster is replaced (no provisioning).
FAKE_CLUSTER = '''
import pytest

class FakeSession:
    kube = None
    facts = None

@pytest.fixture(scope="session")
def cluster():
    return FakeSession()
'''


def _sim_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("pytest_plugins = ['harness.pytest_plugin']\n" + FAKE_CLUSTER)
    pytester.makefile(".yaml", profile=(ROOT / "profiles" / "sim.yaml").read_text())
    pytester.makepyfile(test_x="def test_a(cluster):\n    pass\n")


def test_readme_has_the_section_preflight_messages_name() -> None:
    headings = [line.lstrip("#").strip() for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("#")]
    assert PREREQUISITES_SECTION in headings
    kind_source = (ROOT / "harness" / "providers" / "kind.py").read_text()
    for section in re.findall(r"see README, '([^']+)'", kind_source):
        assert section in headings, section


def test_checklist_puts_each_problem_and_its_fix_on_a_line() -> None:
    text = preflight_checklist(Path("p.yaml"), "kind", [
        Finding("tool.kind", False, "kind not found on PATH:\n install it"),
        Finding("docker", False, "the Docker daemon is not reachable: start Docker"),
    ])
    lines = text.splitlines()
    assert lines[0].startswith("p.yaml: the kind cluster cannot be set up") and "2 thing(s)" in lines[0]
    assert lines[1:3] == ["  - kind not found on PATH: install it",
                          "  - the Docker daemon is not reachable: start Docker"]
    assert lines[-1] == "No test was run and no report was written."


def test_kind_without_tools_is_one_short_stop_with_the_usage_exit_code(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The issue's "done when": a kind profile without Docker prints at most 15 lines and exits 4."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no docker, kind, helm or kubectl
    pytester.makeconftest("pytest_plugins = ['harness.pytest_plugin']\n")
    pytester.makefile(".yaml", profile=(ROOT / "profiles" / "kind-cpu.yaml").read_text())
    pytester.makepyfile(test_x="def test_a(cluster):\n    pass\n\ndef test_b(cluster):\n    pass\n")
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out")
    assert result.ret == 4
    output = [line for line in result.outlines + result.errlines if line.strip()]
    assert len(output) <= 15, "\n".join(output)
    text = "\n".join(output)
    for tool in ("docker", "kind", "helm", "kubectl"):
        assert len(re.findall(rf"^  - {tool} not found on PATH", text, re.M)) == 1, text
    assert "ERROR at setup" not in text and "collected" not in text
    assert not (pytester.path / "out").exists()


def test_a_bad_profile_exits_with_the_same_code(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("pytest_plugins = ['harness.pytest_plugin']\n")
    pytester.makefile(".yaml", profile="cluster: {provider: nowhere}\n")
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider")
    assert result.ret == 4


def test_collect_only_and_empty_selections_leave_the_report_untouched(pytester: pytest.Pytester) -> None:
    _sim_project(pytester)
    args = ["--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out"]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    report = pytester.path / "out" / "report.json"
    before = report.read_bytes()
    assert [c["status"] for c in json.loads(before)["checks"]] == ["pass"]
    for extra in (["--collect-only"], ["-k", "nothing_matches_this"]):
        result = pytester.runpytest(*args, *extra)
        assert report.read_bytes() == before, extra
        result.stdout.fnmatch_lines(["harness: no test ran, so no report was written to out "
                                     "(the one there is from an earlier run)"])


def test_an_earlier_runs_outputs_are_removed_before_a_new_run(pytester: pytest.Pytester) -> None:
    _sim_project(pytester)
    out = pytester.path / "out"
    (out / "evidence" / "old_test").mkdir(parents=True)
    (out / "evidence" / "old_test" / "events.txt").write_text("from another run")
    (out / "junit.xml").write_text("<old/>")
    (out / "notes.txt").write_text("the user's own file")
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["harness: removed an earlier run's junit.xml, evidence from out"])
    assert not (out / "evidence" / "old_test").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert "<old/>" not in (out / "junit.xml").read_text()
    assert set(RUN_OUTPUTS) >= {"report.json", "junit.xml", "report.html", "evidence"}
