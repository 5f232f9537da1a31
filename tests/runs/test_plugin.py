"""The pytest plugin, exercised with pytester: options, markers, scope cleanup order, failure handling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.testkit.context import namespace_name

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]

# A stand-in session: the kube records what the scope asks of it, so the tests see the order of
# creation and deletion without a cluster.
FAKE_CLUSTER = '''
import pytest

class FakeKube:
    def __init__(self, log, fail_delete=()):
        self.log, self.fail_delete = log, set(fail_delete)
    def apply(self, obj):
        self.log.append(("apply", obj["kind"], obj["metadata"]["name"]))
        return obj
    def delete(self, api_version, kind, name, namespace=None, wait=True, timeout=None):
        self.log.append(("delete", kind, name))
        if name in self.fail_delete:
            raise RuntimeError(f"boom deleting {name}")
    def create(self, obj):  # only the SelfSubjectAccessReview after binding the run role
        assert obj["kind"] == "SelfSubjectAccessReview", obj
        self.log.append(("create", obj["kind"], obj["spec"]["resourceAttributes"]["namespace"]))
        return {"status": {"allowed": True}}
    class retrier:
        @staticmethod
        def call(what, fn, idempotent):
            return fn()

class FakeSession:
    def __init__(self, kube):
        self.kube = kube
        self.facts = None

    def client(self):
        return self.kube

LOG = []

@pytest.fixture(scope="session")
def cluster():
    return FakeSession(FakeKube(LOG, fail_delete={"{fail}"}))

def pytest_sessionfinish(session):
    import json, pathlib
    pathlib.Path("log.json").write_text(json.dumps(LOG))
'''


def _setup(pytester: pytest.Pytester, fail_delete: str = "none") -> None:
    pytester.makeconftest(
        "pytest_plugins = ['harness.testkit.plugin']\n" + FAKE_CLUSTER.replace("{fail}", fail_delete)
    )
    pytester.makefile(".yaml", profile=(ROOT / "profiles" / "sim.yaml").read_text())


def _log(pytester: pytest.Pytester) -> list[list[str]]:
    import json

    return json.loads((pytester.path / "log.json").read_text())  # type: ignore[no-any-return]


def test_cleanup_runs_in_reverse_order_of_creation(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x='''
def test_creates(scope):
    ns = scope.namespace
    scope.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first", "namespace": ns}})
    scope.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "second", "namespace": ns}})
''')
    result = pytester.runpytest("--profile", "profile.yaml", "--run-id", "r1", "-p", "no:cacheprovider",
                                "--report-dir", "out")
    result.assert_outcomes(passed=1)
    log = _log(pytester)
    names = [entry[2] for entry in log]
    # the namespace, the run role bound in it (and seen by the authorizer), the pods; then LIFO
    assert [e[:2] for e in log] == [["apply", "Namespace"], ["apply", "RoleBinding"],
                                    ["create", "SelfSubjectAccessReview"], ["apply", "Pod"], ["apply", "Pod"],
                                    ["delete", "Pod"], ["delete", "Pod"], ["delete", "RoleBinding"],
                                    ["delete", "Namespace"]], log
    assert names[5:] == ["second", "first", "seldon-gpu-harness-run", names[0]], log  # the namespace goes last
    assert names[2] == names[0]
    assert re.match(r"^h-r1-test-creates-[0-9a-f]{6}$", names[0])


def test_cleanup_error_fails_a_passing_test(pytester: pytest.Pytester) -> None:
    _setup(pytester, fail_delete="first")
    pytester.makepyfile(test_x='''
def test_creates(scope):
    scope.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first", "namespace": "x"}})
''')
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*cleanup failed: delete Pod/first: RuntimeError: boom deleting first*"])


def test_cleanup_error_never_masks_the_tests_own_failure(pytester: pytest.Pytester) -> None:
    _setup(pytester, fail_delete="first")
    pytester.makepyfile(test_x='''
def test_creates(scope):
    scope.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first", "namespace": "x"}})
    scope.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "second", "namespace": "x"}})
    assert False, "the real problem"
''')
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the real problem*"])
    assert "cleanup failed" not in result.stdout.str()
    # Every cleanup still ran although one failed.
    assert [e[2] for e in _log(pytester) if e[0] == "delete"] == ["second", "first"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "missing.yaml"], "missing.yaml: profile file not found"),
        (["--profile", "profile.yaml", "--run-id", "Bad_Id"], "--run-id: expected 1-32 lowercase"),
        (["--profile", "profile.yaml", "--kubeconfig", "nope.kubeconfig"], "--kubeconfig: file not found"),
        (["--profile", "profile.yaml", "--rehearse", "--context", "prod"],
         "--rehearse runs on the simulated cluster: --context does not apply"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    result = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_bad_profile_field_is_one_line(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makefile(".yaml", broken="cluster: {provder: sim}\n")
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    result = pytester.runpytest("--profile", "broken.yaml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.yaml: cluster.provder: unknown key*"])


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x='''
import pytest

@pytest.mark.gpu
@pytest.mark.destructive
@pytest.mark.latency
@pytest.mark.slow
def test_a():
    pass
''')
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider", "--profile", "profile.yaml",
                                "--report-dir", "out")
    result.assert_outcomes(passed=1)


def test_report_header_says_simulated(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out")
    result.stdout.fnmatch_lines(["harness: SIMULATED CLUSTER*"])


def test_namespace_names_are_valid_and_distinct() -> None:
    long_id = "suites/test_x.py::test_" + "very_long_name_" * 10 + "[param-1]"
    names = {namespace_name("run1", long_id), namespace_name("run1", long_id + "x"), namespace_name("run1", "a::b")}
    assert len(names) == 3
    for name in names:
        assert len(name) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name), name


def test_xdist_is_refused_for_a_shared_cluster(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makefile(".yaml", shared=(ROOT / "profiles" / "existing.yaml").read_text())
    pytester.makepyfile(test_x="def test_a():\n    pass\n")
    result = pytester.runpytest("--profile", "shared.yaml", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cluster.provider: pytest-xdist (-n) needs the sim provider*"])


def _report(pytester: pytest.Pytester) -> dict[str, object]:
    import json

    data: dict[str, object] = json.loads((pytester.path / "out" / "report.json").read_text())
    return data


def test_whole_run_records_its_selection(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x="def test_a():\n    pass\ndef test_b():\n    pass\n")
    pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out", "-p",
                       "no:randomly").assert_outcomes(passed=2)
    report = _report(pytester)
    assert report["interrupted"] is False
    assert report["selection"] == {"args": ["."], "keyword": "", "markers": "", "deselected": 0,
                                   "tests": ["test_x.py::test_a", "test_x.py::test_b"], "whole": True}


def test_keyword_and_node_id_selections_are_not_whole(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x="def test_a():\n    pass\ndef test_b():\n    pass\n")
    pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out", "-k", "test_a")
    selection = _report(pytester)["selection"]
    assert isinstance(selection, dict)
    assert (selection["whole"], selection["deselected"], selection["keyword"]) == (False, 1, "test_a")
    pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out",
                       "test_x.py::test_b")
    selection = _report(pytester)["selection"]
    assert isinstance(selection, dict)
    assert (selection["whole"], selection["tests"]) == (False, ["test_x.py::test_b"])


def test_exitfirst_and_keyboard_interrupt_record_interrupted(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_x="def test_a():\n    assert False\ndef test_b():\n    pass\n")
    pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out", "-x")
    report = _report(pytester)
    assert report["interrupted"] is True and "stopping after 1 failures" in str(report["interrupted_reason"])
    pytester.makepyfile(test_x="def test_a():\n    raise KeyboardInterrupt('signal 2')\ndef test_b():\n    pass\n")
    pytester.inline_run("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out",
                        no_reraise_ctrlc=True)
    report = _report(pytester)
    assert report["interrupted"] is True and "KeyboardInterrupt" in str(report["interrupted_reason"])


def test_every_line_pytest_prints_in_a_suites_run_is_redacted(pytester: pytest.Pytester) -> None:
    """Issue 26: skip reasons, warnings and summaries, not only failure text."""
    _setup(pytester)
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    pytester.makepyfile(test_x=f'''
import warnings, pytest
def test_skips():
    pytest.skip("mirror https://u:{secret}@github.com/o/r")
def test_warns():
    warnings.warn("Authorization: Token {secret}")
def test_prints(capsys):
    print("token {secret}")
    assert False, "s3://KEY:SE/CRET+{secret}=@bucket"
''')
    result = pytester.runpytest("--profile", "profile.yaml", "-p", "no:cacheprovider", "--report-dir", "out",
                                "-rA", "-W", "always")
    result.assert_outcomes(passed=1, skipped=1, failed=1, warnings=1)
    text = result.stdout.str() + result.stderr.str()
    assert secret not in text and "<redacted>" in text
