"""The controller runtime: passes on change, wake-ups, error isolation, bounded bursts, clean stop."""

from __future__ import annotations

import threading
import time
from typing import Any

from harness.sim.api.store import MemoryStore
from harness.sim.runtime import Runtime


class Recorder:
    def __init__(self, name: str = "rec", wake_in: float | None = None, fail_first: int = 0) -> None:
        self.name = name
        self.calls: list[float] = []
        self.seen_rv: list[int] = []
        self.closed = False
        self.wake_in = wake_in
        self.fail_first = fail_first
        self.event = threading.Event()

    def reconcile(self, store: Any, now: float) -> float | None:
        self.calls.append(now)
        self.seen_rv.append(store.resource_version)
        self.event.set()
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("boom")
        return now + self.wake_in if self.wake_in is not None else None

    def close(self) -> None:
        self.closed = True


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    cond = threading.Condition()
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            cond.wait(min(0.01, left))  # polling a test predicate with a deadline
    return True


def test_a_store_write_triggers_a_pass_that_sees_it() -> None:
    store = MemoryStore()
    rec = Recorder()
    rt = Runtime(store, [rec])
    rt.start()
    try:
        assert wait_until(lambda: len(rec.calls) >= 1)
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})
        rv = store.resource_version
        assert wait_until(lambda: rv in rec.seen_rv)
    finally:
        rt.stop()
    assert rec.closed


def test_wakeups_are_honoured_without_changes() -> None:
    store = MemoryStore()
    rec = Recorder(wake_in=0.05)
    rt = Runtime(store, [rec])
    rt.start()
    try:
        assert wait_until(lambda: len(rec.calls) >= 4, timeout=5)
    finally:
        rt.stop()
    gaps = [b - a for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert all(g >= 0.04 for g in gaps[1:]), gaps


def test_idle_runtime_does_not_spin() -> None:
    store = MemoryStore()
    rec = Recorder()
    rt = Runtime(store, [rec])
    rt.start()
    try:
        assert wait_until(lambda: len(rec.calls) >= 1)
        calls = len(rec.calls)
        threading.Event().wait(0.3)  # observe idleness for a moment: no change, no wake-up, no pass
        assert len(rec.calls) == calls
    finally:
        rt.stop()


def test_a_failing_controller_is_retried_and_does_not_stop_others() -> None:
    store = MemoryStore()
    bad = Recorder("bad", fail_first=2)
    good = Recorder("good")
    rt = Runtime(store, [bad, good])
    rt.start()
    try:
        assert wait_until(lambda: len(bad.calls) >= 3)
        assert rt.errors == 2 and len(good.calls) >= 1
    finally:
        rt.stop()
    assert bad.closed and good.closed


def test_self_triggering_controller_is_bounded_per_burst() -> None:
    store = MemoryStore()

    class Writer(Recorder):
        def reconcile(self, store: Any, now: float) -> float | None:
            super().reconcile(store, now)
            store.create({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"generateName": "spin-", "namespace": "default"}})
            return None

    w = Writer()
    rt = Runtime(store, [w], max_burst=5, burst_pause=0.1)
    start = time.monotonic()
    rt.start()
    try:
        assert wait_until(lambda: len(w.calls) >= 11)
    finally:
        rt.stop()
    # 11 passes with a 0.1 s pause after every 5 cannot finish in under 0.2 s
    assert time.monotonic() - start >= 0.2


def test_stop_is_prompt_and_idempotent() -> None:
    rt = Runtime(MemoryStore(), [Recorder()])
    rt.start()
    start = time.monotonic()
    rt.stop()
    rt.stop()
    assert time.monotonic() - start < 2


def test_event_and_lease_writes_wake_no_controller() -> None:
    """Events were half of a run's writes and each woke a pass over every controller; no controller
    decides anything from an Event or a Lease, so the runtime's listener leaves them out."""
    from harness.sim.runtime import QUIET_KINDS

    store = MemoryStore()
    woken: list[str] = []
    store.add_listener(lambda: woken.append("any"))
    store.add_listener(lambda: woken.append("quiet"), ignore_kinds=QUIET_KINDS)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}
    created = store.create(cm)
    store.record_event(created, "Something", "happened", "Normal", component="test")
    store.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": "l", "namespace": "default"}, "spec": {}})
    assert woken.count("any") == 3 and woken.count("quiet") == 1, woken

    class Registering:
        def __init__(self) -> None:
            self.kinds: Any = None

        def add_listener(self, callback: Any, *, ignore_kinds: Any = ()) -> None:
            self.kinds = ignore_kinds

    registering = Registering()
    Runtime(registering, [])  # type: ignore[arg-type]
    assert set(registering.kinds) == {"Event", "Lease"}
