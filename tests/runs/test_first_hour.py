"""What a new user meets first: one preflight stop with a checklist, reports only from runs that ran."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.kube import kubeconfig
from harness.progress import current_phase, progress, waiting
from harness.providers import PreflightCheck
from harness.testkit.plugin import PREREQUISITES_SECTION, RUN_OUTPUTS, preflight_checklist

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]

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
    pytester.makeconftest("pytest_plugins = ['harness.testkit.plugin']\n" + FAKE_CLUSTER)
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
        PreflightCheck("tool.kind", False, "kind not found on PATH:\n install it"),
        PreflightCheck("docker", False, "the Docker daemon is not reachable: start Docker"),
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
    pytester.makeconftest("pytest_plugins = ['harness.testkit.plugin']\n")
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
    pytester.makeconftest("pytest_plugins = ['harness.testkit.plugin']\n")
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


# --- progress --------------------------------------------------------------------------------
class _Stream(io.StringIO):
    """A non-terminal stream that signals when a heartbeat line arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.beat = threading.Event()

    def write(self, text: str) -> int:
        if "still running" in text:
            self.beat.set()
        return super().write(text)


def test_a_phase_heartbeat_says_what_it_waits_for_and_how_long() -> None:
    # The clock is set by the test's steps, not by how often it is read: the heartbeat thread reads it
    # too, and on a busy machine it read the values of a call-counted clock in another order (run b1).
    now = [100.0]
    moment = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    out = _Stream()
    wanted = "still running after 30s; waiting for Model iris ModelReady (27s)"
    with progress("models", stream=out, interactive=False, now=lambda: moment, monotonic=lambda: now[0],
                  heartbeat_s=0.01) as phase:
        assert current_phase() is phase
        now[0] = 103.0
        with waiting("Model iris ModelReady"):
            now[0] = 130.0
            deadline = time.monotonic() + 30
            while wanted not in out.getvalue() and time.monotonic() < deadline:
                out.beat.wait(timeout=max(0.0, deadline - time.monotonic()))
                out.beat.clear()
        assert phase.waiting_for is None
    assert current_phase() is None
    lines = out.getvalue().splitlines()
    assert lines[0] == "2026-11-29T12:00:00Z harness: models started"
    assert ("2026-11-29T12:00:00Z harness: models: still running after 30s; "
            "waiting for Model iris ModelReady (27s)") in lines
    assert lines[-1].startswith("2026-11-29T12:00:00Z harness: models done in")


def test_a_phase_while_the_interpreter_exits_starts_no_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread started during interpreter finalization never runs, and Thread.start() then waits for it
    forever: a cleanup reached only at exit (run s8q3) hung in its first phase's heartbeat."""
    import sys

    started: list[str] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(sys, "is_finalizing", lambda: True)
    monkeypatch.setattr(threading.Thread, "start", start)
    out = _Stream()
    with progress("cleanup", stream=out, interactive=False, heartbeat_s=0.01):
        pass
    assert started == [] and "cleanup done in" in out.getvalue()
    monkeypatch.setattr(sys, "is_finalizing", lambda: False)
    with progress("cleanup", stream=out, interactive=False, heartbeat_s=30):
        pass
    assert started == ["heartbeat cleanup"]


def test_waiting_outside_a_phase_does_nothing() -> None:
    with waiting("nothing"):
        assert current_phase() is None


