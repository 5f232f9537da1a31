"""The harness pytest plugin: options, markers and the layered fixtures the suites use.

Fixture layers (design C):
- session: `run_context` (profile and options), `cluster` (provider lifecycle: preflight,
  provision, nodes, GPU stack, Seldon), `deployment` (the profile's Servers and Models, ready);
- function: `scope` (a namespace named after the test, objects created through it, LIFO cleanup,
  evidence collected before cleanup when the test failed), `record` (what the test adds to the report).

Everything a test creates goes through `scope`, so cleanup is in one place and never masks the
test's own failure: a cleanup error fails the teardown only when the test itself passed.

All of a run's state (its `RunContext`, the signal note, the deselected count) lives in one
`HarnessRun` object that `pytest_configure` registers as a plugin and keeps in `config.stash`, as
pytest's junitxml does with its `LogXML`: no module global, so several sessions in one process
(pytester's inline runs) never see each other's run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.config import Profile, apply_overrides, load_profile
from harness.errors import UsageError
from harness.heap import freeze_startup_heap
from harness.interruption import Interruption
from harness.testkit.context import RunContext, Scope, cluster_session

if TYPE_CHECKING:
    from harness.gpu.result import ProbeResult
    from harness.lifecycle import ClusterSession
    from harness.testkit.recording import Recorder, TestRecorder

DEFAULT_PROFILE = "profiles/sim.yaml"
RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
MARKERS = {
    "gpu": "needs GPUs visible through NVML (skipped without, failed under --require-gpu)",
    "destructive": "changes node taints or evicts pods (restored afterwards)",
    "latency": "runs the latency engine against the mesh",
    "slow": "takes more than a few seconds",
}
Obj = dict[str, Any]


# The README section every preflight message points to (tests check that it exists).
PREREQUISITES_SECTION = "Prerequisites per provider"


def preflight_checklist(profile_path: Path, provider: str, problems: list[Any]) -> str:
    """One readable stop: a heading, then each missing piece and its fix on a line of its own."""
    lines = [f"{profile_path}: the {provider} cluster cannot be set up on this machine; "
             f"{len(problems)} thing(s) to fix (README, '{PREREQUISITES_SECTION}'):"]
    lines += [f"  - {' '.join(str(p.message).split())}" for p in problems]
    lines.append("No test was run and no report was written.")
    return "\n".join(lines)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "GPU serving harness (Seldon Core 2 on dedicated GPU nodes)")
    group.addoption("--profile", default=None,
                    help=f"profile YAML file (default: $PROFILE or {DEFAULT_PROFILE})")
    # pytest-kind is not a dependency, and its plugin is disabled where it is installed (pyproject
    # addopts `-p no:pytest-kind`): its --cluster-name and --kind-image would be accepted and ignored
    # here. The try below keeps a run that loads it anyway (another rootdir) working.
    for flag, kwargs in (
        ("--kubeconfig", {"default": None,
                          "help": "kubeconfig for existing clusters (overrides the profile and $KUBECONFIG)"}),
        ("--keep-cluster", {"action": "store_true", "default": False,
                            "help": "keep (and reuse) the kind cluster instead of deleting it at the end"}),
    ):
        try:
            group.addoption(flag, **kwargs)
        except ValueError:
            continue
    group.addoption("--context", default=None,
                    help="kubeconfig context for existing clusters (overrides the profile's cluster.context)")
    group.addoption("--report-dir", default=None, help="where report.json, junit.xml, report.html and evidence go")
    group.addoption("--require-gpu", action="store_true", default=False,
                    help="fail instead of skip when GPUs are not visible through NVML (nightly and release lanes)")
    group.addoption("--rehearse", action="store_true", default=False,
                    help="run the profile on the simulated cluster with its own shape (nodes, GPUs, Servers, "
                         "Models, SLOs, load); the report is simulated and names the rehearsed profile")
    group.addoption("--rehearse-host-gpus", type=int, default=8,
                    help="--rehearse of a profile with gpu_workers: auto: how many GPUs the simulated host has "
                         "(default 8; the layout rule is in docs/real-clusters.md)")
    group.addoption("--run-id", default=None,
                    help="run id used in cluster, namespace and label names (lowercase, <= 32 chars)")


def _default_run_id() -> str:
    return hashlib.sha256(f"{os.getpid()}-{os.urandom(8).hex()}".encode()).hexdigest()[:8]


PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def run_context_of(config: pytest.Config) -> RunContext | None:
    """This session's run context, or None when the harness is not active (a run without a profile)."""
    run = config.stash.get(HARNESS_RUN, None)
    return None if run is None else run.ctx


