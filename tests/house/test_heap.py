"""The harness's long-running processes keep the cyclic collector off their startup heap (harness/heap.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from harness.heap import THRESHOLDS, freeze_startup_heap

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.fast
def test_a_pytest_session_freezes_what_it_collected() -> None:
    # This very session: the plugin (registered by the root conftest.py) froze the heap after collection.
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold() == THRESHOLDS


def test_a_cli_command_runs_with_its_imports_frozen() -> None:
    probe = ("import gc, sys\n"
             "from harness.cli import main\n"
             "before = gc.get_freeze_count()\n"
             "code = main(['lint', '--profile', 'profiles/sim.yaml'])\n"
             "print(code, before, gc.get_freeze_count(), gc.get_threshold())\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    code, before, after, thresholds = done.stdout.splitlines()[-1].split(" ", 3)
    assert (code, before) == ("0", "0"), done.stdout + done.stderr
    assert int(after) > 10_000 and thresholds == str(THRESHOLDS), done.stdout


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.mark.fast
def test_a_second_freeze_leaves_later_cycles_to_the_collector() -> None:
    frozen = gc.get_freeze_count()
    assert frozen > 0  # the plugin froze this session once, after collection
    cycle = _Node()
    gone = weakref.ref(cycle)
    freeze_startup_heap()  # what an in-process `main()` call does while such an object is alive
    assert gc.get_freeze_count() == frozen
    del cycle
    gc.collect()
    assert gone() is None
