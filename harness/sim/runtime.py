"""The controller runtime: one thread that runs every controller's reconcile pass.

A pass runs when the store changed since the previous pass or when the earliest wake-up a
controller asked for is due. The thread waits on a `threading.Condition` with a timeout (never a
sleep). A burst of passes caused by controllers' own writes is bounded; after `max_burst` passes
in a row the loop yields for `burst_pause` seconds so a runaway controller cannot spin a core.
A controller that raises is logged and retried on the next pass; it never stops the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from harness.sim.contracts import Controller, Store

log = logging.getLogger(__name__)

IDLE_WAIT_S = 1.0  # with no change and no wake-up, look again after this long anyway


# Writes that wake no controller: no controller decides anything from an Event or a Lease (the
# workload controllers read Events only so as not to repeat one they wrote). Events were half of a
# run's writes, and every pass lists every Pod in several controllers.
QUIET_KINDS = frozenset({"Event", "Lease"})


class Runtime:
    def __init__(self, store: Store, controllers: Sequence[Controller], *, max_burst: int = 50,
                 burst_pause: float = 0.02) -> None:
        self._store = store
        self._controllers = list(controllers)
        self._max_burst = max_burst
        self._burst_pause = burst_pause
        self._cond = threading.Condition()
        self._dirty = True
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wakeups: dict[str, float] = {}
        self.passes = 0
        self.errors = 0
        add_listener = getattr(store, "add_listener", None)
        if callable(add_listener):
            add_listener(self.poke, ignore_kinds=QUIET_KINDS)

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers)

    def add(self, controller: Controller) -> None:
        """Register a controller (before or after start)."""
        with self._cond:
            self._controllers.append(controller)
            self._dirty = True
            self._cond.notify_all()

    def poke(self) -> None:
        """Something changed: run a pass soon."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="sim-runtime", daemon=True)
        self._thread.start()

    def run_once(self) -> None:
        """One reconcile pass over every controller (also usable without the thread, in tests)."""
        now = time.monotonic()
        with self._cond:
            controllers = list(self._controllers)
        for c in controllers:
            try:
                wake = c.reconcile(self._store, now)
            except Exception:
                self.errors += 1
                log.exception("controller %s failed; retrying on the next pass", getattr(c, "name", c))
                wake = now + 0.5
            with self._cond:
                if wake is None:
                    self._wakeups.pop(c.name, None)
                else:
                    self._wakeups[c.name] = wake
        self.passes += 1

    def _loop(self) -> None:
        burst = 0
        while True:
            with self._cond:
                if self._stopping:
                    return
                if burst >= self._max_burst:
                    self._cond.wait(self._burst_pause)
                    burst = 0
                if not self._dirty:
                    due = min(self._wakeups.values(), default=None)
                    now = time.monotonic()
                    if due is None or due > now:
                        timeout = IDLE_WAIT_S if due is None else min(IDLE_WAIT_S, due - now)
                        self._cond.wait(timeout)
                        burst = 0
                if self._stopping:
                    return
                due = min(self._wakeups.values(), default=None)
                if not self._dirty and (due is None or due > time.monotonic()):
                    continue
                self._dirty = False
            self.run_once()
            burst += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, join it, then close every controller once (errors are logged, not raised)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("sim runtime did not stop within %.1fs", timeout)
            self._thread = None
        with self._cond:
            if self._closed:
                return
            self._closed = True
        for c in reversed(self._controllers):
            try:
                c.close()
            except Exception:
                log.exception("closing controller %s failed", getattr(c, "name", c))
