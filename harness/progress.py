"""Progress for long phases (cluster create, installs, model loads, load runs).

In a terminal a rich spinner shows the phase and its latest note; anywhere else (CI logs, pipes,
files) each event is one plain, timestamped line that greps well and survives log folding:

    2026-11-28T18:40:00Z harness: cluster create started
    2026-11-28T18:40:12Z harness: cluster create: 3 of 4 nodes ready
    2026-11-28T18:40:12Z harness: cluster create done in 12.3s

While a phase runs, a heartbeat says it is alive every `heartbeat_s` seconds (default 15): what it
waits for (set by `waiting(what)`, which `Kube.wait_for` uses) and for how long:

    2026-11-28T18:40:15Z harness: models: still running after 15s; waiting for Model iris ModelReady (12s)

Nothing here waits: the spinner is animated by rich's own refresh thread, the heartbeat is a timer
thread, and both stop when the phase ends. The clock and the stream are parameters so tests can
check the lines exactly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO


def _utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


HEARTBEAT_S = 15.0


class PhaseProgress:
    """Handle yielded by `progress()`: `note()` reports a sub-step of the running phase."""

    def __init__(self, phase: str, stream: TextIO, now: Callable[[], datetime], status: Any | None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.phase = phase
        self._stream = stream
        self._now = now
        self._status = status
        self._monotonic = monotonic
        self.started = monotonic()
        self.notes: list[str] = []
        self.waiting_for: tuple[str, float] | None = None  # (what, since) while inside `waiting()`

    def heartbeat(self) -> str:
        """The heartbeat line: how long the phase has run and what it waits for."""
        clock = self._monotonic()
        text = f"still running after {clock - self.started:.0f}s"
        if self.waiting_for is not None:
            what, since = self.waiting_for
            text += f"; waiting for {what} ({clock - since:.0f}s)"
        if self._status is not None:
            self._status.update(f"{self.phase}: {text}")
        else:
            _line(self._stream, self._now, f"{self.phase}: {text}")
        return text

    def note(self, message: str) -> None:
        line = " ".join(message.split())
        self.notes.append(line)
        if self._status is not None:
            self._status.update(f"{self.phase}: {line}")
        else:
            _line(self._stream, self._now, f"{self.phase}: {line}")


# The phases running now, innermost last (the lifecycle runs them one at a time on one thread).
_ACTIVE: list[PhaseProgress] = []
_ACTIVE_LOCK = threading.Lock()


def current_phase() -> PhaseProgress | None:
    with _ACTIVE_LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def waiting(what: str) -> Iterator[None]:
    """Tell the running phase (if any) what it waits for, so its heartbeat can say so."""
    phase = current_phase()
    if phase is None:
        yield
        return
    previous = phase.waiting_for
    phase.waiting_for = (what, phase._monotonic())
    try:
        yield
    finally:
        phase.waiting_for = previous


def _beat(handle: PhaseProgress, stop: threading.Event, every: float) -> None:
    # A timer, not a wait for a condition: it ends as soon as the phase does.
    while not stop.wait(every):
        try:
            handle.heartbeat()
        except (OSError, ValueError):  # the stream was closed under us: stop beating
            return


def _line(stream: TextIO, now: Callable[[], datetime], text: str) -> None:
    stream.write(f"{timestamp(now())} harness: {text}\n")
    stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


@contextmanager
def progress(
    phase: str,
    *,
    stream: TextIO | None = None,
    interactive: bool | None = None,
    now: Callable[[], datetime] = _utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    heartbeat_s: float | None = HEARTBEAT_S,
) -> Iterator[PhaseProgress]:
    """Show `phase` while the block runs; say how long it took and whether it failed.

    `interactive=None` means: a rich spinner when `stream` is a terminal, plain lines otherwise.
    An exception from the block is reported ("failed after 3.2s: TimeoutError") and re-raised.
    """
    out = stream if stream is not None else sys.stdout
    rich_mode = _is_terminal(out) if interactive is None else interactive
    started = monotonic()
    status_cm: Any = None
    status: Any = None
    if rich_mode:
        from rich.console import Console

        console = Console(file=out)
        status_cm = console.status(f"{phase} ...")
        status = status_cm.__enter__()
    else:
        _line(out, now, f"{phase} started")
    handle = PhaseProgress(phase, out, now, status, monotonic)
    stop = threading.Event()
    beater = None
    # No heartbeat while the interpreter exits: a thread started then never runs, and start() waits for
    # it forever (a cleanup that only the garbage collector reached at exit hung so, run s8q3).
    if heartbeat_s is not None and heartbeat_s > 0 and not sys.is_finalizing():
        beater = threading.Thread(target=_beat, args=(handle, stop, heartbeat_s), name=f"heartbeat {phase}",
                                  daemon=True)
        beater.start()
    with _ACTIVE_LOCK:
        _ACTIVE.append(handle)
    try:
        yield handle
    except BaseException as exc:
        _end(handle, stop, beater)
        elapsed = monotonic() - started
        if status_cm is not None:
            status_cm.__exit__(None, None, None)
            out.write(f"[x] {phase} failed after {elapsed:.1f}s: {type(exc).__name__}\n")
        else:
            _line(out, now, f"{phase} failed after {elapsed:.1f}s: {type(exc).__name__}")
        raise
    _end(handle, stop, beater)
    elapsed = monotonic() - started
    if status_cm is not None:
        status_cm.__exit__(None, None, None)
        out.write(f"[ok] {phase} done in {elapsed:.1f}s\n")
    else:
        _line(out, now, f"{phase} done in {elapsed:.1f}s")


def _end(handle: PhaseProgress, stop: threading.Event, beater: threading.Thread | None) -> None:
    stop.set()
    if beater is not None:
        beater.join(timeout=5)
    with _ACTIVE_LOCK:
        if handle in _ACTIVE:
            _ACTIVE.remove(handle)