def _uses_suites(config: pytest.Config) -> bool:
    """The plugin is active for runs that name a profile or collect the suites folder."""
    if config.getoption("--profile"):
        return True
    return any("suites" in Path(str(arg)).parts for arg in config.args)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Whatever the session, the modules it imported and the items it collected live until it ends."""
    freeze_startup_heap()


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if not _uses_suites(config):
        return
    profile_arg = config.getoption("--profile") or os.environ.get("PROFILE") or DEFAULT_PROFILE
    run_id = config.getoption("--run-id") or _default_run_id()
    if not RUN_ID.match(run_id):
        raise pytest.UsageError(
            f"--run-id: expected 1-32 lowercase letters, digits or '-', "
            f"starting and ending alphanumeric, got {run_id!r}"
        )
    try:
        profile = load_profile(profile_arg)
        profile = apply_overrides(
            profile, kubeconfig=config.getoption("--kubeconfig"), report_dir=config.getoption("--report-dir"),
            context=config.getoption("--context"),
        )
    except UsageError as exc:
        from harness.redact import redact

        raise pytest.UsageError(redact(str(exc))) from None
    rehearsed_provider: str | None = None
    gpu_layout = None
    try:
        from harness.providers.gpu_layout import host_layout, rehearsal_layout

        if config.getoption("--rehearse"):
            profile, gpu_layout = rehearsal_layout(profile, int(config.getoption("--rehearse-host-gpus")))
        else:
            profile, gpu_layout = host_layout(profile)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("--rehearse"):
        for flag in ("--kubeconfig", "--context"):
            if config.getoption(flag):
                raise pytest.UsageError(f"--rehearse runs on the simulated cluster: {flag} does not apply")
        from harness.rehearse import rehearsal_profile

        rehearsed_provider = profile.cluster.provider
        profile = rehearsal_profile(profile)
    worker = getattr(config, "workerinput", {}).get("workerid")  # set on pytest-xdist workers
    distributed = worker is not None or bool(getattr(config.option, "numprocesses", None))
    if distributed and profile.cluster.provider != "sim":
        raise pytest.UsageError(
            f"{profile.source}: cluster.provider: pytest-xdist (-n) needs the sim provider, where every worker "
            f"gets a cluster of its own; the {profile.cluster.provider} provider's cluster is shared state: "
            "run without -n"
        )
    kubeconfig = config.getoption("--kubeconfig")
    if kubeconfig and not Path(kubeconfig).is_file():
        raise pytest.UsageError(f"--kubeconfig: file not found: {kubeconfig}")
    from harness.testkit.recording import Recorder

    ctx = RunContext(
        profile=profile,
        profile_path=Path(profile_arg),
        run_id=run_id,
        # xdist workers write side by side instead of over each other.
        report_dir=Path(profile.report.dir) / worker if worker else Path(profile.report.dir),
        keep_cluster=bool(config.getoption("--keep-cluster")),
        require_gpu=bool(config.getoption("--require-gpu")),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        rehearsed_provider=rehearsed_provider,
    )
    ctx.recorder = Recorder(ctx.profile, ctx.run_id, str(ctx.profile_path), ctx.report_dir)
    if gpu_layout is not None:
        ctx.gpu_layout = gpu_layout.describe()
        ctx.recorder.builder.set_gpu_layout(gpu_layout.as_dict())
    if rehearsed_provider is not None:
        from harness.rehearse import simulates_host_gpus
        from harness.report.model import Rehearsal

        ctx.recorder.builder.set_rehearsal(Rehearsal(
            provider=rehearsed_provider,
            host_gpus_simulated=simulates_host_gpus(rehearsed_provider, profile),
        ))
    run = HarnessRun(ctx)
    config.stash[HARNESS_RUN] = run
    config.pluginmanager.register(run, "harness-run")
    # SIGTERM (CI cancelling a job) must unwind like Ctrl-C so that fixtures restore nodes and
    # delete what they created; both signals are noted first, so the report says the run was
    # interrupted whatever becomes of the KeyboardInterrupt (harness/interruption.py).
    run.interruption.install()


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, int | pytest.ExitCode, int | pytest.ExitCode]:
    """After a signal, what pytest raises while stopping is a consequence of the signal: formatting the
    KeyboardInterrupt's traceback can itself raise CPython 3.11's `SystemError: AST constructor recursion
    depth mismatch`, which would leave pytest with exit 1 and a traceback. The report is already written
    by then (sessionfinish runs first); the exit code says what happened: interrupted."""
    try:
        return (yield)
    except KeyboardInterrupt:
        run = config.stash.get(HARNESS_RUN, None)
        if run is None:
            raise
        interruption = run.interruption
        if not interruption.written and interruption.signal is None:
            raise
        if interruption.signal is None:  # after the report, once pytest_unconfigure gave SIGINT back
            sys.stderr.write("harness: SIGINT arrived after the report was written; the run had finished\n")
        else:  # it cut pytest's own session finish short (the report was written all the same)
            sys.stderr.write(f"harness: {interruption.reason} while pytest finished the session\n")
        return pytest.ExitCode.INTERRUPTED
    except Exception as exc:
        run = config.stash.get(HARNESS_RUN, None)
        if run is None or run.interruption.signal is None:
            raise
        first = (str(exc).splitlines() or [""])[0][:200]
        sys.stderr.write(f"harness: {run.interruption.reason}; pytest then failed while stopping "
                         f"({type(exc).__name__}: {first})\n")
        return pytest.ExitCode.INTERRUPTED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _redact_report(report)
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    run = item.config.stash.get(HARNESS_RUN, None)
    if run is not None and run.interruption.signal is not None and not item.session.shouldstop:
        # The KeyboardInterrupt may have been lost (a SystemError in its place): no further test starts.
        item.session.shouldstop = run.interruption.reason
    return report


def _redact_terminal(config: pytest.Config) -> None:
    """Every line pytest prints in a suites run passes through redaction (skip reasons, warnings,
    summaries, the harness's own lines), not only failure text: wrap the terminal writer's stream."""
    from harness.redact import redacting

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    if writer is not None and hasattr(writer, "_file"):
        writer._file = redacting(writer._file)


def _redact_report(report: pytest.TestReport) -> None:
    """Failure text quotes cluster objects (status messages, storage URIs, env): redact secrets in it
    before pytest prints it, and in the captured output sections too."""
    from harness.redact import redact

    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        # a skip: (path, line, reason), and pytest's summary needs it to stay a tuple
        path, line, reason = report.longrepr
        report.longrepr = (path, line, redact(str(reason)))
    elif report.longrepr is not None:
        text = report.longreprtext
        cleaned = redact(text)
        if cleaned != text:
            report.longrepr = cleaned
    report.sections = [(title, redact(content)) for title, content in report.sections]


def _relative_arg(arg: str, cwd: Path) -> str:
    """pytest makes its default argument absolute; a report keeps paths relative to where pytest ran."""
    path, sep, rest = arg.partition("::")
    try:
        rel = Path(path).relative_to(cwd) if Path(path).is_absolute() else Path(path)
    except ValueError:
        return arg
    return f"{rel.as_posix()}{sep}{rest}"


# What a run writes into --report-dir; an earlier run's copies are removed before a new run's tests
# start, so a report never sits beside evidence of another run. Nothing else there is touched.
RUN_OUTPUTS = ("report.json", "report.json.sig", "report.html", "junit.xml", "evidence")


def clear_earlier_run(report_dir: Path) -> list[str]:
    """Remove an earlier run's outputs from `report_dir`; returns the names removed."""
    import shutil

    removed = []
    for name in RUN_OUTPUTS:
        path = report_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


class HarnessRun:
    """One suites run, registered as a pytest plugin by `pytest_configure`: its hooks record outcomes,
    the selection and interruptions, and write the report when the session ends."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.interruption = Interruption()
        self.deselected = 0

    @property
    def recorder(self) -> Recorder:
        assert self.ctx.recorder is not None  # set by pytest_configure before registering the run
        return self.ctx.recorder

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.ctx.tests_started += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.recorder.test_outcome(report)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if self.interruption.signal is not None:  # the signal itself, not what pytest made of it
            self.recorder.builder.mark_interrupted(self.interruption.reason)
            return
        detail = str(excinfo.value) or "SIGINT"
        self.recorder.builder.mark_interrupted(f"interrupted ({type(excinfo.value).__name__}: {detail})")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _redact_terminal(session.config)
        config = session.config
        if config.option.collectonly or hasattr(config, "workerinput"):
            return  # nothing will be provisioned here (xdist workers preflight their own cluster)
        # Preflight once, before collection: an unusable environment is one stop with one checklist and
        # pytest's usage-error exit code (the same as a bad profile), not an error per test.
        problems = cluster_session(self.ctx).preflight()
        if problems:
            from harness.redact import redact

            raise pytest.UsageError(redact(preflight_checklist(self.ctx.profile_path,
                                                               self.ctx.profile.cluster.provider, problems)))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._record_selection(session)
        if session.config.option.collectonly or not session.items:
            return
        if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
            return  # each xdist worker has a report folder of its own
        removed = clear_earlier_run(self.ctx.report_dir)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if removed and reporter is not None:
            reporter.write_line(f"harness: removed an earlier run's {', '.join(removed)} from {self.ctx.report_dir}")

    def _record_selection(self, session: pytest.Session) -> None:
        """Record what was selected, so the gate can tell a whole run from a partial one."""
        from harness.testkit.recording import selection_of

        config = session.config
        args = [_relative_arg(str(a), config.invocation_params.dir) for a in config.args]
        self.recorder.builder.set_selection(selection_of(
            args, str(getattr(config.option, "keyword", "") or ""), str(getattr(config.option, "markexpr", "") or ""),
            self.deselected, [item.nodeid for item in session.items],
        ))

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
        """The report is written after pytest's own session finish, which tears down the session fixtures
        (the cluster's cleanup, whose leftovers the report records), and also when a signal cuts that
        teardown short: a KeyboardInterrupt there would otherwise skip every later sessionfinish."""
        try:
            yield
        finally:
            self.interruption.quiet = True  # from here a signal is noted, never obeyed
            self._finish_session(session, exitstatus)

    def _finish_session(self, session: pytest.Session, exitstatus: int) -> None:
        ctx = self.ctx
        if self.interruption.signal is not None:
            # Whatever pytest made of it (a SystemError, an internal error, a test failure), it was a signal.
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        if ctx.cluster_teardown is not None:
            # pytest's own session finish has torn the session fixtures down, but not the cluster: a signal
            # cut pytest off before it registered the fixture's teardown. Cleaned up here, before the report.
            try:
                ctx.cluster_teardown()
            except Exception as exc:  # recorded like any cleanup problem; the report is still written
                self.recorder.cleanup_problems([f"cleanup failed: {type(exc).__name__}: {exc}"])
        if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
            return  # the xdist controller runs no test: each worker writes its own report
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if ctx.tests_started == 0:
            # --collect-only, `-k nothing`, an interrupted collection: a report of nothing would read as a
            # pass and replace the last real one.
            if reporter is not None:
                kept = " (the one there is from an earlier run)" if (ctx.report_dir / "report.json").exists() else ""
                reporter.write_line(f"harness: no test ran, so no report was written to {ctx.report_dir}{kept}")
            return
        try:
            paths = self._write_report(session, exitstatus)
            if self.interruption.signal is not None and not self.recorder.builder.snapshot().interrupted:
                paths = self._write_report(session, exitstatus)  # the signal came while the report was written
            self.interruption.written = True
        except Exception as exc:  # the report must never hide the run's own result
            if reporter is not None:
                reporter.write_line(f"harness: writing the report failed: {type(exc).__name__}: {exc}", red=True)
            return
        if reporter is not None:
            for name, path in sorted(paths.items()):
                reporter.write_line(f"harness: {name}: {path}")
        self._cleanup_verdict(session)
        self.interruption.note_after_report()

    def _write_report(self, session: pytest.Session, exitstatus: int) -> dict[str, Path]:
        builder = self.recorder.builder
        if self.interruption.signal is not None:
            builder.mark_interrupted(self.interruption.reason)
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        elif exitstatus == pytest.ExitCode.INTERRUPTED:
            builder.mark_interrupted("interrupted (pytest exit status 2: a signal or Ctrl-C)")
        elif session.shouldstop or session.shouldfail:
            # -x / --maxfail: the remaining tests never ran, so the evidence is partial.
            builder.mark_interrupted(f"stopped early: {session.shouldstop or session.shouldfail}")
        paths = self.recorder.write()
        from harness.report.signature import load_key, sign

        try:
            key = load_key()
        except UsageError as exc:
            sys.stderr.write(f"harness: report not signed: {exc}\n")
            return paths
        if key is not None and "json" in paths:
            paths["signature"] = sign(paths["json"], key)
        return paths

    def _cleanup_verdict(self, session: pytest.Session) -> None:
        """A cleanup that left anything (objects, the Lease, a node change) fails the run, not only its report:
        one line on stderr names what is left and the command that removes it."""
        if not self.recorder.problems:
            return
        left = "; ".join(" ".join(p.split()) for p in self.recorder.problems)
        sys.stderr.write(f"harness: cleanup left something behind: {left[:1500]}; remove it with: python -m "
                         f"harness cleanup --profile {self.ctx.profile_path} --run-id {self.ctx.run_id}\n")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.interruption.restore()

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        ctx = self.ctx
        p = ctx.profile
        lines = [f"harness: profile {ctx.profile_path} (provider {p.cluster.provider}), run id {ctx.run_id}"]
        if ctx.rehearsed_provider is not None:
            lines.append(f"harness: REHEARSAL of the {ctx.rehearsed_provider} profile {p.name} "
                         "on the simulated cluster")
        if ctx.gpu_layout is not None:
            lines.append(f"harness: GPU layout (gpu_workers: auto): {ctx.gpu_layout}")
        if p.simulated:
            lines.append("harness: SIMULATED CLUSTER: GPUs and NVML are simulated; "
                         "the release gate refuses this report")
        return lines


HARNESS_RUN = pytest.StashKey[HarnessRun]()


# ---------------------------------------------------------------------------------------
# Session fixtures
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def run_context(pytestconfig: pytest.Config) -> RunContext:
    ctx = run_context_of(pytestconfig)
    if ctx is None:
        pytest.skip("harness suites need a profile: run `pytest suites/ --profile profiles/sim.yaml`")
    return ctx


@pytest.fixture(scope="session")
def profile(run_context: RunContext) -> Profile:
    return run_context.profile


@contextlib.contextmanager
def shown(config: pytest.Config) -> Iterator[None]:
    """Let lifecycle progress reach the terminal (or CI log) while it happens: session fixtures run
    inside the first test's setup, whose output pytest captures and shows only on failure."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        if reporter is not None:
            # Inside: while capturing, even the reporter's fd 1 is captured. `-q` writes dots only.
            reporter.ensure_newline()
            if reporter._tw.width_of_current_line:
                reporter._tw.line()
        yield
    if reporter is not None:
        reporter.currentfspath = None  # the next result starts a fresh line with its file name


@pytest.fixture(scope="session")
def cluster(
    run_context: RunContext, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[ClusterSession]:
    """The cluster, provisioned through the profile's provider, with the GPU stack and Seldon."""
    from harness.lifecycle import PhaseFailed

    (run_context.report_dir / "work").mkdir(parents=True, exist_ok=True)
    session = cluster_session(run_context)
    run_context.records.attach(session)
    # One try from the first step to the teardown: a Ctrl-C or SIGTERM (KeyboardInterrupt) can land
    # between any two statements, and one that landed after `up()` returned but before the teardown's
    # try began left the cluster as it was (tests/runs/test_signals.py, beside two CPU burners).
    ready = cleaned = False

    def tear_down() -> None:
        nonlocal cleaned
        if cleaned:
            return
        cleaned = True
        run_context.cluster_teardown = None
        if ready:
            run_context.records.capture_cluster(session)
            with shown(pytestconfig):
                problems = session.down(failed=request.session.testsfailed > 0)
            run_context.records.cleanup_problems(problems)
        else:
            # Interrupted while the cluster came up: undo what was done so far (the run Lease, node
            # changes, what the provider installed or created) before the interruption goes on.
            with shown(pytestconfig):
                run_context.records.cleanup_problems(session.down())

    # Also run by the session finish when pytest never did: a signal landing in pytest's own code between
    # this generator's yield and pytest registering its teardown leaves the generator suspended, and
    # only the garbage collector at interpreter exit would close it, where a cleanup cannot start a
    # thread and hangs (run s8q3).
    run_context.cluster_teardown = tear_down
    try:
        try:
            with shown(pytestconfig):
                session.up()
        except PhaseFailed as exc:
            run_context.records.cluster_identified(session)
            with shown(pytestconfig):
                problems = session.down()
            cleaned = True
            run_context.cluster_teardown = None
            suffix = f" (cleanup: {'; '.join(problems)})" if problems else ""
            pytest.fail(f"{exc}{suffix}", pytrace=False)
        run_context.records.cluster_identified(session)
        ready = True
        yield session
    finally:
        tear_down()


@pytest.fixture(scope="session")
def deployment(cluster: ClusterSession, pytestconfig: pytest.Config) -> ClusterSession:
    """The profile's Servers and Models applied and awaited (once per run; tests must not change them)."""
    if not cluster.deployed and cluster.deploy_error is None:
        with shown(pytestconfig):
            cluster.deploy()
    return cluster


@pytest.fixture(scope="session")
def deployed_ok(deployment: ClusterSession) -> ClusterSession:
    """Like `deployment`, but fails the test with the deployment's cause when it did not come up."""
    if deployment.deploy_error:
        pytest.fail(f"deployment of the profile's Servers/Models failed: {deployment.deploy_error}", pytrace=False)
    return deployment


# ---------------------------------------------------------------------------------------
# Function fixtures
# ---------------------------------------------------------------------------------------
def _test_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def scope(request: pytest.FixtureRequest, cluster: ClusterSession, run_context: RunContext) -> Iterator[Scope]:
    test_scope = Scope(cluster, run_context, request.node.nodeid)
    yield test_scope
    failed = _test_failed(request.node)
    if failed:
        run_context.records.collect_evidence(cluster, request.node.nodeid,
                                              [test_scope.created_namespace] if test_scope.created_namespace else [])
    errors = test_scope.close()
    if errors and not failed:
        pytest.fail("cleanup failed: " + "; ".join(errors), pytrace=False)
    elif errors:
        run_context.records.cleanup_problems(errors)


@pytest.fixture
def record(request: pytest.FixtureRequest, run_context: RunContext) -> TestRecorder:
    """What a test adds to the report: checks with reasons, placement, probes, latency."""
    return run_context.records.for_test(request.node.nodeid)


@pytest.fixture
def host_gpu_inventory(cluster: ClusterSession, run_context: RunContext) -> tuple[ProbeResult | None, str]:
    """(ProbeResult | None, reason): the GPUs of the host the cluster runs on, through NVML.

    On a kind rehearsal the host is simulated: its GPUs are those the sim handed to the GPU workers.
    """
    if run_context.rehearsed_provider is not None:
        from harness.rehearse import simulated_host_inventory

        nodes = cluster.client().list("v1", "Node")
        return simulated_host_inventory(nodes, (run_context.report_dir / "work").resolve())
    from harness.gpu.host import host_inventory_with_reason

    return host_inventory_with_reason()


@pytest.fixture
def require_nvml(cluster: ClusterSession, run_context: RunContext) -> None:
    """Skip (or fail under --require-gpu) when GPUs cannot be seen through NVML on this cluster."""
    reason = nvml_unavailable_reason(run_context.profile, cluster.facts)
    if reason:
        if run_context.require_gpu:
            pytest.fail(f"--require-gpu: {reason}", pytrace=False)
        pytest.skip(reason)


def nvml_unavailable_reason(profile: Profile, facts: Any) -> str | None:
    """Why NVML evidence cannot be had on this cluster, or None when it can."""
    # Also on a rehearsal of a fake-GPU profile: the rehearsal must skip what the real run skips.
    if profile.cluster.fake_gpus:
        return ("the GPUs are fake (cluster.fake_gpus: true), so NVML sees nothing; "
                "run profiles/kind-gpu.yaml on a host with NVIDIA GPUs")
    if facts is not None and not getattr(facts, "gpu_nodes", ("?",)):
        return (f"no node advertises {profile.gpu.resource_name}: install the NVIDIA device plugin "
                "or use a cluster with GPU nodes")
    return None
