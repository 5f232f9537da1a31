"""`make test`: the timing tests and the rest of the suite at once, without the rest in their figures.

The tests marked `serial` judge latencies and rates (the capacity sweep, the gate's statistics, the
load engine's timing), so they must get the CPU whenever they ask for it. They used to run alone
first: 51-65 s of wall time in which the 2-core machine was mostly idle (27 CPU-seconds used of
about 110 offered). The rest is CPU-bound on xdist workers.

Now both phases run at once, and the parallel phase runs at the kernel's idle priority (SCHED_IDLE,
which every process it starts inherits: its sims, MLServers and pytest subprocesses too). An idle
task only gets CPU time that no normally scheduled task wants, and a waking normal task preempts it
at once, so the serial tests still get every cycle they ask for; the parallel phase fills the rest.
Where SCHED_IDLE is unavailable the parallel phase runs at nice 19, a weaker form of the same.

Order: the serial phase starts first, and the parallel phase starts once it has collected every
test module (`pytest_collection_finish` in tests/conftest.py touches the file named in
COLLECTED_ENV). That collection writes pytest's assertion-rewrite cache, which each xdist worker
would otherwise write for itself: about 10 CPU-seconds per worker on a fresh clone.

The parallel phase's output streams as it runs; the serial phase's is kept and printed after it, so
the two never interleave. Each phase's exit code counts as pytest's (5, nothing selected, is not a
failure: `PYTEST_ARGS=-k ...` may leave one phase empty), and the run fails if either failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

COLLECTED_ENV = "HARNESS_TESTS_COLLECTED_FLAG"
NOTHING_SELECTED = 5  # pytest's exit code when no test was selected
COLLECT_TIMEOUT_S = 300.0  # the serial phase's collection, from its start (seconds on a fresh clone)
STOP_GRACE_S = 60.0  # after SIGTERM (a deadline or a signal to this runner), before SIGKILL
_POLL_S = 0.2


def lower_priority() -> str:
    """Put this process at idle priority (inherited by its children); what was done, in words."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        os.nice(19)
        return "nice 19"


def phase_failed(code: int) -> bool:
    return code not in (0, NOTHING_SELECTED)


def pytest_commands(python: str, workers: int, extra: Sequence[str],
                    serial_cache: str = ".pytest_cache/serial") -> tuple[list[str], list[str]]:
    """(serial phase, parallel phase) command lines. The serial phase keeps its own pytest cache
    folder: two pytest processes writing one `lastfailed` would lose each other's."""
    serial = [python, "-m", "pytest", "tests/", "-p", "no:xdist", "-m", "serial and not nightly",
              "-o", f"cache_dir={serial_cache}", *extra]
    parallel = [python, "-m", "pytest", "tests/", "-n", str(workers), "--dist", "worksteal",
                "-m", "not serial and not nightly", *extra]
    return serial, parallel


def run_phases(serial: Sequence[str], parallel: Sequence[str], *, timeout_s: float,
               out: Callable[[str], None] = print, cwd: Path | None = None) -> int:
    """Run both phases as the module docstring says; the exit code of `make test`.

    Each phase is a process group of its own, so a Ctrl-C or a SIGTERM reaches this runner alone,
    which passes it on once to each phase's group (to pytest and every process it started, as the
    terminal would) and waits for them to finish their teardown."""
    stop: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    timed_out = False
    try:
        with tempfile.TemporaryDirectory(prefix="harness-phases-") as tmp:
            flag = Path(tmp) / "collected"
            log_path = Path(tmp) / "serial.log"
            with log_path.open("wb") as log:
                procs.append(subprocess.Popen(list(serial), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                              env={**os.environ, COLLECTED_ENV: str(flag)}, process_group=0))
            first = procs[0]
            # Until the serial phase has collected (or ended, or this wait's own limit has passed).
            collect_by = started + min(COLLECT_TIMEOUT_S, timeout_s)
            while not flag.exists() and first.poll() is None and not stop and time.monotonic() < collect_by:
                time.sleep(_POLL_S)
            if not stop:
                if not flag.exists() and first.poll() is None:
                    out(f"make test: the serial phase had not collected after {COLLECT_TIMEOUT_S:g} s; "
                        "starting the parallel phase anyway")
                second = subprocess.Popen(list(parallel), cwd=cwd, preexec_fn=lower_priority, process_group=0)
                procs.append(second)
                out(f"make test: the parallel phase runs at {_priority_of(second.pid)} beside the serial phase "
                    "(marker `serial`), whose output follows the parallel phase's")
            deadline = started + timeout_s
            while any(p.poll() is None for p in procs) and not stop and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            timed_out = not stop and any(p.poll() is None for p in procs)
            if stop or timed_out:
                _stop_all(procs, stop[0] if stop else signal.SIGTERM)
            out("")
            out("=" * 30 + " serial phase (marker `serial`) " + "=" * 30)
            out(log_path.read_text(encoding="utf-8", errors="replace").rstrip("\n"))
    finally:
        for proc in procs:  # an exception of this runner's own leaves no phase behind
            if proc.poll() is None:
                _stop_all([proc], signal.SIGTERM)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [p.returncode for p in procs]
    out(f"make test: serial phase exit {codes[0]}, parallel phase "
        f"{'exit ' + str(codes[1]) if len(codes) > 1 else 'not started'}, {time.monotonic() - started:.1f} s")
    if timed_out:
        out(f"make test: stopped after {timeout_s:g} s (--timeout-s): a phase was still running")
        return 1
    if stop:
        return 128 + stop[0]
    failed = [c for c in codes if phase_failed(c)]
    return failed[0] if failed else 0 if len(codes) == 2 else 1


def _priority_of(pid: int) -> str:
    try:
        policy = os.sched_getscheduler(pid)
    except (AttributeError, OSError):
        return "a lowered priority"
    return "SCHED_IDLE" if policy == getattr(os, "SCHED_IDLE", -1) else f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], sig: int) -> None:
    """`sig` to each running phase's process group, then wait; SIGKILL to the group after STOP_GRACE_S."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_GRACE_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.phases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=5, help="xdist workers of the parallel phase (default 5)")
    parser.add_argument("--timeout-s", type=float, default=3600.0,
                        help="stop both phases after this many seconds (default 3600)")
    parser.add_argument("pytest_args", nargs="*", help="passed to both phases' pytest (after --)")
    args = parser.parse_args(argv)
    if args.workers < 1 or not args.timeout_s > 0:
        parser.error("--workers must be at least 1 and --timeout-s above 0")
    serial, parallel = pytest_commands(sys.executable, args.workers, args.pytest_args)
    return run_phases(serial, parallel, timeout_s=args.timeout_s, out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