def test_lifecycle_progress_reaches_the_terminal_while_the_output_is_captured(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
import pytest
from harness.testkit.plugin import shown

@pytest.fixture(scope="session")
def slow_setup(pytestconfig):
    with shown(pytestconfig):
        print("PROGRESS-LINE cluster up")
    print("CAPTURED-LINE")
''')
    pytester.makepyfile(test_x="def test_a(slow_setup):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["PROGRESS-LINE cluster up"])
    assert "CAPTURED-LINE" not in result.stdout.str()


# --- kubeconfig and command-line conventions --------------------------------------------------
def _kubeconfig(path: Path, *, cluster: str, server: str, context: str | None, current: str | None = None,
                ca: str | None = None) -> Path:
    doc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, **({"certificate-authority": ca} if ca else {})}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": "u"}}] if context else [],
    }
    if current:
        doc["current-context"] = current
    path.write_text(json.dumps(doc))
    return path


def test_kubeconfig_resolution_names_what_it_tried(tmp_path: Path) -> None:
    a, b, missing = tmp_path / "a", tmp_path / "b", tmp_path / "missing"
    a.write_text("{}")
    b.write_text("{}")
    with pytest.raises(UsageError, match=rf"--kubeconfig {missing}: kubeconfig not found"):
        kubeconfig.resolve(missing, None, tmp_path)
    choice = kubeconfig.resolve(None, os.pathsep.join([str(missing), str(a), str(b), str(a)]), tmp_path)
    assert choice.files == (a, b) and choice.merged and choice.source == "$KUBECONFIG"
    with pytest.raises(UsageError, match=r"tried \$KUBECONFIG \(.*missing\); none of those files exists"):
        kubeconfig.resolve(None, str(missing), tmp_path)
    with pytest.raises(UsageError, match=r"tried .*\.kube/config \(KUBECONFIG is not set\)"):
        kubeconfig.resolve(None, None, tmp_path)
    assert kubeconfig.resolve(a, str(b), tmp_path).files == (a,)  # an explicit file is used alone


def test_merged_kubeconfig_follows_kubectls_first_wins_rules(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    first = _kubeconfig(tmp_path / "one" / "a", cluster="c", server="https://127.0.0.1:1", context="x",
                        current="y", ca="ca.crt")
    second = _kubeconfig(tmp_path / "b", cluster="c", server="https://127.0.0.1:2", context="y", current="x")
    merged = kubeconfig.load_merged(kubeconfig.resolve(None, f"{first}{os.pathsep}{second}", tmp_path))
    assert [c["cluster"]["server"] for c in merged["clusters"]] == ["https://127.0.0.1:1"]
    assert merged["clusters"][0]["cluster"]["certificate-authority"] == str(tmp_path / "one" / "ca.crt")
    assert [c["name"] for c in merged["contexts"]] == ["x", "y"] and merged["current-context"] == "y"
    one = kubeconfig.one_context(merged, None, "test")
    assert [c["name"] for c in one["contexts"]] == ["y"] and one["current-context"] == "y"
    assert [c["name"] for c in one["clusters"]] == ["c"]


def test_the_client_reads_every_file_of_a_kubeconfig_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config import Timeouts
    from harness.kube import Kube

    # The current context is set in the first file, its cluster defined only in the second.
    first = _kubeconfig(tmp_path / "a", cluster="other", server="https://127.0.0.1:9", context=None, current="y")
    second = _kubeconfig(tmp_path / "b", cluster="c", server="https://127.0.0.1:7", context="y")
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    kube = Kube.from_kubeconfig(None, None, Timeouts())
    try:
        assert kube._api.configuration.host == "https://127.0.0.1:7"
    finally:
        kube.close()


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert re.match(r"^python -m harness \d+\.\d+", capsys.readouterr().out)


def test_pytest_kind_options_are_not_offered() -> None:
    """pytest-kind's --cluster-name/--kind-image would be accepted and ignored: they are refused."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "--cluster-name", "x", "--collect-only", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 4 and "unrecognized arguments: --cluster-name" in proc.stderr, proc.stderr


# --- sim up as a playground -------------------------------------------------------------------
def test_sim_up_deploy_prints_a_load_command_that_works(tmp_path: Path) -> None:
    import queue
    import shlex
    import subprocess
    import sys

    from tests.kit.simproc import running_sim, stop

    with running_sim(ROOT / "profiles" / "sim.yaml", tmp_path, extra_args=("--deploy",)) as sim:
        # A reader thread: select() on the pipe cannot see lines already buffered by the text wrapper.
        lines: queue.Queue[str] = queue.Queue()
        stdout = sim.process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(line.strip()) for line in stdout], daemon=True).start()
        closing, seen = "", []
        for _ in range(200):  # the deployment's progress lines, then the closing line
            try:
                closing = lines.get(timeout=300)
            except queue.Empty:
                pytest.fail(f"sim up --deploy printed no closing line; last lines: {seen[-5:]}")
            seen.append(closing)
            if closing.startswith(("mesh endpoint", "error")):
                break
        match = re.search(r"try: (python -m harness load .*)$", closing)
        assert match, seen
        assert re.match(r"mesh endpoint http://127\.0\.0\.1:\d+; \d Server\(s\) and \d Model\(s\) ready", closing)
        assert any("models: still running after" in line or "models done in" in line for line in seen), seen
        command = shlex.split(match.group(1).replace("/tmp/load.json", str(tmp_path / "load.json")))
        proc = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True,
                              timeout=180, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads((tmp_path / "load.json").read_text())
        assert result["ok"] > 0 and result["model"] == "iris-gpu"
        assert stop(sim.process) == 0
        assert not sim.kubeconfig.exists(), "a stopped cluster's kubeconfig is removed"


# --- a report that agrees with itself ---------------------------------------------------------
def _report_with_sub_checks() -> Any:
    from harness.config import parse_profile
    from harness.report.builder import ReportBuilder

    profile = parse_profile({"name": "t", "cluster": {"provider": "sim"}}, "t")
    builder = ReportBuilder.from_profile(profile, "r1")
    builder.add_check("suites/test_gpu_visibility.py::test_a", "test_a", "pass", suite="gpu")
    builder.add_check("suites/test_gpu_visibility.py::test_a::gpu.count", "test_a / gpu.count", "pass", suite="gpu")
    builder.add_check("suites/test_gpu_visibility.py::test_a::gpu.uuids", "test_a / gpu.uuids", "pass", suite="gpu")
    builder.add_check("suites/test_placement.py::test_b[x]", "test_b[x]", "skip", suite="placement", reason="r")
    builder.add_check("harness::cleanup", "cleanup", "fail", suite="harness", reason="left a pod")
    return builder.finish()


def test_tests_and_checks_are_counted_apart() -> None:
    from harness.report.tally import counts_line, tally
    from harness.report.text import headline

    report = _report_with_sub_checks()
    counts = tally(report)
    found = (counts.tests["pass"], counts.tests["skip"], counts.sub_checks["pass"], counts.harness["fail"])
    assert found == (1, 1, 2, 1)
    assert counts_line(report) == ("tests: 1 passed, 1 skipped; checks inside them: 2 passed; "
                                   "harness checks: 1 failed")
    assert headline(report).endswith(": FAILED: " + counts_line(report))


def test_the_report_says_what_the_run_proved() -> None:
    from harness.report.html import render_html
    from harness.report.tally import proved

    text = proved(_report_with_sub_checks())
    assert "SIMULATED cluster" in text
    assert "It showed each pod seeing exactly the GPUs it was given, through NVML: 1 test(s) passed." in text
    assert "did not show GPU Servers landing on the tainted GPU pool" in text and "skipped" in text
    assert "It did not test inference latency" in text
    html = render_html(_report_with_sub_checks())
    assert f'<p class="proved">{text}</p>' in html.replace("&#x27;", "'")
    assert html.index('class="proved"') < html.index("<h2>Checks</h2>")


def test_probe_rows_carry_the_verdicts_of_their_test() -> None:
    from harness.config import parse_profile
    from harness.testkit.recording import Recorder

    profile = parse_profile({"name": "t", "cluster": {"provider": "sim"}}, "t")
    recorder = Recorder(profile, "r1", "p.yaml", Path("unused"))
    test = recorder.for_test("suites/test_gpu_visibility.py::test_pair")
    for pod, node in (("pair-a", "worker"), ("pair-b", "worker2")):
        test.probe({"metadata": {"name": pod, "namespace": "ns"}, "spec": {"nodeName": node}}, {"devices": []}, 1)
    test.check("gpu.disjoint", True, "pods on worker2 hold disjoint GPUs")
    test.check("gpu.count", False, "pod ns/pair-a on node worker sees 2 GPUs, asked for 1")
    test.check("gpu.count", True, "pod ns/pair-b on node worker2 sees 1 GPU")
    test.check("gpu.product", True, "products match")
    report = recorder.builder.snapshot()
    by_pod = {p.pod: [v.name.split(" / ")[1] for v in p.verdicts] for p in report.probes}
    assert by_pod == {"pair-a": ["gpu.count", "gpu.product"],
                      "pair-b": ["gpu.disjoint", "gpu.count[pair-b]", "gpu.product"]}
    assert len([c for c in report.checks if "gpu.count" in c.id]) == 2  # the second did not replace the first


def test_report_command_says_where_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    html = tmp_path / "r.html"
    assert main(["report", "--report", str(ROOT / "tests" / "data" / "reports" / "pass.json"),
                 "--html", str(html)]) == 0
    assert f"HTML report written to {html}" in capsys.readouterr().out.splitlines()


def test_a_tool_call_names_itself_in_the_phase_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import harness.kube.tools as tools_module
    from harness.kube.tools import ToolPaths, ToolRunner

    tool = tmp_path / "kind"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    seen: list[tuple[str, float] | None] = []
    real_run = subprocess.run
    with progress("provision", stream=io.StringIO(), interactive=False, heartbeat_s=None) as phase:

        def spy(*args: Any, **kwargs: Any) -> Any:
            seen.append(phase.waiting_for)
            return real_run(*args, **kwargs)

        monkeypatch.setattr(tools_module.subprocess, "run", spy)
        ToolRunner(30, ToolPaths(kind=str(tool))).run("kind", ["create", "cluster", "--name", "x", "--config", "y"])
        assert phase.waiting_for is None
    assert seen and seen[0] is not None and seen[0][0] == "`kind create cluster`"
