"""`make test`'s two phases at once (tests/phases.py), with stand-in phases: the parallel one starts
after the serial one has collected, runs at idle priority while the serial one runs, exit codes
combine as pytest's, and a signal to the runner reaches both phases and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.kit.simproc import ROOT, alive, gone_within
from tests.phases import COLLECTED_ENV, pytest_commands, run_phases


def _phase(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_the_parallel_phase_starts_after_collection_at_idle_priority_beside_the_serial_phase(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    together = tmp_path / "parallel-started"
    serial = _phase(f"""
        import os, pathlib, sys, time
        time.sleep(0.3)
        print("serial: collected", flush=True)
        pathlib.Path(os.environ[{COLLECTED_ENV!r}]).touch()
        deadline = time.monotonic() + 60
        while not pathlib.Path({str(together)!r}).exists():  # both phases run at once
            assert time.monotonic() < deadline, "the parallel phase never started"
            time.sleep(0.05)
        print("serial: done", os.sched_getscheduler(0) == {os.sched_getscheduler(0)})
    """)
    parallel = _phase(f"""
        import os, pathlib
        assert {COLLECTED_ENV!r} not in os.environ
        print("parallel: idle", os.sched_getscheduler(0) == os.SCHED_IDLE, flush=True)
        pathlib.Path({str(together)!r}).touch()
        raise SystemExit(5)  # nothing selected: not a failure
    """)
    lines: list[str] = []
    assert run_phases(serial, parallel, timeout_s=120, out=lines.append) == 0
    printed = capfd.readouterr().out
    assert "parallel: idle True" in printed  # streamed as it ran
    assert lines[0] == ("make test: the parallel phase runs at SCHED_IDLE beside the serial phase (marker "
                        "`serial`), whose output follows the parallel phase's")
    block = "\n".join(lines)
    # kept and printed after, at the runner's own priority (this test's: idle where `make test` runs it)
    assert "serial: collected\nserial: done True" in block
    assert lines[-1].startswith("make test: serial phase exit 0, parallel phase exit 5, ")


@pytest.mark.parametrize(("serial_code", "parallel_code", "expected"), [
    (1, 0, 1), (0, 2, 2), (5, 5, 0), (1, 5, 1), (0, 0, 0),
])
def test_either_failing_phase_fails_the_run(serial_code: int, parallel_code: int, expected: int) -> None:
    serial = _phase(f"import os, pathlib; pathlib.Path(os.environ[{COLLECTED_ENV!r}]).touch(); "
                    f"raise SystemExit({serial_code})")
    assert run_phases(serial, _phase(f"raise SystemExit({parallel_code})"), timeout_s=60,
                      out=lambda _: None) == expected


def test_a_serial_phase_that_ends_before_collecting_still_lets_the_parallel_phase_run() -> None:
    lines: list[str] = []
    assert run_phases(_phase("raise SystemExit(4)"), _phase("pass"), timeout_s=60, out=lines.append) == 4
    assert lines[-1].startswith("make test: serial phase exit 4, parallel phase exit 0, ")


RUNNER = textwrap.dedent("""
    import sys
    from tests.phases import run_phases
    serial, parallel = sys.argv[1], sys.argv[2]
    phase = lambda code: [sys.executable, "-c", code]
    sys.exit(run_phases(phase(serial), phase(parallel), timeout_s=float(sys.argv[3])))
""")
# Each stand-in phase names its pid, then waits; a SIGTERM ends it with a last word (its teardown).
WAITER = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: (print("{name}: stopped", flush=True), sys.exit(1)))
    flag = os.environ.get({env!r})
    if flag: pathlib.Path(flag).touch()
    pathlib.Path({pids!r}, "{name}").write_text(str(os.getpid()))
    time.sleep(120)
""")


@pytest.mark.parametrize("how", ["signal", "deadline"])
def test_a_sigterm_or_the_deadline_stops_both_phases_and_leaves_nothing(tmp_path: Path, how: str) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    serial = WAITER.format(name="serial", env=COLLECTED_ENV, pids=str(pids))
    parallel = WAITER.format(name="parallel", env=COLLECTED_ENV, pids=str(pids))
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, serial, parallel, "3" if how == "deadline" else "120"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2:
            assert time.monotonic() < deadline and runner.poll() is None, "the phases did not both start"
            time.sleep(0.05)
        started = [int(p.read_text()) for p in pids.iterdir()]
        assert all(alive(pid) for pid in started)
        if how == "signal":
            os.kill(runner.pid, signal.SIGTERM)
        out, _ = runner.communicate(timeout=90)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
    assert gone_within(started, 10) == []
    assert "serial: stopped" in out and "parallel: stopped" in out  # each got the SIGTERM and ran its handler
    if how == "signal":
        assert runner.returncode == 128 + signal.SIGTERM
    else:
        assert runner.returncode == 1 and "make test: stopped after 3 s (--timeout-s)" in out


def test_the_phases_are_pytest_with_the_markers_split_and_their_own_caches() -> None:
    serial, parallel = pytest_commands("py", 5, ["-k", "x"])
    assert serial == ["py", "-m", "pytest", "tests/", "-p", "no:xdist", "-m", "serial and not nightly",
                      "-o", "cache_dir=.pytest_cache/serial", "-k", "x"]
    assert parallel == ["py", "-m", "pytest", "tests/", "-n", "5", "--dist", "worksteal",
                        "-m", "not serial and not nightly", "-k", "x"]
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/python -m tests.phases --workers $(TEST_WORKERS) -- $(PYTEST_ARGS)" in makefile
