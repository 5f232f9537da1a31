"""The benchmark's noise rule (harness/commands/bench_noise.py): other work's CPU, not the load average."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys

import pytest

from harness.commands.bench_noise import (
    OTHER_CORES_LIMIT,
    CpuSample,
    Phase,
    busy_seconds,
    judge,
    noise,
    parse_pid_stat,
    sample,
    tree_ticks,
)


def _phase(wall: float, busy_cores: float, own_cores: float, name: str = "Triton rows") -> Phase:
    return Phase(name, CpuSample(at=100.0, busy_s=5000.0, own_s=20.0),
                 CpuSample(at=100.0 + wall, busy_s=5000.0 + busy_cores * wall, own_s=20.0 + own_cores * wall))


def test_a_quiet_run_is_not_noisy_however_much_the_bench_itself_used() -> None:
    # The run that the load-average rule called noisy: 0.92 before, 2.02 after on 2 CPUs, the
    # bench's server, client and wrk keeping 1.9 cores busy and the rest of the machine 0.05.
    quiet = _phase(300.0, busy_cores=1.95, own_cores=1.90)
    assert noise(0.92, 2, [quiet]) is None
    noisy, lines = judge(0.92, 2.02, 2, [quiet])
    assert not noisy and "NOISY" not in "\n".join(lines)
    assert "other work 0.05 of a core, the bench's own processes 1.90, over 300 s" in "\n".join(lines)


def test_other_work_beside_the_bench_is_noisy() -> None:
    beside = _phase(300.0, busy_cores=1.95, own_cores=1.40)  # 0.55 of a core was someone else's
    why = noise(0.5, 2, [_phase(60.0, 1.0, 0.98, "MLServer rows"), beside])
    assert why == f"Triton rows: other work used 0.55 of a core (limit {OTHER_CORES_LIMIT:g})"
    noisy, lines = judge(0.5, 1.9, 2, [beside])
    assert noisy and "**NOISY RUN (Triton rows: other work used 0.55" in "\n".join(lines)
    # Just at the limit is still quiet; the busy machine before the run is noisy on its own.
    assert noise(0.5, 2, [_phase(100.0, 1.0 + OTHER_CORES_LIMIT - 0.01, 1.0)]) is None
    assert noise(2.5, 2, [_phase(100.0, 1.0, 1.0)]) == "load average 2.50 above the 2 CPUs before the run"


def test_without_proc_the_load_averages_decide_and_err_towards_noisy() -> None:
    noisy, lines = judge(0.9, 2.02, 2, [None])
    assert noisy and "no /proc" in "\n".join(lines)
    assert judge(0.9, 1.5, 2, [None])[0] is False


def test_proc_parsers() -> None:
    stat = "cpu  100 10 50 900 5 1 4 3 7 0\ncpu0 50 5 25 450 2 0 2 1 0 0\n"
    assert busy_seconds(stat, 100) == pytest.approx((100 + 10 + 50 + 1 + 4 + 3) / 100)
    with pytest.raises(ValueError, match="/proc/stat"):
        busy_seconds("intr 1 2 3\n", 100)
    # A command name with spaces and parentheses; utime, stime, cutime, cstime are fields 14-17.
    line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194304 1 2 3 4 11 22 33 44 20 0 1 0 100 0 0"
    assert parse_pid_stat(line) == (17, 11 + 22 + 33 + 44)
    stats = {10: (1, 5), 11: (10, 7), 12: (11, 3), 13: (1, 100), 14: (13, 9)}
    assert tree_ticks(stats, 10) == 10 and tree_ticks(stats, 1) == 5 + 7 + 3 + 100 + 9


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_sample_counts_a_child_while_it_runs_and_after_it_is_reaped() -> None:
    start = sample()
    assert start is not None
    burn = ("import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
            "print('burnt', flush=True)\ninput()")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=30), "the child never finished burning its CPU"
        assert child.stdout.readline() == b"burnt\n"
        running = sample()  # the child is alive, waiting on stdin: read from /proc
        assert running is not None and running.own_s - start.own_s >= 0.3
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    reaped = sample()  # now from RUSAGE_CHILDREN
    assert reaped is not None and reaped.own_s - start.own_s >= 0.3 and reaped.busy_s >= start.busy_s


def test_a_machine_that_wakes_sleepers_late_cannot_judge_late_sends() -> None:
    from harness.commands.bench_noise import overshoot_of, timer_overshoot

    # 1000 sleeps: 980 woken 0.1 ms late, 20 woken 1.5 ms late (2 % over the 1 ms line).
    slack = overshoot_of([0.0001] * 980 + [0.0015] * 20, late_s=0.001)
    assert (slack.p50_ms, slack.p99_ms, slack.late_fraction) == (0.1, 1.5, 0.02)
    assert slack.hides(0.01) and not slack.hides(0.05)
    assert "2.0% more than 1 ms late" in slack.describe()
    punctual = overshoot_of([0.0001] * 995 + [0.0015] * 5, late_s=0.001)
    assert punctual.p99_ms == 0.1 and not punctual.hides(0.01)  # 0.5 % late: a client can still be judged
    with pytest.raises(ValueError):
        overshoot_of([], late_s=0.001)
    measured = timer_overshoot(0.001, sleeps=20)
    assert measured.sleeps == 20 and 0.0 <= measured.p50_ms <= measured.p99_ms
